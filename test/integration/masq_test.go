package integration

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/nstest"
)

// With --ip-masq, a pod reaching outside the cluster is seen with its
// host's address, while pod→pod traffic keeps the pod's own address, also
// after a Docker-style `-s <subnet> ! -o cni0 -j MASQUERADE` rule is
// inserted on top of POSTROUTING after the agent started (seed 000 §3).
//
//	inet 10.4.7.99 ──┐ (a host outside the cluster on the underlay)
//	                 sw0 ── h1 10.4.7.21 ── pod h1p1
//	                     └─ h2 10.4.7.22 ── pod h2p1
func TestIPMasqKeepsPodSourceInsideAndMasqueradesOutside(t *testing.T) {
	l, _ := upLabSpec(t, lab.Spec{Hosts: 2, Pods: 1, Backend: "host-gw", AgentArgs: []string{"--ip-masq", "--iptables-resync=1"}})

	// An "internet" host on the underlay switch, outside the cluster.
	inet := nstest.NewNS(t, "inet")
	veth := nstest.UniqueName("in")
	for _, args := range [][]string{
		{"-n", l.NS("ul"), "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", inet},
		{"-n", l.NS("ul"), "link", "set", veth, "master", "sw0", "up"},
		{"-n", inet, "addr", "add", "10.4.7.99/24", "dev", "eth0"},
		{"-n", inet, "link", "set", "eth0", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	inetAddr := netip.MustParseAddr("10.4.7.99")
	srv, err := lab.ServeSourceEcho(inet, inetAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	servers := []netip.Addr{}
	for _, p := range []string{"h1p1", "h2p1"} {
		a, _ := l.PodAddr(p)
		s, err := lab.ServeSourceEcho(l.NS(p), a)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		servers = append(servers, a)
	}
	h1p1, h2p1 := servers[0], servers[1]

	seen := func(from string, dst netip.Addr) (netip.Addr, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return lab.SeenSource(ctx, l.NS(from), dst)
	}
	expect := func(what, from string, dst, want netip.Addr) {
		t.Helper()
		nstest.Eventually(t, 4*time.Second, func() error {
			got, err := seen(from, dst)
			if err != nil {
				return err
			}
			if got != want {
				return fmt.Errorf("%s: %s → %s seen as %s, want %s", what, from, dst, got, want)
			}
			return nil
		})
	}

	expect("pod to internet is masqueraded", "h1p1", inetAddr, hostIP(t, l, "h1"))
	expect("pod to pod keeps the source", "h1p1", h2p1, h1p1)

	// Docker (re)starts and puts its rule on top of POSTROUTING.
	sub := subnetOf(t, l, "h1")
	if out, err := exec.Command("ip", "netns", "exec", l.NS("h1"), "iptables", "-t", "nat", "-I", "POSTROUTING", "1",
		"-s", sub.String(), "!", "-o", "cni0", "-j", "MASQUERADE").CombinedOutput(); err != nil {
		t.Fatalf("add docker rule: %v: %s", err, out)
	}
	expect("pod to pod keeps the source next to Docker's rule", "h1p1", h2p1, h1p1)
	expect("pod to internet still masqueraded", "h1p1", inetAddr, hostIP(t, l, "h1"))
	if out, _ := exec.Command("ip", "netns", "exec", l.NS("h1"), "iptables-save", "-t", "nat").CombinedOutput(); !strings.Contains(string(out), "! -o cni0 -j MASQUERADE") {
		t.Fatalf("weft removed Docker's rule; it must only outrank it:\n%s", out)
	}
}

// `weft lab demo --ip-masq`'s table: every pod pair keeps its source and
// every pod reaches the lab's internet host as its host, also with a
// Docker-style rule on every host.
func TestLabIPMasqChecks(t *testing.T) {
	l, _ := upLabSpec(t, lab.Spec{Hosts: 2, Pods: 1, Backend: "vxlan", IPMasq: true, AgentArgs: []string{"--iptables-resync=1"}})
	for _, h := range []string{"h1", "h2"} {
		sub := subnetOf(t, l, h)
		if out, err := exec.Command("ip", "netns", "exec", l.NS(h), "iptables", "-t", "nat", "-I", "POSTROUTING", "1",
			"-s", sub.String(), "!", "-o", "docker0", "-j", "MASQUERADE").CombinedOutput(); err != nil {
			t.Fatalf("add docker rule on %s: %v: %s", h, err, out)
		}
	}
	nstest.Eventually(t, 5*time.Second, func() error {
		checks, err := l.Check(context.Background())
		if err != nil {
			return err
		}
		var out int
		for _, c := range checks {
			if !c.OK() {
				return fmt.Errorf("%s → %s: %s", c.From.Name, c.To.Name, c.Problem())
			}
			if c.Kind == lab.PodToInternet {
				out++
			}
		}
		if out != 2 {
			return fmt.Errorf("%d pod→internet checks, want 2", out)
		}
		return nil
	})
}
