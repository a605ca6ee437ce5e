package kube

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/backend/wireguard"
	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/internal/subnetenv"
)

// Kubernetes mode with IPv6 on the data path (issue 14): a lab whose
// controller-manager runs with --cluster-cidr=172.7.0.0/16,fd00:10:244::/56
// and --node-cidr-mask-size-ipv6=64 (`weft lab demo --store kube
// --ip-family dual`), and one that is IPv6-only on an IPv6-only underlay
// (--cluster-cidr=fd00:10:244::/56, "EnableIPv4": false).

// TestLabKubeDualStack: every Node gets a podCIDR of each family, its
// agent leases both and writes both to subnet.env, and publishes
// flannel's annotations of both families (public-ip and public-ipv6,
// backend-data and backend-v6-data); pods get an address of each family
// and reach each other over both.
func TestLabKubeDualStack(t *testing.T) {
	k := startKubeLabFamily(t, "host-gw", lab.FamilyDual, 3, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	v4net, v6net := netip.MustParsePrefix(labNetwork), lab.DefaultIPv6Network

	t.Run("podCIDRs of both families are leased and published", func(t *testing.T) {
		for _, h := range k.Topology().Hosts {
			n := k.node(t, h.Name)
			sub, _ := k.Subnet(h.Name)
			sub6, _ := k.Subnet6(h.Name)
			if got := strings.Join(n.Spec.PodCIDRs, ","); got != sub.String()+","+sub6.String() || !v4net.Contains(sub.Addr()) || !v6net.Contains(sub6.Addr()) || sub6.Bits() != 64 {
				t.Errorf("%s leased %s and %s; its Node's podCIDRs are %q (Network %s, IPv6Network %s)", h.Name, sub, sub6, got, v4net, v6net)
			}
			env, err := subnetenv.Read(h.SubnetFile)
			if err != nil || env.Subnet.Masked() != sub || env.IPv6Subnet.Masked() != sub6 || len(env.IPv6Network) != 1 || env.IPv6Network[0] != v6net {
				t.Errorf("%s subnet.env = %+v, %v", h.Name, env, err)
			}
			k.checkAnnotations(t, h, map[string]string{
				p + "backend-data":        "null",
				p + "backend-v6-data":     "null",
				p + "backend-type":        "host-gw",
				p + "kube-subnet-manager": "true",
				p + "public-ip":           h.Addr.Addr().String(),
				p + "public-ipv6":         h.Addr6.Addr().String(),
			})
		}
	})

	// The IPv6 half needs host-gw's IPv6 routes (via each peer's
	// PublicIPv6).
	t.Run("pods reach each other over both families", func(t *testing.T) {
		k.checkFamilies(t, ctx, []string{"IPv4", "IPv6"})
	})
}

// TestLabKubeIPv6Only: an IPv6-only cluster on an IPv6-only underlay.
// Nodes get an IPv6 podCIDR alone; each agent runs with "EnableIPv4":
// false, leases it, writes subnet.env without IPv4 lines, and publishes
// the IPv6 annotations only (no public-ip, no backend-data).
func TestLabKubeIPv6Only(t *testing.T) {
	k := startKubeLabFamily(t, "host-gw", lab.FamilyIPv6, 2, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	v6net := lab.DefaultIPv6Network

	t.Run("an IPv6 podCIDR alone is leased and published", func(t *testing.T) {
		for _, h := range k.Topology().Hosts {
			n := k.node(t, h.Name)
			sub6, _ := k.Subnet6(h.Name)
			if len(n.Spec.PodCIDRs) != 1 || n.Spec.PodCIDRs[0] != sub6.String() || !v6net.Contains(sub6.Addr()) {
				t.Errorf("%s leased %s; its Node's podCIDRs are %q (IPv6Network %s)", h.Name, sub6, n.Spec.PodCIDRs, v6net)
			}
			env, err := subnetenv.Read(h.SubnetFile)
			if err != nil || env.Subnet.IsValid() || len(env.Networks) != 0 || env.IPv6Subnet.Masked() != sub6 {
				t.Errorf("%s subnet.env = %+v, %v", h.Name, env, err)
			}
			k.checkAnnotations(t, h, map[string]string{
				p + "backend-v6-data":     "null",
				p + "backend-type":        "host-gw",
				p + "kube-subnet-manager": "true",
				p + "public-ipv6":         h.Addr6.Addr().String(),
			})
		}
	})

	// Needs the agent to key its own lease and peers by the IPv6 subnet
	// when IPv4 is off, admission of IPv6-only leases, and host-gw's IPv6
	// routes.
	t.Run("pods reach each other over IPv6", func(t *testing.T) {
		k.checkFamilies(t, ctx, []string{"IPv6"})
	})
}

// TestLabKubeIPv6OnlyWireGuard: an IPv6-only cluster on the wireguard
// backend. Each agent runs flannel-wg-v6 alone (Mode separate, the
// default), publishes its key in backend-v6-data with ListenPortV6 and no
// backend-data, and pods reach each other over IPv6 through it.
func TestLabKubeIPv6OnlyWireGuard(t *testing.T) {
	k := startKubeLabFamily(t, "wireguard", lab.FamilyIPv6, 2, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	t.Run("flannel-wg-v6 alone, its key in backend-v6-data", func(t *testing.T) {
		for _, h := range k.Topology().Hosts {
			priv, created, err := wireguard.LoadOrCreateKey(filepath.Join(filepath.Dir(h.SubnetFile), wireguard.KeyFileName))
			if err != nil || created {
				t.Fatalf("%s's key file: %v (created now: %v)", h.Name, err, created)
			}
			key, _ := priv.PublicKey()
			k.checkAnnotations(t, h, map[string]string{
				p + "backend-v6-data":     `{"PublicKey":"` + key.String() + `","Port":51821}`,
				p + "backend-type":        "wireguard",
				p + "kube-subnet-manager": "true",
				p + "public-ipv6":         h.Addr6.Addr().String(),
			})
			links := nstest.Exec(t, h.NS, "ip", "link", "show")
			if !strings.Contains(links, wireguard.DeviceNameV6+":") || strings.Contains(links, wireguard.DeviceName+":") {
				t.Errorf("%s's links:\n%s", h.Name, links)
			}
		}
	})

	t.Run("pods reach each other over IPv6", func(t *testing.T) {
		k.checkFamilies(t, ctx, []string{"IPv6"})
	})
}

// checkAnnotations compares h's flannel annotations with want, exactly:
// none missing, none more.
func (k *kubeLab) checkAnnotations(t *testing.T, h lab.Host, want map[string]string) {
	t.Helper()
	n := k.node(t, h.Name)
	for key, v := range want {
		if got, ok := n.Annotations[key]; !ok || got != v {
			t.Errorf("%s: annotation %s = %q (present %v), want %q", h.Name, key, got, ok, v)
		}
	}
	for key, v := range n.Annotations {
		if _, ok := want[key]; !ok && strings.HasPrefix(key, p) {
			t.Errorf("%s: unexpected annotation %s=%q", h.Name, key, v)
		}
	}
}

// checkFamilies runs the lab's checks and fails on any that did not pass,
// or on a family of fams that no check ran over.
func (k *kubeLab) checkFamilies(t *testing.T, ctx context.Context, fams []string) {
	t.Helper()
	checks, err := k.Check(ctx)
	if err != nil {
		t.Fatalf("checks: %v", err)
	}
	ran := map[string]int{}
	for _, c := range checks {
		ran[c.Family()]++
		if !c.OK() {
			t.Errorf("%s %s -> %s (%s): %s", c.Family(), c.From.Name, c.To.Name, c.Path, c.Problem())
		}
	}
	for _, f := range fams {
		if ran[f] == 0 {
			t.Errorf("no check ran over %s (ran: %v)", f, ran)
		}
	}
	if len(ran) != len(fams) {
		t.Errorf("checks ran over %v, want %v", ran, fams)
	}
	t.Logf("%s", lab.Result{Checks: checks}.Summary())
	if t.Failed() {
		for _, h := range k.Topology().Hosts {
			b, _ := os.ReadFile(h.AgentLog)
			t.Logf("--- %s agent log ---\n%s", h.Name, lastLines(string(b), 15))
		}
	}
}
