package integration

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/internal/subnetenv"
)

// dualConfig is the network config the host-gw dual-stack test moves the
// cluster to.
const dualConfig = `{"Network":"10.50.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:50::/56","Backend":{"Type":"host-gw"}}`

// underlay6 is host hN's IPv6 address on the shared segment, beside its
// IPv4 10.4.7.2N: a ULA, which extiface takes as the interface's global
// IPv6 address and so as the host's PublicIPv6.
func underlay6(t *testing.T, l *lab.Lab, host string) netip.Addr {
	t.Helper()
	v4 := hostIP(t, l, host).As4()
	return netip.MustParseAddr(fmt.Sprintf("fd00:4:7::%d", v4[3]))
}

// ipIn runs ip(8) in host's namespace.
func ipIn(t *testing.T, l *lab.Lab, host string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", l.NS(host)}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s in %s: %v: %s", strings.Join(args, " "), host, err, out)
	}
	return string(out)
}

// v6SubnetOf is the IPv6 subnet host's agent wrote to its subnet.env.
func v6SubnetOf(t *testing.T, l *lab.Lab, host string) netip.Prefix {
	t.Helper()
	h, _ := l.Topology().Host(host)
	env, err := subnetenv.Read(h.SubnetFile)
	if err != nil || !env.IPv6Subnet.IsValid() {
		t.Fatalf("%s's subnet.env: %+v, %v; want an IPv6 subnet", host, env, err)
	}
	return env.IPv6Subnet.Masked()
}

// ping6 pings dst from host's namespace with source src, once.
func ping6(ctx context.Context, l *lab.Lab, host string, src, dst netip.Addr) error {
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", l.NS(host), "ping", "-6", "-n", "-c", "1", "-W", "1", "-I", src.String(), dst.String()).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ping -6 -I %s %s in %s: %v: %s", src, dst, host, err, out)
	}
	return nil
}

// A cluster moves to dual-stack host-gw on a dual-stack underlay (IPv4
// and IPv6 ULA addresses on the one segment), one host at a time:
//
//   - mixed: the config gains EnableIPv6 and h1, h2 restart on it while h3
//     still runs with the IPv4-only config it read. h2 keeps its IPv4
//     subnet under a dual-stack key; h1 and h2 route each other's IPv6
//     subnets via their PublicIPv6 and their pod-like IPv6 addresses ping
//     each other; h3 gets an IPv4 route only, h1 says so once, and IPv4
//     between the pods of all three keeps flowing.
//   - dual: h3 restarts on the new config and gets IPv6 routes too. A
//     hand-deleted IPv6 route comes back well within the reconcile period;
//     an agent restart keeps every IPv6 route (flannel users' "v6 routes
//     lost on restart") and removes a left-over IPv6 route of a host that
//     is gone (flannel's proto boot route); a host that leaves takes its
//     IPv6 route with it.
func TestHostGWDualStack(t *testing.T) {
	l, _ := upLabSpec(t, lab.Spec{Hosts: 3, Pods: 1, Backend: "host-gw", Network: netip.MustParsePrefix("10.50.0.0/16")})
	cli := etcd(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	hosts := []string{"h1", "h2", "h3"}
	for _, h := range hosts {
		ipIn(t, l, h, "-6", "addr", "add", underlay6(t, l, h).String()+"/64", "dev", "eth0", "nodad")
	}
	before := subnetOf(t, l, "h2")
	if _, err := cli.Put(ctx, prefix+"/config", dualConfig); err != nil {
		t.Fatal(err)
	}
	restart := func(h string) {
		t.Helper()
		if err := l.StopAgent(h, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := l.StartAgent(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	restart("h1")
	restart("h2")
	if got := subnetOf(t, l, "h2"); got != before {
		t.Fatalf("h2 moved from %s to %s when IPv6 was enabled", before, got)
	}

	// Exactly one key for h2, now dual-stack, with the same IPv4 subnet.
	v6net := netip.MustParsePrefix("fd00:50::/56")
	nstest.Eventually(t, 10*time.Second, func() error {
		r, err := cli.Get(ctx, prefix+"/subnets/", clientv3.WithPrefix())
		if err != nil {
			return err
		}
		var keys []string
		for _, kv := range r.Kvs {
			var a lease.Attrs
			if a.UnmarshalJSON(kv.Value) == nil && a.PublicIP == hostIP(t, l, "h2") {
				keys = append(keys, string(kv.Key))
				if a.PublicIPv6 != underlay6(t, l, "h2") {
					return fmt.Errorf("h2's lease publishes PublicIPv6 %v, want %s", a.PublicIPv6, underlay6(t, l, "h2"))
				}
			}
		}
		if len(keys) != 1 {
			return fmt.Errorf("h2 holds %v", keys)
		}
		v4, six, err := lease.ParseKeyName(strings.TrimPrefix(keys[0], prefix+"/subnets/"))
		if err != nil || v4 != before || !six.IsValid() || !v6net.Contains(six.Addr()) {
			return fmt.Errorf("h2's key %s: want %s with an IPv6 subnet of %s (%v)", keys[0], before, v6net, err)
		}
		return nil
	})

	// A pod-like address from each host's IPv6 subnet, on a veth in the
	// host's namespace.
	podAddr6 := map[string]netip.Addr{}
	addPod6 := func(h string) {
		t.Helper()
		a := v6SubnetOf(t, l, h).Addr().Next()
		ipIn(t, l, h, "link", "add", "v6pod", "type", "veth", "peer", "name", "v6podp")
		ipIn(t, l, h, "link", "set", "v6podp", "up")
		ipIn(t, l, h, "link", "set", "v6pod", "up")
		ipIn(t, l, h, "-6", "addr", "add", a.String()+"/128", "dev", "v6pod", "nodad")
		podAddr6[h] = a
	}
	addPod6("h1")
	addPod6("h2")
	waitRoute6 := func(on, to string, present bool) {
		t.Helper()
		dst := v6SubnetOf(t, l, to)
		nstest.Eventually(t, 10*time.Second, func() error {
			got := routeVia(t, l, on, dst)
			switch {
			case present && got != underlay6(t, l, to):
				return fmt.Errorf("%s's route to %s's %s via %v, want via %s", on, to, dst, got, underlay6(t, l, to))
			case !present && got.IsValid():
				return fmt.Errorf("%s still routes %s's %s via %v", on, to, dst, got)
			}
			return nil
		})
	}
	pingBoth := func(a, b string) {
		t.Helper()
		for _, p := range [][2]string{{a, b}, {b, a}} {
			nstest.Eventually(t, 10*time.Second, func() error {
				pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
				defer pcancel()
				return ping6(pctx, l, p[0], podAddr6[p[0]], podAddr6[p[1]])
			})
		}
	}
	waitRoute6("h1", "h2", true)
	waitRoute6("h2", "h1", true)
	if out := ipIn(t, l, "h1", "-6", "route", "show", "exact", v6SubnetOf(t, l, "h2").String()); !strings.Contains(out, "dev eth0 proto 87") {
		t.Errorf("h1's IPv6 route to h2: %q, want one on eth0 with proto weft", out)
	}
	pingBoth("h1", "h2")

	// h3 is still on the IPv4-only config: an IPv4 route only, said once
	// (h1 said it of h2 too, which restarted after it).
	s3 := subnetOf(t, l, "h3")
	if out := ipIn(t, l, "h1", "-6", "route", "show", "root", "fd00:50::/56"); strings.Count(out, "via") != 1 {
		t.Errorf("h1's IPv6 routes in fd00:50::/56:\n%s\nwant h2's alone", out)
	}
	nstest.Eventually(t, 10*time.Second, func() error {
		if n := strings.Count(grepLines(l.AgentLog("h1"), "peer's lease has no IPv6 subnet"), "subnet="+s3.String()); n != 1 {
			return fmt.Errorf("h1 says %d times that h3's lease has no IPv6 subnet, want once", n)
		}
		return nil
	})
	if log := grepLines(grepLines(l.AgentLog("h1"), "peer's lease has no IPv6 subnet"), "subnet="+s3.String()); !strings.Contains(log, "level=WARN") || !strings.Contains(log, "peer=10.4.7.23") {
		t.Errorf("h1's line about h3: %s", log)
	}
	for _, h := range []string{"h1", "h2"} {
		if log := grepLines(l.AgentLog(h), "IPv6 is enabled"); !strings.Contains(log, "the host-gw backend carries pods' IPv6 traffic") || strings.Contains(log, "level=ERROR") {
			t.Errorf("%s's IPv6 line: %s", h, log)
		}
	}
	for _, pair := range [][2]string{{"h1p1", "h3p1"}, {"h3p1", "h1p1"}, {"h2p1", "h1p1"}} {
		dst, ok := l.PodAddr(pair[1])
		if !ok {
			t.Fatalf("no pod %s", pair[1])
		}
		nstest.Eventually(t, 10*time.Second, func() error {
			pctx, pcancel := context.WithTimeout(ctx, time.Second)
			defer pcancel()
			_, err := lab.Ping(pctx, l.NS(pair[0]), dst)
			return err
		})
	}
	if got := routeVia(t, l, "h1", s3); got != hostIP(t, l, "h3") {
		t.Errorf("h1's route to h3's %s via %v, want %s", s3, got, hostIP(t, l, "h3"))
	}

	// h3 joins the dual-stack cluster.
	restart("h3")
	addPod6("h3")
	for _, on := range hosts {
		for _, to := range hosts {
			if on != to {
				waitRoute6(on, to, true)
			}
		}
	}
	pingBoth("h1", "h3")
	pingBoth("h2", "h3")

	// Deleted by hand: back well within the 10 s reconcile period.
	s6h2 := v6SubnetOf(t, l, "h2")
	ipIn(t, l, "h1", "-6", "route", "del", s6h2.String())
	start := time.Now()
	waitRoute6("h1", "h2", true)
	t.Logf("IPv6 route repaired after %v", time.Since(start))
	if n := strings.Count(grepLines(l.AgentLog("h1"), "route replaced")+grepLines(l.AgentLog("h1"), "route added"), s6h2.String()); n < 2 {
		t.Errorf("h1 logged %d changes of %s, want the first add and the repair", n, s6h2)
	}

	// A restart keeps every IPv6 route, and takes away the left-over route
	// of a host that left while no agent ran, as flannel's host-gw leaves
	// it (proto boot).
	stale := "fd00:50:0:ee::/64"
	ipIn(t, l, "h1", "-6", "route", "add", stale, "via", "fd00:4:7::99", "dev", "eth0", "proto", "boot")
	if err := l.StopAgent("h1", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for _, to := range []string{"h2", "h3"} {
		if got := routeVia(t, l, "h1", v6SubnetOf(t, l, to)); got != underlay6(t, l, to) {
			t.Errorf("with h1's agent stopped, its IPv6 route to %s is via %v, want kept via %s", to, got, underlay6(t, l, to))
		}
	}
	if err := l.StartAgent(ctx, "h1"); err != nil {
		t.Fatal(err)
	}
	nstest.Eventually(t, 10*time.Second, func() error {
		if out := ipIn(t, l, "h1", "-6", "route", "show", "exact", stale); strings.TrimSpace(out) != "" {
			return fmt.Errorf("left-over route still there: %s", out)
		}
		return nil
	})
	for _, to := range []string{"h2", "h3"} {
		if got := routeVia(t, l, "h1", v6SubnetOf(t, l, to)); got != underlay6(t, l, to) {
			t.Errorf("after h1's restart its IPv6 route to %s is via %v, want via %s", to, got, underlay6(t, l, to))
		}
	}
	pingBoth("h1", "h2")

	// h3 leaves for good: its IPv6 route goes with its lease.
	s6h3 := v6SubnetOf(t, l, "h3")
	if err := l.StopAgent("h3", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Delete(ctx, prefix+"/subnets/"+lease.KeyName(s3, s6h3)); err != nil {
		t.Fatal(err)
	}
	for _, on := range []string{"h1", "h2"} {
		nstest.Eventually(t, 10*time.Second, func() error {
			if got := routeVia(t, l, on, s6h3); got.IsValid() {
				return fmt.Errorf("%s still routes h3's %s via %s", on, s6h3, got)
			}
			if got := routeVia(t, l, on, s3); got.IsValid() {
				return fmt.Errorf("%s still routes h3's %s via %s", on, s3, got)
			}
			return nil
		})
	}
}
