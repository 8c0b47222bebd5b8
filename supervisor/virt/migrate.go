package virt

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/digitalocean/go-libvirt"
)

// Features of libvirt's drivers (libvirt_internal.h), asked with
// ConnectSupportsFeature.
const (
	featureChangeProtection = 7
	featureMigrationParams  = 11
)

// cleanupTimeout bounds the calls that end a failed or cancelled migration.
const cleanupTimeout = 30 * time.Second

// Migrate moves the running (or paused) domain uuid live from the node of src to the
// node of dst, whose disks must be on storage both nodes share. It drives libvirt's
// managed (not peer-to-peer) version 3 protocol from here, as `virsh migrate --live`
// does without --p2p: Begin on src, Prepare on dst, Perform on src (qemu sends the
// memory straight to dst over TCP), Finish on dst, Confirm on src. dstAddress is the
// address src reaches dst's qemu at (host, IP, or either with :port); when empty,
// dst's own idea of its host name is used. Afterwards the domain is defined on dst
// and no longer on src. When ctx ends during the transfer the migration is aborted
// and the domain keeps running on src.
func Migrate(ctx context.Context, src, dst *Conn, uuid, dstAddress string) error {
	op := "migrate domain " + uuid
	if src == nil || dst == nil {
		return fmt.Errorf("%s: %w: both the source and the destination connection are needed", op, ErrInvalid)
	}
	if src == dst || src.l == dst.l {
		return fmt.Errorf("%s: %w: the source and destination are the same connection", op, ErrInvalid)
	}
	uri, err := migrationURI(dstAddress)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	dom, err := src.lookup(ctx, uuid)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	op = fmt.Sprintf("migrate domain %s (%s)", dom.Name, uuid)
	st, err := src.state(ctx, dom)
	if err != nil {
		return fmt.Errorf("%s: %w", op, classify(err))
	}
	if st != StateRunning && st != StatePaused && st != StateBlocked {
		return fmt.Errorf("%s: %w: it is %s; only a running server moves live (a shut-off one is just started elsewhere)", op, ErrInvalid, st)
	}
	for _, c := range []struct {
		side string
		conn *Conn
	}{{"source", src}, {"destination", dst}} {
		ok, err := call(ctx, func() (int32, error) { return c.conn.l.ConnectSupportsFeature(featureMigrationParams) })
		if err != nil {
			return fmt.Errorf("%s: ask the %s: %w", op, c.side, classify(err))
		}
		if ok != 1 {
			return fmt.Errorf("%s: the %s's libvirt does not support migration with parameters: update it", op, c.side)
		}
	}
	m := &migration{src: src, dst: dst, dom: dom, op: op}
	m.flags = libvirt.MigrateLive | libvirt.MigratePersistDest | libvirt.MigrateUndefineSource
	// Change protection keeps the domain's definition from changing between Begin
	// and Confirm.
	m.protection = libvirt.MigrateChangeProtection
	for _, c := range []*Conn{src, dst} {
		if ok, err := call(ctx, func() (int32, error) { return c.l.ConnectSupportsFeature(featureChangeProtection) }); err != nil || ok != 1 {
			m.protection = 0
		}
	}
	if uri != "" {
		m.params = append(m.params, stringParam(libvirt.MigrateParamURI, uri))
	}
	return m.run(ctx)
}

// migration is one run of the version 3 protocol.
type migration struct {
	src, dst   *Conn
	dom        libvirt.Domain
	op         string
	flags      libvirt.DomainMigrateFlags
	protection libvirt.DomainMigrateFlags
	params     []libvirt.TypedParam
}

func (m *migration) run(ctx context.Context) error {
	srcFlags := m.flags | m.protection
	// Begin: the source describes the domain (its XML) and sends a cookie.
	type begun struct {
		cookie []byte
		xml    string
	}
	b, err := call(ctx, func() (begun, error) {
		ck, x, err := m.src.l.DomainMigrateBegin3Params(m.dom, m.params, uint32(srcFlags))
		return begun{ck, x}, err
	})
	if err != nil {
		return fmt.Errorf("%s: begin on the source: %w", m.op, classify(err))
	}

	// Prepare: the destination starts an incoming qemu and says where it listens.
	prepParams := setParam(m.params, stringParam(libvirt.MigrateParamDestXML, b.xml))
	type prepared struct {
		cookie []byte
		uri    libvirt.OptString
	}
	p, err := call(ctx, func() (prepared, error) {
		ck, uri, err := m.dst.l.DomainMigratePrepare3Params(prepParams, b.cookie, uint32(m.flags))
		return prepared{ck, uri}, err
	})
	if err != nil {
		perr := fmt.Errorf("%s: prepare on the destination: %w", m.op, classify(err))
		return errors.Join(perr, m.confirm(nil, true))
	}
	params := m.params
	if len(p.uri) > 0 && p.uri[0] != "" {
		params = setParam(params, stringParam(libvirt.MigrateParamURI, p.uri[0]))
	}
	var failure error
	cookie := p.cookie
	// A failed Perform has already cleaned up on the source, which then gets no
	// Confirm (as in libvirt's own virDomainMigrateVersion3Full).
	notifySource := true
	if _, ok := findParam(params, libvirt.MigrateParamURI); !ok {
		failure = fmt.Errorf("%s: the destination gave no address to migrate to: pass the destination node's address", m.op)
	} else {
		cookie, failure = m.perform(ctx, params, cookie)
		notifySource = failure == nil
	}
	cancelled := failure != nil

	// Finish: the destination resumes the domain, or (cancelled) kills its copy.
	finParams := setParam(params, stringParam(libvirt.MigrateParamDestName, m.dom.Name))
	fctx := ctx
	if cancelled || ctx.Err() != nil {
		var cancel context.CancelFunc
		fctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
	}
	type finished struct {
		dom    libvirt.Domain
		cookie []byte
	}
	f, err := call(fctx, func() (finished, error) {
		d, ck, err := m.dst.l.DomainMigrateFinish3Params(finParams, cookie, uint32(m.flags), boolInt(cancelled))
		return finished{d, ck}, err
	})
	if err != nil && !cancelled {
		// The destination could not take over: the source resumes.
		failure = fmt.Errorf("%s: finish on the destination: %w", m.op, classify(err))
		cancelled = true
	}
	if err == nil {
		cookie = f.cookie
	}
	if !notifySource {
		return failure
	}
	return errors.Join(failure, m.confirm(cookie, cancelled))
}

// perform runs the transfer on the source; when ctx ends meanwhile it aborts the
// migration job and waits for Perform to return.
func (m *migration) perform(ctx context.Context, params []libvirt.TypedParam, cookie []byte) ([]byte, error) {
	type performed struct {
		cookie []byte
		err    error
	}
	ch := make(chan performed, 1)
	go func() {
		ck, err := m.src.l.DomainMigratePerform3Params(m.dom, nil, params, cookie, m.flags|m.protection)
		ch <- performed{ck, err}
	}()
	var r performed
	select {
	case r = <-ch:
	case <-ctx.Done():
		m.src.l.DomainAbortJob(m.dom)
		r = <-ch
		if r.err == nil {
			// The transfer finished before the abort took: carry on.
			return r.cookie, nil
		}
		return r.cookie, fmt.Errorf("%s: %w", m.op, ctx.Err())
	}
	if r.err != nil {
		return r.cookie, fmt.Errorf("%s: perform on the source: %w", m.op, classify(r.err))
	}
	return r.cookie, nil
}

// confirm ends the migration on the source: it drops its copy, or (cancelled) lets
// the domain run on.
func (m *migration) confirm(cookie []byte, cancelled bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	err := call0(ctx, func() error {
		return m.src.l.DomainMigrateConfirm3Params(m.dom, m.params, cookie, uint32(m.flags|m.protection), boolInt(cancelled))
	})
	if err != nil {
		return fmt.Errorf("%s: confirm on the source: %w", m.op, classify(err))
	}
	return nil
}

// migrationURI makes qemu's migration URI from a destination address (host, IP,
// host:port); "" stays "".
func migrationURI(addr string) (string, error) {
	if addr == "" {
		return "", nil
	}
	if strings.ContainsAny(addr, "/ \t\n,?#@") {
		return "", fmt.Errorf("%w: destination address %q: give a host name or IP address, optionally with :port", ErrInvalid, addr)
	}
	if ip := net.ParseIP(addr); ip != nil {
		if ip.To4() == nil {
			return "tcp://[" + addr + "]", nil
		}
		return "tcp://" + addr, nil
	}
	if host, port, err := net.SplitHostPort(addr); err == nil {
		if host == "" || port == "" {
			return "", fmt.Errorf("%w: destination address %q: give a host name or IP address, optionally with :port", ErrInvalid, addr)
		}
		return "tcp://" + net.JoinHostPort(host, port), nil
	}
	if strings.Contains(addr, ":") {
		return "", fmt.Errorf("%w: destination address %q: put an IPv6 address with a port in brackets, as in [fe80::1]:49152", ErrInvalid, addr)
	}
	return "tcp://" + addr, nil
}

func stringParam(field, value string) libvirt.TypedParam {
	return libvirt.TypedParam{Field: field, Value: *libvirt.NewTypedParamValueString(value)}
}

// setParam returns a copy of params with p set (replacing one with its field).
func setParam(params []libvirt.TypedParam, p libvirt.TypedParam) []libvirt.TypedParam {
	out := make([]libvirt.TypedParam, 0, len(params)+1)
	for _, q := range params {
		if q.Field != p.Field {
			out = append(out, q)
		}
	}
	return append(out, p)
}

func findParam(params []libvirt.TypedParam, field string) (libvirt.TypedParam, bool) {
	for _, p := range params {
		if p.Field == field {
			return p, true
		}
	}
	return libvirt.TypedParam{}, false
}

func boolInt(b bool) int32 {
	if b {
		return 1
	}
	return 0
}
