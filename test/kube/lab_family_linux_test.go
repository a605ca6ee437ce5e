package kube

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/backend/vxlan"
	"github.com/weftnet/weft/internal/backend/wireguard"
	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/internal/status"
	"github.com/weftnet/weft/internal/subnetenv"
	"github.com/weftnet/weft/internal/testbin"
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

// TestLabKubeIPv6Only: an IPv6-only cluster on an IPv6-only underlay,
// with host-gw and with vxlan. Nodes get an IPv6 podCIDR alone; each
// agent runs with "EnableIPv4": false, leases it, writes subnet.env
// without IPv4 lines, and publishes the IPv6 annotations only (no
// public-ip, no backend-data); vxlan makes flannel-v6.1 alone, publishes
// its MAC in backend-v6-data, and gives pods the MTU of VXLAN over IPv6.
func TestLabKubeIPv6Only(t *testing.T) {
	for _, be := range []string{"host-gw", "vxlan"} {
		t.Run(be, func(t *testing.T) { testLabKubeIPv6Only(t, be) })
	}
}

func testLabKubeIPv6Only(t *testing.T, be string) {
	k := startKubeLabFamily(t, be, lab.FamilyIPv6, 2, 1)
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
			v6data := "null"
			if be == "vxlan" {
				v6data = `{"VNI":1,"VtepMAC":"` + k.deviceMACOf(t, h.Name, vxlan.DeviceNameV6(1)) + `"}`
				if _, err := k.handle(t, h.Name).LinkByName(vxlan.DeviceName(1)); err == nil {
					t.Errorf("%s has %s on an IPv6-only network", h.Name, vxlan.DeviceName(1))
				}
				eth0, err := k.handle(t, h.Name).LinkByName(h.Iface)
				if err != nil {
					t.Fatalf("%s: %s: %v", h.Name, h.Iface, err)
				}
				if want := eth0.Attrs().MTU - vxlan.OverheadIPv6; env.MTU != want {
					t.Errorf("%s FLANNEL_MTU=%d, want %d (%s's MTU minus %d for VXLAN over IPv6)", h.Name, env.MTU, want, h.Iface, vxlan.OverheadIPv6)
				}
			}
			k.checkAnnotations(t, h, map[string]string{
				p + "backend-v6-data":     v6data,
				p + "backend-type":        be,
				p + "kube-subnet-manager": "true",
				p + "public-ipv6":         h.Addr6.Addr().String(),
			})
		}
	})

	// Needs the agent to key its own lease and peers by the IPv6 subnet
	// when IPv4 is off, admission of IPv6-only leases, and the backend's
	// IPv6 entries (host-gw's routes via PublicIPv6; vxlan's neighbour,
	// FDB entry and onlink route on flannel-v6.1).
	t.Run("pods reach each other over IPv6", func(t *testing.T) {
		k.checkFamilies(t, ctx, []string{"IPv6"})
	})

	// weft status --check, run as the agent is, finds the own Node's
	// lease by its IPv6 subnet and PublicIPv6, and probes the peer over
	// IPv6.
	t.Run("status --check over IPv6", func(t *testing.T) {
		h := k.Topology().Hosts[0]
		r := k.statusCheck(t, h)
		sub6, _ := k.Subnet6(h.Name)
		if !r.OK || r.Host.Subnet != sub6.String() || r.Host.PublicIP != h.Addr6.Addr().String() {
			t.Errorf("status on %s: ok %v, host %+v, problems %+v", h.Name, r.OK, r.Host, r.Problems)
		}
		for _, row := range r.Leases {
			if row.Self {
				continue
			}
			if row.Check == nil || row.Check.Family != "IPv6" || !row.Check.Reply || row.Status != "ok" {
				t.Errorf("peer %s: status %s, check %+v, problems %+v", row.Subnet, row.Status, row.Check, row.Problems)
			}
		}
	})
}

// statusCheck runs `weft status --check -o json` in h's namespace with
// its agent's flags and environment, and decodes the report.
func (k *kubeLab) statusCheck(t *testing.T, h lab.Host) status.Report {
	t.Helper()
	args := append([]string{"netns", "exec", h.NS, testbin.Weft(t), "status", "--check", "-o", "json"}, k.Topology().AgentArgs(h)[1:]...)
	cmd := exec.Command("ip", args...)
	cmd.Env = append(os.Environ(), k.Topology().AgentEnv(h)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var r status.Report
	if jerr := json.Unmarshal(stdout.Bytes(), &r); jerr != nil {
		t.Fatalf("weft status on %s: %v, %v\n%s%s", h.Name, err, jerr, stdout.String(), stderr.String())
	}
	return r
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
