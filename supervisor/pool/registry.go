package pool

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/cairn-os/cairn/supervisor/hostcmd"
)

var registry = struct {
	sync.RWMutex
	drivers map[string]func(r hostcmd.Runner) Driver
}{drivers: map[string]func(hostcmd.Runner) Driver{}}

// Register makes a driver known by name. The drivers of this package register
// themselves in init; registering a name twice is a programming error and panics.
func Register(name string, f func(r hostcmd.Runner) Driver) {
	registry.Lock()
	defer registry.Unlock()
	if name == "" || f == nil {
		panic("pool: Register with an empty name or a nil factory")
	}
	if _, ok := registry.drivers[name]; ok {
		panic("pool: driver " + name + " registered twice")
	}
	registry.drivers[name] = f
}

// Lookup returns the driver called name, running host programs with r. An unknown
// name is ErrInvalid, and the message lists the known drivers.
func Lookup(name string, r hostcmd.Runner) (Driver, error) {
	registry.RLock()
	f, ok := registry.drivers[name]
	registry.RUnlock()
	if !ok {
		return nil, fmt.Errorf("storage driver %q: %w: choose one of %s", name, ErrInvalid, strings.Join(Names(), ", "))
	}
	return f(r), nil
}

// Names returns the registered drivers' names in alphabetical order.
func Names() []string {
	registry.RLock()
	defer registry.RUnlock()
	names := make([]string, 0, len(registry.drivers))
	for n := range registry.drivers {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
