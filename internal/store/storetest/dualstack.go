package storetest

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/netconf"
	"github.com/weftnet/weft/internal/store"
)

// DualStackConformance holds an allocating store to the dual-stack part of
// the contract: with IPv6 enabled Acquire leases an IPv6 subnet of the
// IPv6Network beside the IPv4 one, reuses both (by PublicIP, and from
// subnet.env's FLANNEL_SUBNET/FLANNEL_IPV6_SUBNET), keeps PublicIPv6 and
// BackendV6Data, gives another host other subnets of both families, hands
// out both in Watch snapshots, re-creates both on Renew of a deleted lease,
// and follows the config when IPv6 is turned off and on again while
// keeping the IPv4 subnet the pods use. h.Store must be empty.
func DualStackConformance(t *testing.T, h Harness) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st := h.Store
	const dualRaw = `{"Network": "10.5.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:10:244::/56", "Backend": {"Type": "host-gw"}}`
	config := func(raw string) *netconf.Config {
		t.Helper()
		if err := h.SetConfig(raw); err != nil {
			t.Fatal(err)
		}
		cfg, err := st.Config(ctx)
		if err != nil {
			t.Fatalf("Config after storing %s: %v", raw, err)
		}
		return cfg
	}
	cfg := config(dualRaw)
	if !cfg.EnableIPv6 || cfg.IPv6SubnetLen != 64 {
		t.Fatalf("Config = %+v; want IPv6 enabled with IPv6SubnetLen 64", cfg)
	}

	me := lease.Attrs{
		PublicIP: netip.MustParseAddr("192.0.2.1"), PublicIPv6: netip.MustParseAddr("2001:db8::1"),
		BackendType: "host-gw", BackendV6Data: []byte(`{"x":1}`),
	}
	prev, prev6 := netip.MustParsePrefix("10.5.7.0/24"), netip.MustParsePrefix("fd00:10:244:7::/64")
	l, err := st.Acquire(ctx, cfg, store.AcquireRequest{Attrs: me, Previous: prev, PreviousIPv6: prev6})
	if err != nil || l.Subnet != prev || l.IPv6Subnet != prev6 || !l.Attrs.Equal(me) || l.Reservation() {
		t.Fatalf("Acquire = %v (%+v), %v; want the free previous subnets %s and %s with the attributes asked for", l, l.Attrs, err, prev, prev6)
	}
	again, err := st.Acquire(ctx, cfg, store.AcquireRequest{Attrs: me})
	if err != nil || again.Subnet != prev || again.IPv6Subnet != prev6 {
		t.Fatalf("second Acquire for the same PublicIP = %v, %v; want %s and %s again", again, err, prev, prev6)
	}
	other := lease.Attrs{PublicIP: netip.MustParseAddr("192.0.2.2"), PublicIPv6: netip.MustParseAddr("2001:db8::2"), BackendType: "host-gw"}
	peer, err := st.Acquire(ctx, cfg, store.AcquireRequest{Attrs: other, Previous: prev, PreviousIPv6: prev6})
	if err != nil || peer.Subnet == prev || peer.IPv6Subnet == prev6 || !cfg.IPv6Network.Contains(peer.IPv6Subnet.Addr()) || peer.IPv6Subnet.Bits() != 64 {
		t.Fatalf("Acquire for another host asking for the taken subnets = %v, %v; want other subnets of both networks", peer, err)
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
	find := func(ls []lease.Lease, sn netip.Prefix) *lease.Lease {
		for i := range ls {
			if ls[i].Subnet == sn {
				return &ls[i]
			}
		}
		return nil
	}
	s := waitFor("both dual-stack leases", func(ls []lease.Lease) bool { return len(ls) == 2 })
	if o := find(s, prev); o == nil || o.IPv6Subnet != prev6 || !o.Attrs.Equal(me) {
		t.Fatalf("snapshot %v: want own lease %s&%s with PublicIPv6 %s and BackendV6Data", s, prev, prev6, me.PublicIPv6)
	}
	if p := find(s, peer.Subnet); p == nil || p.IPv6Subnet != peer.IPv6Subnet || p.Attrs.PublicIPv6 != other.PublicIPv6 {
		t.Fatalf("snapshot %v: want peer lease %s&%s", s, peer.Subnet, peer.IPv6Subnet)
	}

	if err := h.Delete(prev); err != nil {
		t.Fatal(err)
	}
	waitFor("the own lease gone", func(ls []lease.Lease) bool { return find(ls, prev) == nil })
	r, err := st.Renew(ctx, l)
	if err != nil || r.Subnet != prev || r.IPv6Subnet != prev6 {
		t.Fatalf("Renew of a deleted dual-stack lease = %v, %v; want %s and %s re-created", r, err, prev, prev6)
	}
	waitFor("the own lease back", func(ls []lease.Lease) bool {
		o := find(ls, prev)
		return o != nil && o.IPv6Subnet == prev6
	})

	// IPv6 off: the lease keeps its IPv4 subnet and loses the IPv6 one.
	v4cfg := config(`{"Network": "10.5.0.0/16", "Backend": {"Type": "host-gw"}}`)
	v4, err := st.Acquire(ctx, v4cfg, store.AcquireRequest{Attrs: lease.Attrs{PublicIP: me.PublicIP, BackendType: "host-gw"}})
	if err != nil || v4.Subnet != prev || v4.IPv6Subnet.IsValid() {
		t.Fatalf("Acquire with IPv6 off = %v, %v; want %s without an IPv6 subnet", v4, err, prev)
	}
	waitFor("the own lease without IPv6", func(ls []lease.Lease) bool {
		o := find(ls, prev)
		return o != nil && !o.IPv6Subnet.IsValid() && len(ls) == 2
	})
	// And on again: the IPv4 subnet is kept, subnet.env's IPv6 subnet comes back.
	cfg = config(dualRaw)
	back, err := st.Acquire(ctx, cfg, store.AcquireRequest{Attrs: me, PreviousIPv6: prev6})
	if err != nil || back.Subnet != prev || back.IPv6Subnet != prev6 {
		t.Fatalf("Acquire with IPv6 on again = %v, %v; want %s and %s", back, err, prev, prev6)
	}
	waitFor("the own lease with IPv6 again, and no second own lease", func(ls []lease.Lease) bool {
		o := find(ls, prev)
		return o != nil && o.IPv6Subnet == prev6 && len(ls) == 2
	})
}
