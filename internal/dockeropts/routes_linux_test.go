package dockeropts

import (
	"errors"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/nstest"
)

// TestViaRoutesInNamespace programs real routes in a namespace of the
// test's own and checks that only a gateway route for exactly the subnet
// counts, then that Run fails on it after writing the file.
func TestViaRoutesInNamespace(t *testing.T) {
	nstest.RequireRoot(t)
	ns := nstest.NewNS(t, "do")
	nstest.Exec(t, ns, "ip", "link", "add", "eth9", "type", "veth", "peer", "name", "eth9p")
	nstest.Exec(t, ns, "ip", "link", "set", "eth9p", "up")
	nstest.Exec(t, ns, "ip", "addr", "add", "192.168.50.1/24", "dev", "eth9")
	nstest.Exec(t, ns, "ip", "link", "set", "eth9", "up")
	// Near misses that must not count: a device route for the subnet, a
	// gateway route for a longer prefix inside it, one in another table.
	nstest.Exec(t, ns, "ip", "route", "add", "10.244.1.0/24", "dev", "eth9")
	nstest.Exec(t, ns, "ip", "route", "add", "10.244.1.0/25", "via", "192.168.50.2")
	nstest.Exec(t, ns, "ip", "route", "add", "10.244.2.0/24", "via", "192.168.50.2", "table", "100")

	h, err := netns.Handle(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	check := func(p netip.Prefix) ([]string, error) { return ViaRoutes(h, p) }

	for _, sn := range []string{"10.244.1.0/24", "10.244.2.0/24"} {
		got, err := check(netip.MustParsePrefix(sn))
		if err != nil {
			t.Fatalf("ViaRoutes(%s): %v", sn, err)
		}
		if len(got) != 0 {
			t.Errorf("ViaRoutes(%s) = %q, want none", sn, got)
		}
	}

	nstest.Exec(t, ns, "ip", "route", "add", "10.244.2.0/24", "via", "192.168.50.3", "proto", "87")
	got, err := check(netip.MustParsePrefix("10.244.2.0/24"))
	if err != nil {
		t.Fatalf("ViaRoutes: %v", err)
	}
	if want := []string{"10.244.2.0/24 via 192.168.50.3 dev eth9 proto 87"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("ViaRoutes = %q, want %q", got, want)
	}

	dir := t.TempDir()
	o := Defaults()
	o.SubnetFile = filepath.Join(dir, "subnet.env")
	o.OutputFile = filepath.Join(dir, "docker_opts.env")
	writeFile(t, o.SubnetFile, "FLANNEL_SUBNET=10.244.2.1/24\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=true\n")
	if err := Run(o, nil, check, discard()); !errors.Is(err, ErrRouteConflict) {
		t.Errorf("Run = %v, want ErrRouteConflict", err)
	}
	writeFile(t, o.SubnetFile, "FLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=true\n")
	if err := Run(o, nil, check, discard()); err != nil {
		t.Errorf("Run for the subnet with only a device route: %v", err)
	}
}
