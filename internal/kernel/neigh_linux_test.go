package kernel

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	vns "github.com/vishvananda/netns"

	"github.com/weftnet/weft/internal/nstest"
)

// vxlanNS adds a VXLAN device to hostNS's namespace:
//
//	[ ns: vx0 (vxlan id 1 dev eth0 local 192.168.1.1 nolearning), eth0 192.168.1.1/24 ]
func vxlanNS(t *testing.T) (name string, h *netlink.Handle, vx int) {
	t.Helper()
	name, h, _ = hostNS(t)
	nstest.Exec(t, name, "ip", "link", "add", "vx0", "type", "vxlan", "id", "1", "dev", "eth0",
		"local", "192.168.1.1", "dstport", "8472", "nolearning")
	nstest.Exec(t, name, "ip", "link", "set", "vx0", "up")
	l, err := h.LinkByName("vx0")
	if err != nil {
		t.Fatal(err)
	}
	return name, h, l.Attrs().Index
}

func cmdLines(t *testing.T, ns string, args ...string) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(nstest.Exec(t, ns, args...), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return out
}

func TestSyncFDBAgainstKernel(t *testing.T) {
	ns, h, vx := vxlanNS(t)
	for _, cmd := range [][]string{
		{"bridge", "fdb", "add", "0e:00:00:00:00:02", "dev", "vx0", "dst", "192.168.1.20", "self", "permanent"},
		// Only the all-zeros and multicast MACs may have several remotes.
		{"bridge", "fdb", "append", "00:00:00:00:00:00", "dev", "vx0", "dst", "192.168.1.30", "self", "permanent"},
		{"bridge", "fdb", "append", "00:00:00:00:00:00", "dev", "vx0", "dst", "192.168.1.31", "self", "permanent"},
		{"bridge", "fdb", "add", "0e:00:00:00:00:04", "dev", "vx0", "dst", "192.168.1.4", "self", "dynamic"},
		{"bridge", "fdb", "add", "0e:00:00:00:00:09", "dev", "vx0", "dst", "192.168.1.9", "self", "permanent"},
		{"bridge", "fdb", "add", "0e:00:00:00:00:10", "dev", "vx0", "dst", "192.168.1.10", "self", "dynamic"},
	} {
		nstest.Exec(t, ns, cmd...)
	}
	f := func(m, dst string) FDB {
		return FDB{LinkIndex: vx, MAC: mac(m), Dst: netip.MustParseAddr(dst), Permanent: true}
	}
	desired := []FDB{
		f("0e:00:00:00:00:02", "192.168.1.2"),
		f("0e:00:00:00:00:04", "192.168.1.4"),
		f("0e:00:00:00:00:05", "192.168.1.5"),
	}
	permanent := func(f FDB) bool { return f.Permanent }
	installed, err := ListFDB(h, vx)
	if err != nil {
		t.Fatal(err)
	}
	if len(installed) != 6 {
		t.Fatalf("ListFDB = %v, want 6 remotes", installed)
	}
	res := ApplyFDBOps(h, PlanFDB(desired, installed, permanent))
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	if len(res.Done) != 6 {
		t.Errorf("done %v, want 6 changes", res.Done)
	}
	wantLines := []string{
		"0e:00:00:00:00:02 dst 192.168.1.2 self permanent",
		"0e:00:00:00:00:04 dst 192.168.1.4 self permanent",
		"0e:00:00:00:00:05 dst 192.168.1.5 self permanent",
		"0e:00:00:00:00:10 dst 192.168.1.10 self",
	}
	if got := cmdLines(t, ns, "bridge", "fdb", "show", "dev", "vx0"); !slices.Equal(got, wantLines) {
		t.Errorf("bridge fdb show:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantLines, "\n"))
	}
	installed, err = ListFDB(h, vx)
	if err != nil {
		t.Fatal(err)
	}
	if ops := PlanFDB(desired, installed, permanent); len(ops) != 0 {
		t.Errorf("second plan not empty: %v", ops)
	}
	// Deleting what is already gone is no change and no failure.
	if res := ApplyFDBOps(h, []FDBOp{{Kind: Delete, Entry: f("0e:00:00:00:00:77", "192.168.1.77")}}); len(res.Done)+len(res.Failed) != 0 {
		t.Errorf("deleting a missing entry: %+v", res)
	}
}

func TestSyncNeighsAgainstKernel(t *testing.T) {
	ns, h, vx := vxlanNS(t)
	for _, cmd := range [][]string{
		{"ip", "neigh", "replace", "10.244.2.0", "lladdr", "0e:00:00:00:00:99", "dev", "vx0", "nud", "permanent"},
		{"ip", "neigh", "replace", "10.244.3.0", "lladdr", "0e:00:00:00:00:03", "dev", "vx0", "nud", "reachable"},
		{"ip", "neigh", "replace", "10.244.9.0", "lladdr", "0e:00:00:00:00:09", "dev", "vx0", "nud", "permanent"},
		{"ip", "neigh", "replace", "10.244.8.0", "lladdr", "0e:00:00:00:00:08", "dev", "vx0", "nud", "stale"},
		// IPv6 (NDP) entries are planned in the same list as IPv4 ones.
		{"ip", "neigh", "replace", "fd00:10:244:2::", "lladdr", "0e:00:00:00:06:99", "dev", "vx0", "nud", "permanent"},
		{"ip", "neigh", "replace", "fd00:10:244:9::", "lladdr", "0e:00:00:00:06:09", "dev", "vx0", "nud", "permanent"},
		{"ip", "neigh", "replace", "fd00:10:244:8::", "lladdr", "0e:00:00:00:06:08", "dev", "vx0", "nud", "stale"},
	} {
		nstest.Exec(t, ns, cmd...)
	}
	n := func(ip, m string) Neigh {
		return Neigh{LinkIndex: vx, IP: netip.MustParseAddr(ip), MAC: mac(m), Permanent: true}
	}
	desired := []Neigh{n("10.244.2.0", "0e:00:00:00:00:02"), n("10.244.3.0", "0e:00:00:00:00:03"), n("10.244.4.0", "0e:00:00:00:00:04"),
		n("fd00:10:244:2::", "0e:00:00:00:06:02"), n("fd00:10:244:3::", "0e:00:00:00:06:03")}
	permanent := func(n Neigh) bool { return n.Permanent }
	installed, err := ListNeighs(h, vx)
	if err != nil {
		t.Fatal(err)
	}
	if err := ApplyNeighOps(h, PlanNeighs(desired, installed, permanent)).Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"10.244.2.0 lladdr 0e:00:00:00:00:02 PERMANENT",
		"10.244.3.0 lladdr 0e:00:00:00:00:03 PERMANENT",
		"10.244.4.0 lladdr 0e:00:00:00:00:04 PERMANENT",
		"10.244.8.0 lladdr 0e:00:00:00:00:08 STALE",
	}
	if got := cmdLines(t, ns, "ip", "-4", "neigh", "show", "dev", "vx0"); !slices.Equal(got, want) {
		t.Errorf("ip neigh show:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	want6 := []string{
		"fd00:10:244:2:: lladdr 0e:00:00:00:06:02 PERMANENT",
		"fd00:10:244:3:: lladdr 0e:00:00:00:06:03 PERMANENT",
		"fd00:10:244:8:: lladdr 0e:00:00:00:06:08 STALE",
	}
	var got6 []string
	for _, l := range cmdLines(t, ns, "ip", "-6", "neigh", "show", "dev", "vx0") {
		// Entries the kernel made itself (link-local, multicast) are not
		// the plan's.
		if strings.HasPrefix(l, "fd00:") {
			got6 = append(got6, l)
		}
	}
	if !slices.Equal(got6, want6) {
		t.Errorf("ip -6 neigh show:\n%s\nwant:\n%s", strings.Join(got6, "\n"), strings.Join(want6, "\n"))
	}
	installed, err = ListNeighs(h, vx)
	if err != nil {
		t.Fatal(err)
	}
	if ops := PlanNeighs(desired, installed, permanent); len(ops) != 0 {
		t.Errorf("second plan not empty: %v", ops)
	}
}

// TestWatchNeighsAndLinks sees a neighbour and an FDB entry added,
// changed and deleted, then the device deleted.
func TestWatchNeighsAndLinks(t *testing.T) {
	ns, _, vx := vxlanNS(t)
	nsh, err := vns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nsh.Close() })
	ctx, cancel := context.WithCancel(t.Context())
	neighs, err := WatchNeighs(ctx, &nsh, func(err error) { t.Log(err) })
	if err != nil {
		t.Fatal(err)
	}
	links, err := WatchLinks(ctx, &nsh, func(err error) { t.Log(err) })
	if err != nil {
		t.Fatal(err)
	}
	nstest.Exec(t, ns, "ip", "neigh", "replace", "10.244.2.0", "lladdr", "0e:00:00:00:00:02", "dev", "vx0", "nud", "permanent")
	nstest.Exec(t, ns, "ip", "neigh", "replace", "10.244.2.0", "lladdr", "0e:00:00:00:00:99", "dev", "vx0", "nud", "permanent")
	nstest.Exec(t, ns, "bridge", "fdb", "add", "0e:00:00:00:00:02", "dev", "vx0", "dst", "192.168.1.2", "self", "permanent")
	nstest.Exec(t, ns, "bridge", "fdb", "replace", "0e:00:00:00:00:02", "dev", "vx0", "dst", "192.168.1.99", "self", "permanent")
	nstest.Exec(t, ns, "ip", "neigh", "del", "10.244.2.0", "dev", "vx0")
	nstest.Exec(t, ns, "bridge", "fdb", "del", "0e:00:00:00:00:02", "dev", "vx0", "dst", "192.168.1.99", "self")
	nstest.Exec(t, ns, "ip", "neigh", "replace", "fd00:10:244:2::", "lladdr", "0e:00:00:00:06:02", "dev", "vx0", "nud", "permanent")
	nstest.Exec(t, ns, "ip", "neigh", "del", "fd00:10:244:2::", "dev", "vx0")

	ip := netip.MustParseAddr("10.244.2.0")
	ip6 := netip.MustParseAddr("fd00:10:244:2::")
	want := []NeighEvent{
		{LinkIndex: vx, IP: ip, MAC: mac("0e:00:00:00:00:02"), Permanent: true},
		{LinkIndex: vx, IP: ip, MAC: mac("0e:00:00:00:00:99"), Permanent: true},
		{LinkIndex: vx, FDB: true, IP: netip.MustParseAddr("192.168.1.2"), MAC: mac("0e:00:00:00:00:02"), Permanent: true},
		{LinkIndex: vx, FDB: true, IP: netip.MustParseAddr("192.168.1.99"), MAC: mac("0e:00:00:00:00:02"), Permanent: true},
		// The kernel reports a deleted neighbour as changed to FAILED,
		// without its lladdr, and then as deleted.
		{LinkIndex: vx, IP: ip},
		{Deleted: true, LinkIndex: vx, IP: ip},
		{Deleted: true, LinkIndex: vx, FDB: true, IP: netip.MustParseAddr("192.168.1.99"), MAC: mac("0e:00:00:00:00:02"), Permanent: true},
		{LinkIndex: vx, IP: ip6, MAC: mac("0e:00:00:00:06:02"), Permanent: true},
		{LinkIndex: vx, IP: ip6},
		{Deleted: true, LinkIndex: vx, IP: ip6},
	}
	for _, w := range want {
		select {
		case got := <-skipKernelOwn(neighs):
			if got != w {
				t.Errorf("reported %+v, want %+v", got, w)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("not reported within 2s: %+v", w)
		}
	}

	nstest.Exec(t, ns, "ip", "link", "del", "vx0")
	deadline := time.After(2 * time.Second)
	for {
		select {
		case e := <-links:
			if e.Deleted && e.Name == "vx0" && e.Index == vx {
				cancel()
				for range neighs {
				}
				for range links {
				}
				return
			}
		case <-deadline:
			t.Fatal("the link deletion was not reported within 2s")
		}
	}
}

// skipKernelOwn passes on the events of ch but those of entries the
// kernel makes for itself on an IPv6-enabled device (link-local and
// multicast neighbours), which no test plans.
func skipKernelOwn(ch <-chan NeighEvent) <-chan NeighEvent {
	out := make(chan NeighEvent, 1)
	go func() {
		for e := range ch {
			if !e.FDB && (e.IP.IsLinkLocalUnicast() || e.IP.IsMulticast()) {
				continue
			}
			out <- e
			return
		}
		close(out)
	}()
	return out
}
