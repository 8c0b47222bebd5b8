package testutil

import (
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// InMountNamespace runs f on a thread of its own in a new, private mount namespace.
// The thread is never unlocked, so it ends with f and takes the namespace and every
// mount in it along: nothing leaks to the host, and t.TempDir's clean-up (in the
// host's namespace) never walks into a mount. f reports with t.Error, not t.Fatal
// (it is not the test's goroutine). It needs root.
func InMountNamespace(t *testing.T, f func()) {
	t.Helper()
	RequireRoot(t)
	done := make(chan string)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			done <- "unshare mount namespace: " + err.Error()
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			done <- "make mounts private: " + err.Error()
			return
		}
		f()
		done <- ""
	}()
	if skip := <-done; skip != "" {
		t.Skip(skip)
	}
}
