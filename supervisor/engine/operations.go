package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/cairn-os/cairn/supervisor/store"
)

const bucketOperations = "operations"

// keepOperations is how many ended operations the engine remembers.
const keepOperations = 500

// opRun is an operation under way.
type opRun struct {
	mu     sync.Mutex
	op     Operation
	cancel context.CancelFunc
	done   chan struct{}
}

// progress lets an operation's work report how far it is.
type progress struct{ run *opRun }

// Set records the fraction done (0..1) and an optional message.
func (p progress) Set(fraction float64, msg string) {
	if p.run == nil {
		return
	}
	p.run.mu.Lock()
	defer p.run.mu.Unlock()
	p.run.op.Progress = min(max(fraction, 0), 1)
	if msg != "" {
		p.run.op.Message = msg
	}
}

// Fraction returns a callback for tools that report a fraction.
func (p progress) Fraction(msg string) func(float64) {
	return func(f float64) { p.Set(f, msg) }
}

// Bytes returns a callback for tools that report bytes done of a total.
func (p progress) Bytes(msg string) func(done, total int64) {
	return func(done, total int64) {
		if total > 0 {
			p.Set(float64(done)/float64(total), msg)
		}
	}
}

// opWork is the work of an operation: it returns the ID of what it made, if anything.
type opWork func(ctx context.Context, p progress) (string, error)

// startOp records an operation and runs work in the background. The operation ends
// succeeded, failed (with the error's message) or canceled.
func (e *Engine) startOp(owner, kind, target string, work opWork) Operation {
	ctx, cancel := context.WithCancel(e.bg)
	run := &opRun{
		op: Operation{
			ID: "op-" + randomHex(6), Owner: owner, Kind: kind, Target: target,
			State: OpRunning, CreatedAt: e.now(),
		},
		cancel: cancel,
		done:   make(chan struct{}),
	}
	e.opsMu.Lock()
	e.ops[run.op.ID] = run
	e.opsMu.Unlock()
	if err := e.store.Put(bucketOperations, run.op.ID, run.op); err != nil {
		e.log.Warn("record operation failed", "op", run.op.ID, "err", err)
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		defer close(run.done)
		defer cancel()
		result, err := safeWork(ctx, work, progress{run})
		run.mu.Lock()
		run.op.EndedAt = e.now()
		run.op.Result = result
		switch {
		case err == nil:
			run.op.State, run.op.Progress = OpSucceeded, 1
		case errors.Is(err, context.Canceled) && ctx.Err() != nil:
			run.op.State, run.op.Error = OpCanceled, "canceled"
		default:
			run.op.State, run.op.Error = OpFailed, err.Error()
		}
		final := run.op
		run.mu.Unlock()
		if err != nil && final.State == OpFailed {
			e.log.Warn("operation failed", "op", final.ID, "kind", kind, "target", target, "err", err)
		} else {
			e.log.Info("operation ended", "op", final.ID, "kind", kind, "target", target, "state", final.State)
		}
		if err := e.store.Put(bucketOperations, final.ID, final); err != nil {
			e.log.Warn("record operation failed", "op", final.ID, "err", err)
		}
		e.opsMu.Lock()
		delete(e.ops, final.ID)
		e.opsMu.Unlock()
		e.pruneOperations()
	}()
	return run.snapshot()
}

// safeWork runs work, turning a panic into an error so one bad operation does not
// take the engine down.
func safeWork(ctx context.Context, work opWork, p progress) (result string, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("internal error: %v", r)
		}
	}()
	return work(ctx, p)
}

func (r *opRun) snapshot() Operation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.op
}

// failInterrupted marks operations that were running when the engine stopped.
func (e *Engine) failInterrupted() error {
	return e.store.Update(func(tx *store.Tx) error {
		ops, err := store.ListTx[Operation](tx, bucketOperations)
		if err != nil {
			return err
		}
		for _, op := range ops {
			if op.State != OpRunning {
				continue
			}
			op.State = OpFailed
			op.Error = "interrupted: the engine restarted while it ran; start it again"
			op.EndedAt = e.now()
			if err := tx.Put(bucketOperations, op.ID, op); err != nil {
				return err
			}
		}
		return nil
	})
}

func (e *Engine) pruneOperations() {
	ops, err := store.List[Operation](e.store, bucketOperations)
	if err != nil || len(ops) <= keepOperations {
		return
	}
	slices.SortFunc(ops, func(a, b Operation) int { return a.CreatedAt.Compare(b.CreatedAt) })
	for _, op := range ops[:len(ops)-keepOperations] {
		if op.State != OpRunning {
			e.store.Delete(bucketOperations, op.ID)
		}
	}
}

// Operations lists the caller's operations (admins: everyone's), newest first.
func (e *Engine) Operations(ctx context.Context, u User) ([]Operation, error) {
	if err := requireUser(u, "list operations"); err != nil {
		return nil, err
	}
	stored, err := store.List[Operation](e.store, bucketOperations)
	if err != nil {
		return nil, fmt.Errorf("list operations: %w", err)
	}
	live := e.liveOps()
	var out []Operation
	for _, op := range stored {
		if l, ok := live[op.ID]; ok {
			op = l
		}
		if canSee(u, op.Owner) {
			out = append(out, op)
		}
	}
	slices.SortFunc(out, func(a, b Operation) int { return b.CreatedAt.Compare(a.CreatedAt) })
	return out, nil
}

func (e *Engine) liveOps() map[string]Operation {
	e.opsMu.Lock()
	defer e.opsMu.Unlock()
	m := make(map[string]Operation, len(e.ops))
	for id, r := range e.ops {
		m[id] = r.snapshot()
	}
	return m
}

// Operation shows one operation.
func (e *Engine) Operation(ctx context.Context, u User, id string) (Operation, error) {
	op := fmt.Sprintf("operation %q", id)
	if err := requireUser(u, op); err != nil {
		return Operation{}, err
	}
	e.opsMu.Lock()
	run := e.ops[id]
	e.opsMu.Unlock()
	var o Operation
	if run != nil {
		o = run.snapshot()
	} else if err := e.store.Get(bucketOperations, id, &o); err != nil {
		return Operation{}, fmt.Errorf("%s: %w", op, notFound(err))
	}
	if !canSee(u, o.Owner) {
		return Operation{}, fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	return o, nil
}

// WaitOperation waits until operation id ends or ctx ends, then shows it.
func (e *Engine) WaitOperation(ctx context.Context, u User, id string) (Operation, error) {
	if _, err := e.Operation(ctx, u, id); err != nil {
		return Operation{}, err
	}
	e.opsMu.Lock()
	run := e.ops[id]
	e.opsMu.Unlock()
	if run != nil {
		select {
		case <-run.done:
		case <-ctx.Done():
		}
	}
	return e.Operation(context.WithoutCancel(ctx), u, id)
}

// CancelOperation asks a running operation to stop; its work undoes what it did.
func (e *Engine) CancelOperation(ctx context.Context, u User, id string) (Operation, error) {
	o, err := e.Operation(ctx, u, id)
	if err != nil {
		return Operation{}, err
	}
	if err := requireWriter(u, "cancel operation"); err != nil {
		return Operation{}, err
	}
	if o.State != OpRunning {
		return Operation{}, fmt.Errorf("cancel operation %s: %w: it has already ended (%s)", id, ErrInvalid, o.State)
	}
	e.opsMu.Lock()
	run := e.ops[id]
	e.opsMu.Unlock()
	if run != nil {
		run.cancel()
		select {
		case <-run.done:
		case <-time.After(30 * time.Second):
		case <-ctx.Done():
		}
	}
	return e.Operation(context.WithoutCancel(ctx), u, id)
}

// canSee reports whether u may see a resource owned by owner.
func canSee(u User, owner string) bool {
	return u.Role == RoleAdmin || u.ID == owner
}
