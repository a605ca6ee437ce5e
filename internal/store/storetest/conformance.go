package storetest

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/store"
)

// Harness is one store under test, with the writes the suite makes behind
// its back, as an operator or another host would.
type Harness struct {
	Store store.Store
	// SetConfig stores raw as the network config.
	SetConfig func(raw string) error
	// Delete removes the lease of subnet.
	Delete func(subnet netip.Prefix) error
}

// Conformance holds a store that allocates subnets itself (not the
// Kubernetes store, whose subnets are podCIDRs) to the store.Store
// contract, so that the fake behaves as the real stores do: ErrNoConfig
// before a config exists, flannel's Acquire order, Renew re-creating a
// deleted lease, and Watch delivering whole snapshots at start and after
// every change. h.Store must be empty.
func Conformance(t *testing.T, h Harness) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st := h.Store
	if _, err := st.Config(ctx); !errors.Is(err, store.ErrNoConfig) {
		t.Fatalf("Config of an empty store: %v, want ErrNoConfig", err)
	}
	if err := h.SetConfig(`{"Network": "10.5.0.0/16", "Backend": {"Type": "host-gw"}}`); err != nil {
		t.Fatal(err)
	}
	cfg, err := st.Config(ctx)
	if err != nil || cfg.Network != netip.MustParsePrefix("10.5.0.0/16") || cfg.BackendType != "host-gw" {
		t.Fatalf("Config = %+v, %v", cfg, err)
	}

	me := lease.Attrs{PublicIP: netip.MustParseAddr("192.0.2.1"), BackendType: "host-gw"}
	prev := netip.MustParsePrefix("10.5.7.0/24")
	l, err := st.Acquire(ctx, cfg, store.AcquireRequest{Attrs: me, Previous: prev})
	if err != nil || l.Subnet != prev || l.Attrs.PublicIP != me.PublicIP || l.Reservation() {
		t.Fatalf("Acquire = %v, %v; want the free previous subnet %s as an expiring lease", l, err, prev)
	}
	if again, err := st.Acquire(ctx, cfg, store.AcquireRequest{Attrs: me}); err != nil || again.Subnet != prev {
		t.Fatalf("second Acquire for the same PublicIP = %v, %v; want %s again", again, err, prev)
	}
	other := lease.Attrs{PublicIP: netip.MustParseAddr("192.0.2.2"), BackendType: "host-gw"}
	peer, err := st.Acquire(ctx, cfg, store.AcquireRequest{Attrs: other, Previous: prev})
	if err != nil || peer.Subnet == prev || !cfg.Network.Contains(peer.Subnet.Addr()) {
		t.Fatalf("Acquire for another host asking for the taken %s = %v, %v; want another subnet of the Network", prev, peer, err)
	}

	snaps := make(chan []lease.Lease, 16)
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- st.Watch(wctx, func(ls []lease.Lease) { snaps <- ls }) }()
	defer func() {
		stop()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Watch returned %v after cancel", err)
		}
	}()
	// waitFor returns the first snapshot for which ok holds; a store may
	// deliver intermediate ones.
	waitFor := func(what string, ok func([]lease.Lease) bool) []lease.Lease {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case s := <-snaps:
				if ok(s) {
					return s
				}
			case <-deadline:
				t.Fatalf("no snapshot with %s within 10s", what)
				return nil
			}
		}
	}
	has := func(ls []lease.Lease, sn netip.Prefix) bool {
		for _, l := range ls {
			if l.Subnet == sn {
				return true
			}
		}
		return false
	}
	s := waitFor("both leases", func(ls []lease.Lease) bool { return len(ls) == 2 })
	if !has(s, prev) || !has(s, peer.Subnet) {
		t.Fatalf("first snapshot %v, want %s and %s", s, prev, peer.Subnet)
	}

	if err := h.Delete(prev); err != nil {
		t.Fatal(err)
	}
	waitFor("the own lease gone", func(ls []lease.Lease) bool { return len(ls) == 1 && !has(ls, prev) })
	r, err := st.Renew(ctx, l)
	if err != nil || r.Subnet != prev || !r.Expiration.After(time.Now()) {
		t.Fatalf("Renew of a deleted lease = %v, %v; want it re-created", r, err)
	}
	waitFor("the own lease back", func(ls []lease.Lease) bool { return has(ls, prev) && has(ls, peer.Subnet) })
}
