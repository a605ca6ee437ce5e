package kerneltest_test

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/kernel"
	"github.com/weftnet/weft/internal/kernel/kerneltest"
	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/nstest"
)

// TestFakeBehavesAsTheKernel runs one scenario of the kernel package's
// calls against the real kernel in a namespace and against the fake, and
// wants the same record from both: what each step did and what the tables
// then hold. It is what lets the backends' fake-kernel tests stand for the
// real thing.
//
//	real: [ ns: eth0 192.168.1.1/24 ──veth── eth0p; vx0 vxlan id 1 dev eth0 ]
//	fake: eth0 and vx0 in memory
func TestFakeBehavesAsTheKernel(t *testing.T) {
	nstest.RequireRoot(t)
	ns := nstest.NewNS(t, "kt")
	nstest.Exec(t, ns, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")
	nstest.Exec(t, ns, "ip", "link", "set", "eth0p", "up")
	nstest.Exec(t, ns, "ip", "link", "set", "eth0", "up")
	nstest.Exec(t, ns, "ip", "addr", "add", "192.168.1.1/24", "dev", "eth0")
	real, err := netns.Handle(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(real.Close)

	fake := kerneltest.New()
	fake.AddDevice("eth0", 1500)

	got := scenario(t, fake)
	want := scenario(t, real)
	if !slices.Equal(got, want) {
		t.Errorf("the fake differs from the kernel:\nfake:   %q\nkernel: %q", got, want)
	}
}

// scenario programs vx0, routes, a neighbour and an FDB entry through h,
// repeats and undoes it, and records each step's outcome.
func scenario(t *testing.T, h kernel.Handle) []string {
	t.Helper()
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	vx := &netlink.Vxlan{
		LinkAttrs:    netlink.LinkAttrs{Name: "vx0", MTU: 1450, HardwareAddr: net.HardwareAddr{0x0e, 0, 0, 0, 0, 1}},
		VxlanId:      1,
		VtepDevIndex: eth0.Attrs().Index,
		SrcAddr:      net.ParseIP("192.168.1.1").To4(),
	}
	if err := h.LinkAdd(vx); err != nil {
		t.Fatalf("ip link add vx0: %v", err)
	}
	link, err := h.LinkByName("vx0")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(link); err != nil {
		t.Fatal(err)
	}
	vx0 := link.Attrs().Index
	names := map[int]string{eth0.Attrs().Index: "eth0", vx0: "vx0"}

	var rec []string
	owned := kernel.PeerRouteOwner(netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("10.244.1.0/24"))
	routes := []kernel.Route{
		{Dst: netip.MustParsePrefix("10.244.2.0/24"), Gw: netip.MustParseAddr("192.168.1.2"), LinkIndex: eth0.Attrs().Index, Proto: kernel.ProtoWeft},
		{Dst: netip.MustParsePrefix("10.244.3.0/24"), Gw: netip.MustParseAddr("10.244.3.0"), LinkIndex: vx0, OnLink: true, Proto: kernel.ProtoWeft},
	}
	sync := func(step string, desired []kernel.Route) {
		res, err := kernel.Sync(h, desired, owned)
		rec = append(rec, fmt.Sprintf("%s: done %d failed %d err %v", step, len(res.Done), len(res.Failed), err))
		have, err := kernel.ListRoutes(h)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range have {
			if owned(r) {
				rec = append(rec, "  route "+r.Format(names))
			}
		}
	}
	sync("sync two routes", routes)
	sync("sync again", routes)

	mac := kernel.MAC{0x0e, 0, 0, 0, 0, 3}
	n := kernel.Neigh{LinkIndex: vx0, IP: netip.MustParseAddr("10.244.3.0"), MAC: mac, Permanent: true}
	f := kernel.FDB{LinkIndex: vx0, MAC: mac, Dst: netip.MustParseAddr("192.168.1.3"), Permanent: true}
	// Entries name their link by index, which differs between the two.
	devName := fmt.Sprintf("dev if%d", vx0)
	neighs := func(step string, nres kernel.NeighResult, fres kernel.FDBResult) {
		rec = append(rec, fmt.Sprintf("%s: neigh done %d failed %d, fdb done %d failed %d",
			step, len(nres.Done), len(nres.Failed), len(fres.Done), len(fres.Failed)))
		ns, err := kernel.ListNeighs(h, vx0)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ns {
			if e.Permanent {
				rec = append(rec, "  neigh "+strings.ReplaceAll(e.String(), devName, "dev vx0"))
			}
		}
		fs, err := kernel.ListFDB(h, vx0)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range fs {
			if e.Permanent && e.MAC == mac {
				rec = append(rec, "  fdb "+strings.ReplaceAll(e.String(), devName, "dev vx0"))
			}
		}
	}
	neighs("replace",
		kernel.ApplyNeighOps(h, []kernel.NeighOp{{Kind: kernel.Replace, Neigh: n}}),
		kernel.ApplyFDBOps(h, []kernel.FDBOp{{Kind: kernel.Replace, Entry: f}}))
	gone := kernel.Neigh{LinkIndex: vx0, IP: netip.MustParseAddr("10.244.9.0"), Permanent: true}
	neighs("delete what is not there",
		kernel.ApplyNeighOps(h, []kernel.NeighOp{{Kind: kernel.Delete, Neigh: gone}}),
		kernel.ApplyFDBOps(h, []kernel.FDBOp{{Kind: kernel.Delete, Entry: kernel.FDB{LinkIndex: vx0, MAC: kernel.MAC{0x0e, 0, 0, 0, 0, 9}, Dst: f.Dst}}}))
	neighs("delete",
		kernel.ApplyNeighOps(h, []kernel.NeighOp{{Kind: kernel.Delete, Neigh: n}}),
		kernel.ApplyFDBOps(h, []kernel.FDBOp{{Kind: kernel.Delete, Entry: f}}))

	sync("sync none", nil)
	res := kernel.ApplyOps(h, []kernel.Op{{Kind: kernel.Delete, Route: routes[0]}})
	rec = append(rec, fmt.Sprintf("delete a route that is gone: done %d failed %d", len(res.Done), len(res.Failed)))

	// The device goes, and its entries with it.
	sync("sync two routes again", routes)
	if err := h.LinkDel(link); err != nil {
		t.Fatal(err)
	}
	sync("after ip link del vx0", routes[:1])
	return rec
}
