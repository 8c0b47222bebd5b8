package virt

import (
	"context"
	"fmt"

	"github.com/digitalocean/go-libvirt"
)

// Events follows the lifecycle events of every domain on the node: each change of a
// domain's run state arrives as an Event. (Definitions being added or removed are
// not run-state changes and are left out: the engine makes them itself.) The channel
// closes when ctx ends or the connection to libvirtd drops; the caller then
// reconnects and lists the domains again, since events may have been missed. The
// caller must keep reading until the channel closes.
func (c *Conn) Events(ctx context.Context) (<-chan Event, error) {
	src, err := call(ctx, func() (<-chan libvirt.DomainEventLifecycleMsg, error) { return c.l.LifecycleEvents(ctx) })
	if err != nil {
		return nil, fmt.Errorf("subscribe to domain events: %w", classify(err))
	}
	out := make(chan Event, 16)
	go func() {
		defer close(out)
		// go-libvirt's sender blocks on its channel even after ctx ends: drain it
		// until it closes, so that its goroutine ends and deregisters.
		defer func() {
			go func() {
				for range src {
				}
			}()
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case <-c.l.Disconnected():
				return
			case m, ok := <-src:
				if !ok {
					return
				}
				ev, ok := eventOf(m)
				if !ok {
					continue
				}
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// eventOf translates a libvirt lifecycle event; ok is false for the events that are
// not run-state changes (defined, undefined).
func eventOf(m libvirt.DomainEventLifecycleMsg) (ev Event, ok bool) {
	ev = Event{UUID: formatUUID(m.Dom.UUID), Name: m.Dom.Name}
	d := int(m.Detail)
	pick := func(names ...string) string {
		if d >= 0 && d < len(names) {
			return names[d]
		}
		return fmt.Sprintf("detail %d", d)
	}
	switch libvirt.DomainEventType(m.Event) {
	case libvirt.DomainEventStarted:
		ev.Kind, ev.State = "started", StateRunning
		ev.Reason = pick("booted", "migrated", "restored", "from_snapshot", "wakeup", "recreated")
	case libvirt.DomainEventSuspended:
		ev.Kind, ev.State = "suspended", StatePaused
		ev.Reason = pick("paused", "migrated", "ioerror", "watchdog", "restored", "from_snapshot", "api_error", "postcopy", "postcopy_failed")
	case libvirt.DomainEventResumed:
		ev.Kind, ev.State = "resumed", StateRunning
		ev.Reason = pick("unpaused", "migrated", "from_snapshot", "postcopy", "postcopy_failed")
	case libvirt.DomainEventStopped:
		ev.Kind, ev.State = "stopped", StateShutoff
		ev.Reason = pick("shutdown", "destroyed", "crashed", "migrated", "saved", "failed", "from_snapshot", "recreated")
	case libvirt.DomainEventShutdown:
		ev.Kind, ev.State = "shutdown", StateShutdown
		ev.Reason = pick("finished", "guest", "host")
	case libvirt.DomainEventPmsuspended:
		ev.Kind, ev.State = "pmsuspended", StatePMSuspended
		ev.Reason = pick("memory", "disk")
	case libvirt.DomainEventCrashed:
		ev.Kind, ev.State = "crashed", StateCrashed
		ev.Reason = pick("panicked", "crashloaded")
	default:
		return Event{}, false
	}
	return ev, true
}
