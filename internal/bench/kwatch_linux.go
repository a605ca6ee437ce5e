package bench

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	vns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/kernel"
	"github.com/weftnet/weft/internal/netns"
)

// entryKind is the sort of kernel entry a lease asks for.
type entryKind uint8

const (
	kindRoute entryKind = iota // keyed by destination prefix
	kindNeigh                  // keyed by IP address
	kindFDB                    // keyed by MAC address
)

func (k entryKind) String() string {
	return [...]string{"route", "neigh", "fdb"}[k]
}

// entry names one kernel entry.
type entry struct {
	kind entryKind
	key  string
}

// recvBuf is the receive buffer of the notification sockets: thousands of
// entries programmed in a burst must not overflow it, or the timings
// would have holes.
const recvBuf = 64 << 20

// recorder keeps, per kernel entry of one namespace, when it last appeared
// and last disappeared, from netlink notifications timestamped as they are
// read. A reader goroutine does nothing but read and stamp, so the stamps
// lag the kernel by microseconds.
type recorder struct {
	ns string

	mu      sync.Mutex
	added   map[entry]time.Time // guarded by mu
	removed map[entry]time.Time // guarded by mu
	err     error               // guarded by mu; the first subscription failure
}

// record subscribes to route notifications (and, with neighs, neighbour and
// FDB notifications) in namespace ns until ctx is done.
func record(ctx context.Context, ns string, neighs bool) (*recorder, error) {
	h, err := vns.GetFromPath(netns.Path(ns))
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", ns, err)
	}
	defer h.Close()
	r := &recorder{ns: ns, added: map[entry]time.Time{}, removed: map[entry]time.Time{}}
	fail := func(err error) {
		if ctx.Err() != nil {
			return
		}
		r.mu.Lock()
		if r.err == nil {
			r.err = err
		}
		r.mu.Unlock()
	}

	// The stamps are taken in convert, as each notification is read, and
	// nothing is passed on: the recorder is the consumer.
	o := kernel.WatchOptions{Namespace: &h, RcvBuf: recvBuf, ForceRcvBuf: true, OnError: func(err error) {
		fail(fmt.Errorf("notifications in %s: %w", ns, err))
	}}
	_, err = kernel.WatchRouteUpdates(ctx, o, func(u netlink.RouteUpdate) (struct{}, bool) {
		at := time.Now()
		if u.Dst == nil {
			return struct{}{}, false
		}
		if a, ok := netip.AddrFromSlice(u.Dst.IP); ok {
			bits, _ := u.Dst.Mask.Size()
			r.note(entry{kindRoute, netip.PrefixFrom(a.Unmap(), bits).String()}, u.Type == unix.RTM_NEWROUTE, at)
		}
		return struct{}{}, false
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe to routes in %s: %w", ns, err)
	}
	if !neighs {
		return r, nil
	}
	_, err = kernel.WatchNeighUpdates(ctx, o, func(u netlink.NeighUpdate) (struct{}, bool) {
		at := time.Now()
		add := u.Type == unix.RTM_NEWNEIGH
		if u.Family == unix.AF_BRIDGE {
			if len(u.HardwareAddr) > 0 {
				r.note(entry{kindFDB, u.HardwareAddr.String()}, add, at)
			}
			return struct{}{}, false
		}
		if a, ok := netip.AddrFromSlice(u.IP); ok {
			r.note(entry{kindNeigh, a.Unmap().String()}, add, at)
		}
		return struct{}{}, false
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe to neighbours in %s: %w", ns, err)
	}
	return r, nil
}

func (r *recorder) note(e entry, add bool, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if add {
		r.added[e] = at
	} else {
		r.removed[e] = at
	}
}

// lastChange returns, when every entry of es has appeared (add) or
// disappeared (!add) at or after since, the latest of those moments.
func (r *recorder) lastChange(es []entry, add bool, since time.Time) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.removed
	if add {
		m = r.added
	}
	var last time.Time
	for _, e := range es {
		at, ok := m[e]
		if !ok || at.Before(since) {
			return time.Time{}, false
		}
		if at.After(last) {
			last = at
		}
	}
	return last, true
}

// missing counts the entries of es that have not appeared (or
// disappeared) since since.
func (r *recorder) missing(es []entry, add bool, since time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.removed
	if add {
		m = r.added
	}
	n := 0
	for _, e := range es {
		if at, ok := m[e]; !ok || at.Before(since) {
			n++
		}
	}
	return n
}

// failure is the first subscription error; notifications may have been
// lost after it.
func (r *recorder) failure() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// waitChange waits until every recorder has seen every entry of es change
// as asked since since, and returns the latest moment among them. It gives
// up after timeout (false) or when a subscription failed.
func waitChange(ctx context.Context, rs []*recorder, es []entry, add bool, since time.Time, timeout time.Duration) (time.Time, bool, error) {
	deadline := time.Now().Add(timeout)
	// Checking takes a map lookup per entry; for thousands of entries check
	// less often, so the waiting does not steal CPU from the agent being
	// timed (the result comes from the notifications' stamps either way).
	every := time.Millisecond * time.Duration(1+len(es)*len(rs)/1000)
	for {
		var last time.Time
		all := true
		for _, r := range rs {
			if err := r.failure(); err != nil {
				return time.Time{}, false, err
			}
			at, ok := r.lastChange(es, add, since)
			if !ok {
				all = false
				break
			}
			if at.After(last) {
				last = at
			}
		}
		if all {
			return last, true, nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, false, nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, false, ctx.Err()
		case <-time.After(every):
		}
	}
}
