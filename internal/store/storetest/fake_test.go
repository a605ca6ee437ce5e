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

func TestFakeFollowsTheStoreContract(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f := New(func() time.Time { return now })
	if _, err := f.Config(ctx); !errors.Is(err, store.ErrNoConfig) {
		t.Fatalf("Config on an empty store: %v, want ErrNoConfig", err)
	}
	if err := f.SetConfig(`{"Network": "10.5.0.0/16"`); err == nil {
		t.Fatal("SetConfig took invalid JSON")
	}
	if err := f.SetConfig(`{"Network": "10.5.0.0/16", "Backend": {"Type": "host-gw"}}`); err != nil {
		t.Fatal(err)
	}
	cfg, err := f.Config(ctx)
	if err != nil {
		t.Fatal(err)
	}

	me := lease.Attrs{PublicIP: netip.MustParseAddr("192.0.2.1"), BackendType: "host-gw"}
	prev := netip.MustParsePrefix("10.5.7.0/24")
	l, err := f.Acquire(ctx, cfg, store.AcquireRequest{Attrs: me, Previous: prev})
	if err != nil || l.Subnet != prev || !l.Expiration.Equal(now.Add(TTL)) {
		t.Fatalf("Acquire = %v, %v; want the free previous subnet %s expiring in %v", l, err, prev, TTL)
	}
	// Acquiring again with the same PublicIP returns the same lease.
	if again, err := f.Acquire(ctx, cfg, store.AcquireRequest{Attrs: me}); err != nil || again.Subnet != prev {
		t.Fatalf("second Acquire = %v, %v; want %s again", again, err, prev)
	}

	f.Fail(OpRenew, ErrInjected)
	if _, err := f.Renew(ctx, l); !errors.Is(err, ErrInjected) {
		t.Fatalf("Renew with an injected failure: %v", err)
	}
	f.Fail(OpRenew, nil)
	f.Delete(prev)
	now = now.Add(time.Hour)
	if r, err := f.Renew(ctx, l); err != nil || !r.Expiration.Equal(now.Add(TTL)) || len(f.Leases()) != 1 {
		t.Fatalf("Renew of a deleted lease = %v, %v, store %v; want it re-created", r, err, f.Leases())
	}
	if got := f.Calls(OpRenew); got != 2 {
		t.Errorf("Calls(renew) = %d, want 2", got)
	}

	// Watch delivers the whole set at start and after each change.
	wctx, cancel := context.WithCancel(ctx)
	snaps := make(chan []lease.Lease, 10)
	done := make(chan error, 1)
	go func() { done <- f.Watch(wctx, func(ls []lease.Lease) { snaps <- ls }) }()
	next := func() []lease.Lease {
		t.Helper()
		select {
		case s := <-snaps:
			return s
		case <-time.After(5 * time.Second):
			t.Fatal("no snapshot within 5s")
			return nil
		}
	}
	if s := next(); len(s) != 1 {
		t.Fatalf("first snapshot %v", s)
	}
	peer := lease.Lease{Subnet: netip.MustParsePrefix("10.5.3.0/24"), Attrs: lease.Attrs{PublicIP: netip.MustParseAddr("192.0.2.2")}}
	f.Put(peer)
	if s := next(); len(s) != 2 || s[0].Subnet != peer.Subnet {
		t.Fatalf("snapshot after Put %v, want the peer first (ordered by subnet)", s)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Watch returned %v, want ctx's error", err)
	}
	f.Fail(OpWatch, ErrInjected)
	if err := f.Watch(ctx, func([]lease.Lease) {}); !errors.Is(err, ErrInjected) {
		t.Errorf("Watch with an injected failure returned %v", err)
	}
}
