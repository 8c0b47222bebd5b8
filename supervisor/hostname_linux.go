package supervisor

import "golang.org/x/sys/unix"

func setHostnameSyscall(name string) error { return unix.Sethostname([]byte(name)) }
