package engine

import (
	"testing"
	"time"

	"github.com/cairn-os/cairn/supervisor/virt"
)

// TestRecheckCorrectsLostEvents: a watcher's periodic look at libvirt's list corrects
// a server whose recorded state disagreed the same way twice in a row, and nothing
// else: not a disagreement seen once (an event on its way), not one that an event
// changed in between, not a server recorded on another node (a migration's
// destination runs the domain too).
func TestRecheckCorrectsLostEvents(t *testing.T) {
	te := openTest(t, "", nil)
	put := func(s Server) {
		t.Helper()
		s.Owner, s.NICs = "u-1", []ServerNIC{}
		s.UUID = "00000000-0000-4000-8000-00000000000" + s.ID[len(s.ID)-1:]
		s.StateAt = te.clock.Now()
		if err := te.store.Put(bucketServers, s.ID, s); err != nil {
			t.Fatal(err)
		}
	}
	get := func(id string) Server {
		t.Helper()
		var s Server
		if err := te.store.Get(bucketServers, id, &s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	uuid := func(id string) string { return get(id).UUID }
	put(Server{ID: "s-1", Node: "n1", State: ServerRunning}) // stopped, its event lost
	put(Server{ID: "s-2", Node: "n1", State: ServerShutoff}) // started, its event lost
	put(Server{ID: "s-3", Node: "n1", State: ServerRunning}) // an event arrives between the checks
	put(Server{ID: "s-4", Node: "n2", State: ServerRunning}) // migrating from n2 to n1
	put(Server{ID: "s-5", Node: "n1", State: ServerRunning}) // in agreement
	put(Server{ID: "s-6", Node: "n1", State: ServerRunning}) // the first list was older than the record
	domains := map[string]virt.State{
		uuid("s-2"): virt.StateRunning,
		uuid("s-3"): virt.StateShutoff,
		uuid("s-4"): virt.StatePaused,
		uuid("s-5"): virt.StateRunning,
		uuid("s-6"): virt.StateShutoff,
	}
	before := map[string]Server{}
	for _, id := range []string{"s-1", "s-2", "s-3", "s-4", "s-5", "s-6"} {
		before[id] = get(id)
	}

	seen := te.recheckNode("n1", domains, nil)
	for id, s := range before {
		if got := get(id); got.State != s.State || !got.StateAt.Equal(s.StateAt) {
			t.Errorf("first check changed %s: %s → %s; a single disagreement must wait for the next check", id, s.State, got.State)
		}
	}
	te.clock.Advance(time.Minute)
	te.applyEvent("n1", virt.Event{UUID: uuid("s-3"), Kind: "suspended", State: virt.StatePaused, Reason: "paused"})
	domains[uuid("s-6")] = virt.StateRunning
	seen = te.recheckNode("n1", domains, seen)

	want := map[string]ServerState{
		"s-1": ServerShutoff, "s-2": ServerRunning, "s-3": ServerPaused,
		"s-4": ServerRunning, "s-5": ServerRunning, "s-6": ServerRunning,
	}
	for id, st := range want {
		if got := get(id).State; got != st {
			t.Errorf("after the second check %s is %s, want %s", id, got, st)
		}
	}
	if r := get("s-1").Reason; r != "not running on the node" {
		t.Errorf("s-1's reason %q, want it to say the domain is not on the node", r)
	}
	if got := get("s-4"); got.Node != "n2" {
		t.Errorf("s-4 moved to %s on a check of n1; the migration records the move", got.Node)
	}
	if got := get("s-5"); !got.StateAt.Equal(before["s-5"].StateAt) {
		t.Error("s-5 was rewritten although it agreed with libvirt")
	}

	// s-3's disagreement (paused here, shut off there) is new since the event; it
	// holds at the third check and is corrected then.
	te.clock.Advance(time.Minute)
	te.recheckNode("n1", domains, seen)
	if got := get("s-3").State; got != ServerShutoff {
		t.Errorf("s-3 is %s after disagreeing twice since its event, want %s", got, ServerShutoff)
	}
}
