package vm

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"time"
)

// QMP runs one QMP command (e.g. "system_powerdown", "query-status") and returns its
// "return" value. Each call opens its own connection: qemu serves one QMP client at a
// time, and a short connection never keeps another caller waiting for long.
func (v *VM) QMP(ctx context.Context, command string, args any) (json.RawMessage, error) {
	if !v.Running() {
		return nil, fmt.Errorf("vm %s: qmp %s: not running", v.Name, command)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", v.socket("qmp.sock"))
	if err != nil {
		return nil, fmt.Errorf("vm %s: qmp %s: %w", v.Name, command, err)
	}
	defer conn.Close()
	deadline := time.Now().Add(30 * time.Second)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()

	r := bufio.NewReader(conn)
	enc := json.NewEncoder(conn)
	// The greeting, then capabilities negotiation, then the command.
	if _, err := qmpRead(r); err != nil {
		return nil, fmt.Errorf("vm %s: qmp greeting: %w", v.Name, err)
	}
	if err := enc.Encode(map[string]any{"execute": "qmp_capabilities"}); err != nil {
		return nil, fmt.Errorf("vm %s: qmp capabilities: %w", v.Name, err)
	}
	if _, err := qmpRead(r); err != nil {
		return nil, fmt.Errorf("vm %s: qmp capabilities: %w", v.Name, err)
	}
	msg := map[string]any{"execute": command}
	if args != nil {
		msg["arguments"] = args
	}
	if err := enc.Encode(msg); err != nil {
		return nil, fmt.Errorf("vm %s: qmp %s: %w", v.Name, command, err)
	}
	ret, err := qmpRead(r)
	if err != nil {
		if command == "quit" {
			return nil, nil // qemu may close the socket before it answers
		}
		return nil, fmt.Errorf("vm %s: qmp %s: %w", v.Name, command, err)
	}
	return ret, nil
}

// qmpRead reads messages until a reply, skipping asynchronous events.
func qmpRead(r *bufio.Reader) (json.RawMessage, error) {
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return nil, err
		}
		var m struct {
			QMP    json.RawMessage `json:"QMP"`
			Return json.RawMessage `json:"return"`
			Event  string          `json:"event"`
			Error  *struct {
				Class string `json:"class"`
				Desc  string `json:"desc"`
			} `json:"error"`
		}
		if err := json.Unmarshal(line, &m); err != nil {
			return nil, fmt.Errorf("bad qmp message %q: %w", line, err)
		}
		switch {
		case m.Error != nil:
			return nil, fmt.Errorf("%s: %s", m.Error.Class, m.Error.Desc)
		case m.QMP != nil:
			return m.QMP, nil
		case m.Return != nil:
			return m.Return, nil
		}
	}
}
