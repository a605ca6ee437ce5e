package lab

import (
	"context"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/nstest"
)

// Three hosts on two segments, no agents:
//
//	<p>-ul: sw0 10.4.7.12/24 (default via .1)       sw1 (no address)
//	         |ve-h1 |ve-h2 |rt-s1                    |rt-s2 |ve-h3
//	<p>-rt:          seg1 10.4.7.1 ── ip_forward ── seg2 10.4.8.1
//	<p>-h1 .7.21, <p>-h2 .7.22 (default via 10.4.7.1); <p>-h3 .8.23 (via 10.4.8.1)
//
// Same-segment hosts reach each other on the link, others through the
// router; etcd's address answers every segment; teardown removes the
// router too.
func TestBuildSegmentsRoutesThroughTheRouter(t *testing.T) {
	nstest.RequireRoot(t)
	spec := Spec{Prefix: testPrefix(), Hosts: 3, Segments: 2, Backend: "vxlan", StateRoot: t.TempDir()}
	topo, err := Plan(spec)
	if err != nil {
		t.Fatal(err)
	}
	downOnCleanup(t, spec)
	before := rootLinks(t)

	if err := os.MkdirAll(topo.StateDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := buildUnderlay(topo.Underlay); err != nil {
		t.Fatal(err)
	}
	if err := buildSegments(topo); err != nil {
		t.Fatal(err)
	}
	for _, h := range topo.Hosts {
		if err := buildHost(topo.Spec, topo.Underlay, h); err != nil {
			t.Fatal(err)
		}
	}
	h1, h2, h3 := topo.Hosts[0], topo.Hosts[1], topo.Hosts[2]
	if h3.Addr.String() != "10.4.8.23/24" {
		t.Fatalf("h3 planned at %s, want 10.4.8.23/24", h3.Addr)
	}

	ctx := context.Background()
	for _, p := range []struct {
		from string
		to   netip.Addr
	}{
		{h1.NS, h2.Addr.Addr()},
		{h1.NS, h3.Addr.Addr()},
		{h3.NS, h1.Addr.Addr()},
		{h3.NS, topo.Underlay.Addr.Addr()}, // etcd from segment 2
		{topo.Underlay.NS, h3.Addr.Addr()},
	} {
		if _, err := pingFrom(ctx, p.from, p.to); err != nil {
			t.Errorf("%s -> %s: %v", p.from, p.to, err)
		}
	}

	// ip route get: on the link within a segment, via the router across.
	hop := func(ns string, dst netip.Addr) routeHop {
		nh, err := netns.Handle(ns)
		if err != nil {
			t.Fatal(err)
		}
		defer nh.Close()
		return lookupHop(nh, dst)
	}
	if got := hop(h1.NS, h2.Addr.Addr()); got.Via.IsValid() || got.Dev != "eth0" {
		t.Errorf("h1 -> h2 (same segment): %+v, want on-link on eth0", got)
	}
	if got := hop(h1.NS, h3.Addr.Addr()); got.Via != netip.MustParseAddr("10.4.7.1") || got.Dev != "eth0" {
		t.Errorf("h1 -> h3 (other segment): %+v, want via 10.4.7.1 dev eth0", got)
	}
	if got := hop(h3.NS, h1.Addr.Addr()); got.Via != netip.MustParseAddr("10.4.8.1") {
		t.Errorf("h3 -> h1: %+v, want via 10.4.8.1", got)
	}
	var fwd []byte
	if err := netns.Do(topo.Router.NS, func() error {
		var err error
		fwd, err = os.ReadFile("/proc/sys/net/ipv4/ip_forward")
		return err
	}); err != nil || strings.TrimSpace(string(fwd)) != "1" {
		t.Errorf("ip_forward in %s = %q (err %v), want 1", topo.Router.NS, fwd, err)
	}
	if after := rootLinks(t); !slices.Equal(before, after) {
		t.Errorf("root namespace links changed:\nbefore %v\nafter  %v", before, after)
	}

	// Down finds the layout in the state file, as `weft lab down` does.
	if err := writeState(topo.StateDir, state{Spec: topo.Spec}); err != nil {
		t.Fatal(err)
	}
	if err := Down(ctx, Spec{Prefix: spec.Prefix, StateRoot: spec.StateRoot}, testLog(t)); err != nil {
		t.Fatalf("down: %v", err)
	}
	if netns.Exists(topo.Router.NS) {
		t.Errorf("router namespace %s left after down", topo.Router.NS)
	}
	assertGone(t, topo, nil)
	if after := rootLinks(t); !slices.Equal(before, after) {
		t.Errorf("root namespace links changed after teardown:\nbefore %v\nafter  %v", before, after)
	}
}
