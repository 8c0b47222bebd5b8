package boot

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// ErrPoolExhausted is returned (wrapped) when every address of the DHCP pool is leased.
var ErrPoolExhausted = errors.New("dhcp pool exhausted")

// Lease is an address bound to a MAC by the DHCP server. A binding outlives its expiry:
// the MAC gets the same address again until the pool runs out and the address is
// given to another machine.
type Lease struct {
	MAC      net.HardwareAddr
	IP       net.IP
	Expiry   time.Time
	Hostname string
}

// leaseJSON is a Lease as stored in Config.LeaseFile.
type leaseJSON struct {
	MAC      string    `json:"mac"`
	IP       string    `json:"ip"`
	Expiry   time.Time `json:"expiry"`
	Hostname string    `json:"hostname,omitempty"`
}

// offerHold is how long an offered address stays reserved for a MAC that never
// requested it.
const offerHold = time.Minute

// declineHold is how long an address a client declined (someone else uses it) is kept
// out of the pool.
const declineHold = 10 * time.Minute

// pool hands out addresses from [start, end], the same one to the same MAC.
type pool struct {
	mu       sync.Mutex
	start    uint32
	end      uint32
	exclude  map[uint32]bool
	byMAC    map[string]*Lease
	byIP     map[uint32]*Lease
	declined map[uint32]time.Time
}

func newPool(start, end net.IP, exclude ...net.IP) *pool {
	p := &pool{
		start:    ipUint(start),
		end:      ipUint(end),
		exclude:  map[uint32]bool{},
		byMAC:    map[string]*Lease{},
		byIP:     map[uint32]*Lease{},
		declined: map[uint32]time.Time{},
	}
	for _, ip := range exclude {
		if ip.To4() != nil {
			p.exclude[ipUint(ip)] = true
		}
	}
	return p
}

func (p *pool) String() string {
	return fmt.Sprintf("%s-%s", uintIP(p.start), uintIP(p.end))
}

func (p *pool) size() uint32 { return p.end - p.start + 1 }

// usable reports whether a is in the pool and may be handed out at all.
func (p *pool) usable(a uint32, now time.Time) bool {
	if a < p.start || a > p.end || p.exclude[a] {
		return false
	}
	if until, ok := p.declined[a]; ok {
		if now.Before(until) {
			return false
		}
		delete(p.declined, a)
	}
	return true
}

// allocate returns the address for mac: its existing binding; else hint when that is
// free; else a free address chosen by a hash of the MAC (so that the same MAC mostly
// gets the same address even without a lease file); else the address of the binding
// that expired longest ago. A new binding is held for offerHold.
func (p *pool) allocate(mac net.HardwareAddr, hint net.IP, now time.Time) (net.IP, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if l, ok := p.byMAC[mac.String()]; ok {
		return l.IP, nil
	}
	a, ok := uint32(0), false
	if hint.To4() != nil {
		h := ipUint(hint)
		if p.usable(h, now) && p.byIP[h] == nil {
			a, ok = h, true
		}
	}
	if !ok {
		hash := fnv.New32a()
		hash.Write(mac)
		first := hash.Sum32() % p.size()
		for i := uint32(0); i < p.size(); i++ {
			c := p.start + (first+i)%p.size()
			if p.usable(c, now) && p.byIP[c] == nil {
				a, ok = c, true
				break
			}
		}
	}
	if !ok {
		var oldest *Lease
		for _, l := range p.byIP {
			if l.Expiry.Before(now) && p.usable(ipUint(l.IP), now) && (oldest == nil || l.Expiry.Before(oldest.Expiry)) {
				oldest = l
			}
		}
		if oldest == nil {
			return nil, fmt.Errorf("allocate address for %s: %w: all %d addresses of %s are leased; widen the pool or shorten the lease time",
				mac, ErrPoolExhausted, len(p.byIP), p)
		}
		a = ipUint(oldest.IP)
		p.remove(oldest)
	}
	l := &Lease{MAC: cloneMAC(mac), IP: uintIP(a), Expiry: now.Add(offerHold)}
	p.byMAC[mac.String()] = l
	p.byIP[a] = l
	return l.IP, nil
}

// claim returns mac's address for a REQUEST without a preceding DISCOVER (INIT-REBOOT
// or a restart of ours): its binding if it has one; else want, bound to mac, if want is
// free; else nil, without binding anything, so that refused requests take no address.
func (p *pool) claim(mac net.HardwareAddr, want net.IP, now time.Time) net.IP {
	p.mu.Lock()
	defer p.mu.Unlock()
	if l, ok := p.byMAC[mac.String()]; ok {
		return l.IP
	}
	a := ipUint(want)
	if want.To4() == nil || !p.usable(a, now) || p.byIP[a] != nil {
		return nil
	}
	l := &Lease{MAC: cloneMAC(mac), IP: uintIP(a), Expiry: now.Add(offerHold)}
	p.byMAC[mac.String()] = l
	p.byIP[a] = l
	return l.IP
}

// bound returns mac's address, or nil when mac has no binding.
func (p *pool) bound(mac net.HardwareAddr) net.IP {
	p.mu.Lock()
	defer p.mu.Unlock()
	if l, ok := p.byMAC[mac.String()]; ok {
		return l.IP
	}
	return nil
}

// confirm extends mac's binding to ip until now+d (a DHCPACK). It fails when mac is
// bound to another address.
func (p *pool) confirm(mac net.HardwareAddr, ip net.IP, hostname string, now time.Time, d time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	l, ok := p.byMAC[mac.String()]
	if !ok || !l.IP.Equal(ip) {
		return fmt.Errorf("confirm lease of %s for %s: not bound to it", ip, mac)
	}
	l.Expiry = now.Add(d)
	if hostname != "" {
		l.Hostname = hostname
	}
	return nil
}

// release ends mac's lease on ip now, keeping the binding. It reports whether there
// was such a lease.
func (p *pool) release(mac net.HardwareAddr, ip net.IP, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	l, ok := p.byMAC[mac.String()]
	if !ok || !l.IP.Equal(ip) {
		return false
	}
	if l.Expiry.After(now) {
		l.Expiry = now
	}
	return true
}

// decline drops mac's binding to ip and keeps ip out of the pool for declineHold,
// because the client found it in use. It reports whether mac was bound to ip.
func (p *pool) decline(mac net.HardwareAddr, ip net.IP, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	l, ok := p.byMAC[mac.String()]
	if !ok || !l.IP.Equal(ip) {
		return false
	}
	p.remove(l)
	p.declined[ipUint(ip)] = now.Add(declineHold)
	return true
}

func (p *pool) remove(l *Lease) {
	delete(p.byMAC, l.MAC.String())
	delete(p.byIP, ipUint(l.IP))
}

// leases returns copies of all bindings, ordered by address.
func (p *pool) leases() []Lease {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Lease, 0, len(p.byIP))
	for _, l := range p.byIP {
		out = append(out, Lease{MAC: cloneMAC(l.MAC), IP: cloneIP(l.IP), Expiry: l.Expiry, Hostname: l.Hostname})
	}
	sort.Slice(out, func(i, j int) bool { return ipUint(out[i].IP) < ipUint(out[j].IP) })
	return out
}

// save writes the bindings to path atomically (a temporary file renamed over it).
func (p *pool) save(path string) error {
	ls := p.leases()
	out := make([]leaseJSON, len(ls))
	for i, l := range ls {
		out[i] = leaseJSON{MAC: l.MAC.String(), IP: l.IP.String(), Expiry: l.Expiry.UTC(), Hostname: l.Hostname}
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return fmt.Errorf("save leases %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("save leases %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("save leases %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("save leases %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save leases %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save leases %s: %w", path, err)
	}
	return nil
}

// load reads bindings from path. A missing file is no error. Entries outside the
// pool (the pool changed) or that repeat a MAC or address are skipped and counted.
func (p *pool) load(path string) (skipped int, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("load leases %s: %w", path, err)
	}
	var in []leaseJSON
	if err := json.Unmarshal(b, &in); err != nil {
		return 0, fmt.Errorf("load leases %s: %w", path, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, j := range in {
		mac, err := net.ParseMAC(j.MAC)
		ip := net.ParseIP(j.IP).To4()
		if err != nil || ip == nil {
			skipped++
			continue
		}
		a := ipUint(ip)
		if a < p.start || a > p.end || p.exclude[a] || p.byIP[a] != nil || p.byMAC[mac.String()] != nil {
			skipped++
			continue
		}
		l := &Lease{MAC: mac, IP: ip, Expiry: j.Expiry, Hostname: j.Hostname}
		p.byMAC[mac.String()] = l
		p.byIP[a] = l
	}
	return skipped, nil
}

func ipUint(ip net.IP) uint32 {
	v4 := ip.To4()
	if v4 == nil {
		return 0
	}
	return binary.BigEndian.Uint32(v4)
}

func uintIP(a uint32) net.IP {
	ip := make(net.IP, 4)
	binary.BigEndian.PutUint32(ip, a)
	return ip
}

func cloneMAC(m net.HardwareAddr) net.HardwareAddr { return append(net.HardwareAddr(nil), m...) }

func cloneIP(ip net.IP) net.IP { return append(net.IP(nil), ip...) }
