// Package service runs and supervises the appliance's programs (libvirtd, virtlogd,
// the NFS daemons): each in its own process group, restarted with backoff, its output
// kept in a per-service ring buffer.
package service

import "time"

// State is what a supervised program is doing.
type State string

// The states of a supervised program.
const (
	StateStarting State = "starting"
	StateRunning  State = "running"
	StateBackoff  State = "backoff"
	StateStopped  State = "stopped"
	// StateDone is a one-shot program (exportfs -ra, rpc.nfsd) that ran and succeeded.
	StateDone        State = "done"
	StateFailed      State = "failed"
	StateUnsupported State = "unsupported"
)

// Status is the state of one supervised program, as the API and console show it.
type Status struct {
	Name      string    `json:"name"`
	State     State     `json:"state"`
	PID       int       `json:"pid"`
	Restarts  int       `json:"restarts"`
	StartedAt time.Time `json:"started_at,omitzero"`
	LastExit  string    `json:"last_exit,omitempty"`
	Message   string    `json:"message,omitempty"`
}
