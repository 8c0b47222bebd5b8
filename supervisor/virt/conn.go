package virt

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/digitalocean/go-libvirt"
)

// DefaultSocket is libvirtd's read-write unix socket.
const DefaultSocket = "/var/run/libvirt/libvirt-sock"

// Conn is a connection to one node's libvirtd (qemu:///system). Its methods are safe
// for concurrent use. go-libvirt's calls take no context: when ctx ends first, a
// method returns ctx's error at once and the call finishes (or fails) on its own.
type Conn struct {
	l *libvirt.Libvirt
}

// New takes over l, a client already connected to qemu:///system (for a compute
// node, agent.DialLibvirt gives one). Close disconnects it.
func New(l *libvirt.Libvirt) *Conn { return &Conn{l: l} }

// DialLocal connects to the libvirtd of this machine over its unix socket
// (DefaultSocket when socket is empty) and opens qemu:///system. ctx bounds the dial
// and the opening.
func DialLocal(ctx context.Context, socket string) (*Conn, error) {
	if socket == "" {
		socket = DefaultSocket
	}
	d := &unixDialer{path: socket, ctx: ctx}
	l := libvirt.NewWithDialer(d)
	// Closing the socket is what ends an opening that hangs.
	stop := context.AfterFunc(ctx, d.closeConn)
	err := l.ConnectToURI(libvirt.QEMUSystem)
	if !stop() {
		if err == nil {
			l.Disconnect()
		}
		return nil, fmt.Errorf("connect to libvirtd at %s: %w", socket, ctx.Err())
	}
	if err != nil {
		return nil, fmt.Errorf("connect to libvirtd at %s: %w (is libvirtd running?)", socket, err)
	}
	d.mu.Lock()
	d.ctx = context.Background() // the connection outlives ctx
	d.mu.Unlock()
	return &Conn{l: l}, nil
}

// closeLimit bounds Close: a connection whose libvirtd (or go-libvirt's reader) no
// longer answers must not hang its caller, which then reconnects.
const closeLimit = 30 * time.Second

// Close disconnects from libvirtd. Event channels from Events close.
func (c *Conn) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), closeLimit)
	defer cancel()
	if err := call0(ctx, c.l.Disconnect); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("disconnect from libvirtd: no answer within %v; the connection is left to end on its own", closeLimit)
		}
		return fmt.Errorf("disconnect from libvirtd: %w", err)
	}
	return nil
}

// Libvirt returns the underlying go-libvirt client, for calls this package does not
// wrap.
func (c *Conn) Libvirt() *libvirt.Libvirt { return c.l }

// unixDialer is go-libvirt's socket.Dialer for a unix socket, bound to a context
// while connecting.
type unixDialer struct {
	path string

	mu   sync.Mutex
	ctx  context.Context
	conn net.Conn
}

func (d *unixDialer) Dial() (net.Conn, error) {
	d.mu.Lock()
	ctx := d.ctx
	d.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var nd net.Dialer
	conn, err := nd.DialContext(ctx, "unix", d.path)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.conn = conn
	d.mu.Unlock()
	return conn, nil
}

func (d *unixDialer) closeConn() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn != nil {
		d.conn.Close()
	}
}

// call runs f, a go-libvirt call, and returns early with ctx's error when ctx ends
// first.
func call[T any](ctx context.Context, f func() (T, error)) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	if ctx.Done() == nil {
		return f()
	}
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := f()
		ch <- result{v, err}
	}()
	select {
	case <-ctx.Done():
		return zero, ctx.Err()
	case r := <-ch:
		return r.v, r.err
	}
}

// call0 is call for calls that return only an error.
func call0(ctx context.Context, f func() error) error {
	_, err := call(ctx, func() (struct{}, error) { return struct{}{}, f() })
	return err
}

// parseUUID turns a canonical UUID into libvirt's bytes.
func parseUUID(s string) (libvirt.UUID, error) {
	var u libvirt.UUID
	if err := checkUUID(s); err != nil {
		return u, err
	}
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(b) != len(u) {
		return u, fmt.Errorf("%w: UUID %q", ErrInvalid, s)
	}
	copy(u[:], b)
	return u, nil
}

// formatUUID is the canonical lower-case form of libvirt's UUID bytes.
func formatUUID(u libvirt.UUID) string {
	h := hex.EncodeToString(u[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// lookup finds the domain with UUID uuid; ErrNotFound when libvirt does not know it.
func (c *Conn) lookup(ctx context.Context, uuid string) (libvirt.Domain, error) {
	u, err := parseUUID(uuid)
	if err != nil {
		return libvirt.Domain{}, err
	}
	dom, err := call(ctx, func() (libvirt.Domain, error) { return c.l.DomainLookupByUUID(u) })
	if err != nil {
		return libvirt.Domain{}, classify(err)
	}
	return dom, nil
}

// libvirtCode is the error number of a libvirt error, or -1.
func libvirtCode(err error) libvirt.ErrorNumber {
	var e libvirt.Error
	if errors.As(err, &e) {
		return libvirt.ErrorNumber(e.Code)
	}
	return -1
}

// classify adds this package's sentinel to a libvirt error where one applies.
func classify(err error) error {
	switch libvirtCode(err) {
	case libvirt.ErrNoDomain, libvirt.ErrNoStorageVol, libvirt.ErrNoStoragePool:
		return tagged{ErrNotFound, err}
	case libvirt.ErrStorageVolExist, libvirt.ErrDomExist:
		return tagged{ErrExists, err}
	case libvirt.ErrOperationInvalid, libvirt.ErrXMLError, libvirt.ErrConfigUnsupported,
		libvirt.ErrInvalidArg, libvirt.ErrXMLDetail, libvirt.ErrMigrateUnsafe:
		return tagged{ErrInvalid, err}
	}
	return err
}

// tagged is a libvirt error that also matches one of this package's sentinels; its
// message is libvirt's, which says what went wrong.
type tagged struct {
	sentinel error
	err      error
}

func (t tagged) Error() string   { return t.err.Error() }
func (t tagged) Unwrap() []error { return []error{t.sentinel, t.err} }
