package virt

import (
	"testing"

	"github.com/digitalocean/go-libvirt"
)

func TestEventOf(t *testing.T) {
	dom := libvirt.Domain{Name: "cairn-s1", UUID: libvirt.UUID{0x5f, 0x1c, 0x2a, 0x3b, 0x0d, 0x4e, 0x4f, 0x60, 0x8a, 0x7b, 0x9c, 0x0d, 0x1e, 0x2f, 0x3a, 0x4b}}
	for _, tc := range []struct {
		event  libvirt.DomainEventType
		detail int32
		want   Event // UUID and Name filled in below
		skip   bool
	}{
		{event: libvirt.DomainEventStarted, detail: 0, want: Event{State: StateRunning, Reason: "booted", Kind: "started"}},
		{event: libvirt.DomainEventStarted, detail: 1, want: Event{State: StateRunning, Reason: "migrated", Kind: "started"}},
		{event: libvirt.DomainEventSuspended, detail: 0, want: Event{State: StatePaused, Reason: "paused", Kind: "suspended"}},
		{event: libvirt.DomainEventSuspended, detail: 2, want: Event{State: StatePaused, Reason: "ioerror", Kind: "suspended"}},
		{event: libvirt.DomainEventResumed, detail: 0, want: Event{State: StateRunning, Reason: "unpaused", Kind: "resumed"}},
		{event: libvirt.DomainEventStopped, detail: 0, want: Event{State: StateShutoff, Reason: "shutdown", Kind: "stopped"}},
		{event: libvirt.DomainEventStopped, detail: 1, want: Event{State: StateShutoff, Reason: "destroyed", Kind: "stopped"}},
		{event: libvirt.DomainEventStopped, detail: 3, want: Event{State: StateShutoff, Reason: "migrated", Kind: "stopped"}},
		{event: libvirt.DomainEventStopped, detail: 5, want: Event{State: StateShutoff, Reason: "failed", Kind: "stopped"}},
		{event: libvirt.DomainEventShutdown, detail: 1, want: Event{State: StateShutdown, Reason: "guest", Kind: "shutdown"}},
		{event: libvirt.DomainEventCrashed, detail: 0, want: Event{State: StateCrashed, Reason: "panicked", Kind: "crashed"}},
		{event: libvirt.DomainEventPmsuspended, detail: 0, want: Event{State: StatePMSuspended, Reason: "memory", Kind: "pmsuspended"}},
		{event: libvirt.DomainEventStopped, detail: 42, want: Event{State: StateShutoff, Reason: "detail 42", Kind: "stopped"}},
		{event: libvirt.DomainEventDefined, skip: true},
		{event: libvirt.DomainEventUndefined, skip: true},
	} {
		got, ok := eventOf(libvirt.DomainEventLifecycleMsg{Dom: dom, Event: int32(tc.event), Detail: tc.detail})
		if tc.skip {
			if ok {
				t.Errorf("event %d was passed on as %+v; definitions are not state changes", tc.event, got)
			}
			continue
		}
		tc.want.UUID, tc.want.Name = "5f1c2a3b-0d4e-4f60-8a7b-9c0d1e2f3a4b", "cairn-s1"
		if !ok || got != tc.want {
			t.Errorf("event %d/%d = %+v, %v; want %+v", tc.event, tc.detail, got, ok, tc.want)
		}
	}
}
