package pool

import (
	"errors"
	"fmt"
)

// reverter undoes the finished steps of a multi-step change to the host when a later
// step fails (after Incus' revert): register the undo of each step with add, defer
// fail, and call success at the end.
type reverter struct {
	undo []undoStep
	done bool
}

type undoStep struct {
	what string
	f    func() error
}

// add registers the undo of a step that has just succeeded; what names it for the
// error message if the undo itself fails.
func (r *reverter) add(what string, f func() error) {
	r.undo = append(r.undo, undoStep{what, f})
}

// success keeps every step.
func (r *reverter) success() { r.done = true }

// fail undoes the steps in reverse order unless success was called. Undo failures
// are added to *err, so that the user learns what was left behind.
func (r *reverter) fail(err *error) {
	if r.done {
		return
	}
	var left []error
	for i := len(r.undo) - 1; i >= 0; i-- {
		if uerr := r.undo[i].f(); uerr != nil {
			left = append(left, fmt.Errorf("undo %s: %w", r.undo[i].what, uerr))
		}
	}
	if len(left) > 0 && err != nil {
		*err = errors.Join(append([]error{*err}, left...)...)
	}
}
