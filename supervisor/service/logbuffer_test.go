package service

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os/exec"
	"testing"
)

func TestLogBufferKeepsTail(t *testing.T) {
	const size = 1000
	b := newLogBuffer(size)
	var all []byte
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 500; i++ {
		chunk := make([]byte, r.IntN(300))
		for j := range chunk {
			chunk[j] = byte('a' + r.IntN(26))
		}
		if i == 250 {
			chunk = bytes.Repeat([]byte("Z"), 2*size) // one write larger than the ring
		}
		_, _ = b.Write(chunk)
		all = append(all, chunk...)
		want := all[max(0, len(all)-size):]
		if got := b.Last(0); !bytes.Equal(got, want) {
			t.Fatalf("after write %d: kept %d bytes, not the last %d", i, len(got), len(want))
		}
	}
	if got := b.Last(7); !bytes.Equal(got, all[len(all)-7:]) {
		t.Errorf("Last(7) = %q", got)
	}
}

func TestLogBufferLines(t *testing.T) {
	b := newLogBuffer(logSize)
	var mirrored [][]byte
	b.onLine = func(l []byte) { mirrored = append(mirrored, l) }
	lines, cancel := b.Subscribe()
	defer cancel()
	for _, w := range []string{"ab", "c\nd\n", "e"} {
		_, _ = b.Write([]byte(w))
	}
	b.Note("[cairn] exited")
	want := []string{"abc\n", "d\n", "e\n", "[cairn] exited\n"}
	for i, w := range want {
		if got := string(<-lines); got != w {
			t.Errorf("line %d = %q, want %q", i, got, w)
		}
	}
	if len(mirrored) != len(want) {
		t.Errorf("onLine got %d lines, want %d", len(mirrored), len(want))
	}
	// An endless line is passed on in pieces instead of growing without bound.
	_, _ = b.Write(bytes.Repeat([]byte("x"), maxLine+10))
	if got := <-lines; len(got) != maxLine {
		t.Errorf("piece of a long line: %d bytes, want %d", len(got), maxLine)
	}
}

func TestExitString(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-c", "exit 0"}, "exit 0"},
		{[]string{"-c", "exit 3"}, "exit 3"},
		{[]string{"-c", "kill -KILL $$"}, "signal: killed"},
	} {
		err := exec.Command("sh", c.args...).Run()
		if got := exitString(err); got != c.want {
			t.Errorf("sh %q: %q, want %q", c.args, got, c.want)
		}
	}
	// hostcmd's errors under the reaper are plain strings.
	if got := exitString(errors.New("exit status 2")); got != "exit 2" {
		t.Errorf("reaper error: %q", got)
	}
	if got := exitString(errors.New("signal: terminated")); got != "signal: terminated" {
		t.Errorf("reaper signal: %q", got)
	}
}
