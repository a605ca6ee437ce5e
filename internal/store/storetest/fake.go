// Package storetest holds a store.Store in memory for unit tests of code
// that uses a store (the agent's loops): no etcd, no API server, every
// failure injectable, every change visible at once. It picks subnets with
// lease.PickSubnet, the policy the etcd store follows, so tests see the
// same leases a real store would hand out.
package storetest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/netconf"
	"github.com/weftnet/weft/internal/store"
)

// Op names a Store method, for Fail and Calls.
type Op string

const (
	OpConfig  Op = "config"
	OpAcquire Op = "acquire"
	OpRenew   Op = "renew"
	OpWatch   Op = "watch"
)

// TTL is how long the fake's leases last.
const TTL = 24 * time.Hour

// Fake is an in-memory store.Store. Its methods may be called
// concurrently; the zero value is not usable, call New.
type Fake struct {
	mu      sync.Mutex
	cfg     *netconf.Config              // guarded by mu; nil: no config yet
	leases  map[netip.Prefix]lease.Lease // guarded by mu
	fail    map[Op]error                 // guarded by mu
	calls   map[Op]int                   // guarded by mu
	changed chan struct{}                // guarded by mu; closed and replaced on every change
	now     func() time.Time
}

var _ store.Store = (*Fake)(nil)

// New returns an empty store: no config, no leases. now is the clock for
// lease expirations; nil means time.Now.
func New(now func() time.Time) *Fake {
	if now == nil {
		now = time.Now
	}
	return &Fake{
		leases:  make(map[netip.Prefix]lease.Lease),
		fail:    make(map[Op]error),
		calls:   make(map[Op]int),
		changed: make(chan struct{}),
		now:     now,
	}
}

// SetConfig parses raw and makes it the network config; an invalid raw is
// an error and changes nothing.
func (f *Fake) SetConfig(raw string) error {
	cfg, err := netconf.Parse([]byte(raw))
	if err != nil {
		return fmt.Errorf("storetest: config %s: %w", raw, err)
	}
	f.mu.Lock()
	f.cfg = cfg
	f.mu.Unlock()
	return nil
}

// Put adds or replaces a lease (a peer joining or changing), and wakes
// every Watch.
func (f *Fake) Put(l lease.Lease) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.leases[l.Subnet] = l
	f.notifyLocked()
}

// Delete removes the lease for subnet (a peer leaving, or an administrator
// deleting this host's lease), and wakes every Watch.
func (f *Fake) Delete(subnet netip.Prefix) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.leases, subnet)
	f.notifyLocked()
}

// Leases returns every lease, ordered by subnet.
func (f *Fake) Leases() []lease.Lease {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.snapshotLocked()
}

// Fail makes every later call of op return err (wrapped, so errors.Is
// finds it) until Fail(op, nil). A failing Watch returns at once, as a
// real store does with an error retrying cannot fix; a Watch already
// running is not interrupted.
func (f *Fake) Fail(op Op, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		delete(f.fail, op)
		return
	}
	f.fail[op] = err
}

// Calls counts the calls of op so far, failed ones included.
func (f *Fake) Calls(op Op) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

// begin counts a call and returns the injected failure, if any.
func (f *Fake) begin(op Op) error {
	f.calls[op]++
	if err := f.fail[op]; err != nil {
		return fmt.Errorf("storetest: %s: %w", op, err)
	}
	return nil
}

// Config implements store.Store.
func (f *Fake) Config(ctx context.Context) (*netconf.Config, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin(OpConfig); err != nil {
		return nil, err
	}
	if f.cfg == nil {
		return nil, fmt.Errorf("storetest: %w", store.ErrNoConfig)
	}
	c := *f.cfg
	return &c, nil
}

// Acquire implements store.Store in flannel's order (lease.PickSubnet).
func (f *Fake) Acquire(ctx context.Context, cfg *netconf.Config, req store.AcquireRequest) (lease.Lease, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin(OpAcquire); err != nil {
		return lease.Lease{}, err
	}
	pick, err := lease.PickSubnet(lease.PickInput{
		Config:       cfg,
		Existing:     f.snapshotLocked(),
		PublicIP:     req.Attrs.PublicIP,
		Previous:     req.Previous,
		PreviousIPv6: req.PreviousIPv6,
		HostID:       req.Attrs.HostID,
		NewHostID:    req.NewHostID,
	})
	if err != nil {
		return lease.Lease{}, err
	}
	for _, s := range pick.Stale {
		delete(f.leases, s.Subnet)
	}
	l := lease.Lease{Subnet: pick.Subnet, IPv6Subnet: pick.IPv6Subnet, Attrs: req.Attrs}
	if pick.Existing == nil || !pick.Existing.Reservation() {
		l.Expiration = f.now().Add(TTL)
	}
	f.leases[l.Subnet] = l
	f.notifyLocked()
	return l, nil
}

// Renew implements store.Store: it extends the lease, re-creating it when
// it is gone and its subnet is free.
func (f *Fake) Renew(ctx context.Context, l lease.Lease) (lease.Lease, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin(OpRenew); err != nil {
		return lease.Lease{}, err
	}
	if l.Reservation() {
		return l, nil
	}
	if cur, ok := f.leases[l.Subnet]; ok && cur.Attrs.PublicIP != l.Attrs.PublicIP {
		return lease.Lease{}, fmt.Errorf("storetest: renew %s: taken by %s", l.Subnet, cur.Attrs.PublicIP)
	}
	l.Expiration = f.now().Add(TTL)
	f.leases[l.Subnet] = l
	f.notifyLocked()
	return l, nil
}

// Watch implements store.Store: fn gets the whole lease set at start and
// after every change, until ctx is done.
func (f *Fake) Watch(ctx context.Context, fn func([]lease.Lease)) error {
	f.mu.Lock()
	if err := f.begin(OpWatch); err != nil {
		f.mu.Unlock()
		return err
	}
	f.mu.Unlock()
	for {
		f.mu.Lock()
		snap, changed := f.snapshotLocked(), f.changed
		f.mu.Unlock()
		fn(snap)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

func (f *Fake) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *Fake) snapshotLocked() []lease.Lease {
	out := make([]lease.Lease, 0, len(f.leases))
	for _, l := range f.leases {
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b lease.Lease) int {
		return cmp.Or(a.Subnet.Addr().Compare(b.Subnet.Addr()), cmp.Compare(a.Subnet.Bits(), b.Subnet.Bits()))
	})
	return out
}

// ErrInjected is a ready-made failure for Fail.
var ErrInjected = errors.New("injected failure")
