package kernel

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	vns "github.com/vishvananda/netns"

	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/nstest"
)

func TestRetryDump(t *testing.T) {
	calls := 0
	v, err := RetryDump(func() (int, error) {
		calls++
		if calls < 3 {
			return 0, netlink.ErrDumpInterrupted
		}
		return 42, nil
	})
	if v != 42 || err != nil || calls != 3 {
		t.Errorf("got %d, %v after %d calls; want 42, nil after 3", v, err, calls)
	}

	calls = 0
	_, err = RetryDump(func() (int, error) { calls++; return 0, netlink.ErrDumpInterrupted })
	if !errors.Is(err, netlink.ErrDumpInterrupted) || calls != dumpAttempts {
		t.Errorf("always interrupted: err %v after %d calls; want ErrDumpInterrupted after %d", err, calls, dumpAttempts)
	}

	calls = 0
	other := errors.New("permission denied")
	if _, err = RetryDump(func() (int, error) { calls++; return 0, other }); err != other || calls != 1 {
		t.Errorf("other error: %v after %d calls; want it unchanged after 1", err, calls)
	}
}

// hostNS builds one namespace with a link to program routes on:
//
//	[ ns: eth0 192.168.1.1/24 ]──veth──[ eth0p ] (same ns, so eth0 has carrier)
func hostNS(t *testing.T) (name string, h *netlink.Handle, eth0 int) {
	t.Helper()
	nstest.RequireRoot(t)
	name = nstest.NewNS(t, "k")
	nstest.Exec(t, name, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")
	nstest.Exec(t, name, "ip", "link", "set", "eth0p", "up")
	nstest.Exec(t, name, "ip", "link", "set", "eth0", "up")
	nstest.Exec(t, name, "ip", "addr", "add", "192.168.1.1/24", "dev", "eth0")
	h, err := netns.Handle(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	l, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	return name, h, l.Attrs().Index
}

// ipRoutes is `ip route` in ns, one trimmed line per route.
func ipRoutes(t *testing.T, ns string) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(nstest.Exec(t, ns, "ip", "route", "show", "table", "main"), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func ownedIn(network, own string) func(Route) bool {
	n, o := netip.MustParsePrefix(network), netip.MustParsePrefix(own)
	return func(r Route) bool {
		return r.Gw.IsValid() && r.Dst.Bits() > n.Bits() && n.Contains(r.Dst.Addr()) && !r.Dst.Overlaps(o)
	}
}

func TestSyncInNamespace(t *testing.T) {
	ns, h, eth0 := hostNS(t)
	// Present before weft: a stale peer route (flannel's, no proto), a
	// conflicting one, and routes weft must never touch.
	nstest.Exec(t, ns, "ip", "route", "add", "10.244.7.0/24", "via", "192.168.1.7", "dev", "eth0")
	nstest.Exec(t, ns, "ip", "route", "add", "10.244.3.0/24", "via", "192.168.1.99", "dev", "eth0")
	nstest.Exec(t, ns, "ip", "route", "add", "10.9.0.0/24", "via", "192.168.1.9", "dev", "eth0")
	nstest.Exec(t, ns, "ip", "route", "add", "10.244.5.0/24", "dev", "eth0")
	nstest.Exec(t, ns, "ip", "route", "add", "default", "via", "192.168.1.254", "dev", "eth0")

	gw := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	desired := []Route{
		{Dst: netip.MustParsePrefix("10.244.2.0/24"), Gw: gw("192.168.1.2"), LinkIndex: eth0, Proto: ProtoWeft},
		{Dst: netip.MustParsePrefix("10.244.3.0/24"), Gw: gw("192.168.1.3"), LinkIndex: eth0, Proto: ProtoWeft},
	}
	owned := ownedIn("10.244.0.0/16", "10.244.1.0/24")
	res, err := Sync(h, desired, owned)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	var done []string
	for _, op := range res.Done {
		done = append(done, op.Format(map[int]string{eth0: "eth0"}))
	}
	wantDone := []string{
		"replace 10.244.2.0/24 via 192.168.1.2 dev eth0 proto weft",
		"replace 10.244.3.0/24 via 192.168.1.3 dev eth0 proto weft",
		"del 10.244.7.0/24 via 192.168.1.7 dev eth0 proto boot",
	}
	if !slices.Equal(done, wantDone) {
		t.Errorf("done:\n%s\nwant:\n%s", strings.Join(done, "\n"), strings.Join(wantDone, "\n"))
	}

	want := []string{
		"default via 192.168.1.254 dev eth0",
		"10.9.0.0/24 via 192.168.1.9 dev eth0",
		"10.244.2.0/24 via 192.168.1.2 dev eth0 proto 87",
		"10.244.3.0/24 via 192.168.1.3 dev eth0 proto 87",
		"10.244.5.0/24 dev eth0 scope link",
		"192.168.1.0/24 dev eth0 proto kernel scope link src 192.168.1.1",
	}
	if got := ipRoutes(t, ns); !slices.Equal(got, want) {
		t.Errorf("ip route:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// A second sync finds nothing to do.
	res, err = Sync(h, desired, owned)
	if err != nil || len(res.Done) != 0 || len(res.Failed) != 0 {
		t.Errorf("second sync: %v, done %v, failed %v; want nothing", err, res.Done, res.Failed)
	}
}

func TestSyncReportsRefusedRoute(t *testing.T) {
	_, h, eth0 := hostNS(t)
	desired := []Route{
		{Dst: netip.MustParsePrefix("10.244.2.0/24"), Gw: netip.MustParseAddr("192.168.1.2"), LinkIndex: eth0, Proto: ProtoWeft},
		// Not on eth0's subnet: the kernel refuses it.
		{Dst: netip.MustParsePrefix("10.244.4.0/24"), Gw: netip.MustParseAddr("10.99.0.4"), LinkIndex: eth0, Proto: ProtoWeft},
	}
	res, err := Sync(h, desired, ownedIn("10.244.0.0/16", "10.244.1.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Done) != 1 || res.Done[0].Route != desired[0] {
		t.Errorf("done = %v, want only the reachable route", res.Done)
	}
	if len(res.Failed) != 1 || res.Failed[0].Op.Route != desired[1] {
		t.Fatalf("failed = %v, want the unreachable route", res.Failed)
	}
	if msg := res.Err().Error(); !strings.HasPrefix(msg, "replace route 10.244.4.0/24 via 10.99.0.4") {
		t.Errorf("error %q does not name the route", msg)
	}
}

// TestWatchRoutes sees a route added, changed and deleted, each as the
// kernel then holds it, and nothing once ctx is cancelled.
func TestWatchRoutes(t *testing.T) {
	ns, h, eth0 := hostNS(t)
	r := Route{Dst: netip.MustParsePrefix("10.244.2.0/24"), Gw: netip.MustParseAddr("192.168.1.2"), LinkIndex: eth0, Proto: ProtoWeft}

	nsh, err := vns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer nsh.Close()
	ctx, cancel := context.WithCancel(t.Context())
	var subErr atomic.Pointer[error]
	ch, err := WatchRoutes(ctx, &nsh, func(err error) { subErr.Store(&err) })
	if err != nil {
		t.Fatal(err)
	}
	if res := ApplyOps(h, []Op{{Kind: Replace, Route: r}}); res.Err() != nil {
		t.Fatal(res.Err())
	}
	nstest.Exec(t, ns, "ip", "route", "replace", "10.244.2.0/24", "via", "192.168.1.9", "dev", "eth0")
	nstest.Exec(t, ns, "ip", "route", "del", "10.244.2.0/24")
	changed := r
	changed.Gw, changed.Proto = netip.MustParseAddr("192.168.1.9"), 3 // proto boot, ip's default
	want := []RouteEvent{{Route: r}, {Route: changed}, {Route: changed, Deleted: true}}
	deadline := time.After(5 * time.Second)
	for len(want) > 0 {
		select {
		case got := <-ch:
			// Routes the kernel adds on its own (none here) are skipped.
			if got.Route.Dst != r.Dst {
				continue
			}
			if got != want[0] {
				t.Fatalf("reported %+v, want %+v", got, want[0])
			}
			want = want[1:]
		case <-deadline:
			t.Fatalf("not reported within 5s: %+v", want)
		}
	}

	cancel()
	deadline = time.After(5 * time.Second)
	for open := true; open; {
		select {
		case _, open = <-ch:
		case <-deadline:
			t.Fatal("channel not closed after ctx was cancelled")
		}
	}
	if e := subErr.Load(); e != nil {
		t.Errorf("cancelling reported an error: %v", *e)
	}
}

func TestFromNetlinkSkipsWhatItCannotRepresent(t *testing.T) {
	ns, h, _ := hostNS(t)
	nstest.Exec(t, ns, "ip", "route", "add", "blackhole", "10.244.1.0/24")
	nstest.Exec(t, ns, "ip", "route", "add", "10.244.6.0/24", "nexthop", "via", "192.168.1.6", "nexthop", "via", "192.168.1.16")
	rs, err := ListRoutes(h)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Dst == netip.MustParsePrefix("10.244.1.0/24") || r.Dst == netip.MustParsePrefix("10.244.6.0/24") {
			t.Errorf("ListRoutes returned %v, which a Route cannot represent", r)
		}
	}
	// ...so a sync with an owner that claims everything leaves them alone.
	if _, err := Sync(h, nil, func(Route) bool { return true }); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(ipRoutes(t, ns), "\n")
	for _, want := range []string{"blackhole 10.244.1.0/24", "10.244.6.0/24"} {
		if !strings.Contains(got, want) {
			t.Errorf("%q removed; table now:\n%s", want, got)
		}
	}
}

// An IPv6 route written without a metric comes back as written, though
// the kernel stores it with metric 1024: a second Sync of the same plan
// changes nothing, and a changed gateway is replaced in place.
func TestSyncIPv6RouteIsStable(t *testing.T) {
	ns, h, eth0 := hostNS(t)
	nstest.Exec(t, ns, "ip", "-6", "addr", "add", "fd00:4:7::1/64", "dev", "eth0", "nodad")
	owned := PeerRouteOwner(netip.MustParsePrefix("fd00:50::/56"), netip.MustParsePrefix("fd00:50:0:1::/64"))
	want := Route{Dst: netip.MustParsePrefix("fd00:50:0:2::/64"), Gw: netip.MustParseAddr("fd00:4:7::2"), LinkIndex: eth0, Proto: ProtoWeft}
	res, err := Sync(h, []Route{want}, owned)
	if err != nil || len(res.Done) != 1 || len(res.Failed) != 0 {
		t.Fatalf("first Sync: %+v, %v", res, err)
	}
	rs, err := ListRoutes(h)
	if err != nil || !slices.Contains(rs, want) {
		t.Fatalf("ListRoutes = %v, %v; want %v among them", rs, err, want)
	}
	if res, err := Sync(h, []Route{want}, owned); err != nil || len(res.Done) != 0 {
		t.Fatalf("second Sync changed %+v, %v", res.Done, err)
	}
	want.Gw = netip.MustParseAddr("fd00:4:7::3")
	if res, err := Sync(h, []Route{want}, owned); err != nil || len(res.Done) != 1 {
		t.Fatalf("Sync to a new gateway: %+v, %v", res, err)
	}
	out := nstest.Exec(t, ns, "ip", "-6", "route", "show", "exact", "fd00:50:0:2::/64")
	if strings.Count(strings.TrimSpace(out), "\n") != 0 || !strings.Contains(out, "via fd00:4:7::3 dev eth0 proto 87 metric 1024") {
		t.Errorf("ip -6 route: %q, want one route via fd00:4:7::3", out)
	}
}
