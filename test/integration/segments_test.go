package integration

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/internal/testbin"
)

// upLabSpec is upLabBackend for any spec (prefix filled in). It returns a
// down function for tests that assert the teardown; the cleanup tears the
// lab down only if the test did not.
func upLabSpec(t *testing.T, spec lab.Spec) (*lab.Lab, func() error) {
	t.Helper()
	nstest.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	spec.Prefix = nstest.UniqueName("it")
	var out strings.Builder
	l, err := lab.Up(ctx, lab.Options{
		Spec:       spec,
		WeftBinary: testbin.Weft(t),
		CNIBinDir:  testbin.CNIDir(t),
		Out:        &out,
	})
	if err != nil {
		t.Fatalf("lab up: %v\n%s", err, out.String())
	}
	t.Logf("lab up:\n%s", out.String())
	downed := false
	down := func() error {
		downed = true
		return l.Down()
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, h := range l.Topology().Hosts {
				t.Logf("agent log of %s:\n%s", h.Name, l.AgentLog(h.Name))
			}
		}
		if !downed {
			if err := l.Down(); err != nil {
				t.Errorf("lab down: %v", err)
			}
		}
	})
	return l, down
}

// Four hosts on two L2 segments joined by a router, vxlan with
// DirectRouting (seed 000's hybrid):
//
//	segment 1 (sw0, 10.4.7.0/24): etcd .12, router .1, h1 .21, h2 .22
//	segment 2 (sw1, 10.4.8.0/24):           router .1, h3 .23, h4 .24
//
// Each host routes a peer on its own segment directly (`via <peer
// PublicIP> dev eth0`) and a peer behind the router through VXLAN (`via
// <subnet>.0 dev flannel.1 onlink`); every pod pair reaches every other
// with its own address, the result table names the path each took, and
// the teardown removes the router with the rest.
func TestVXLANDirectRoutingAcrossSegments(t *testing.T) {
	l, down := upLabSpec(t, lab.Spec{Hosts: 4, Pods: 1, Segments: 2, Backend: "vxlan", DirectRouting: true})
	topo := l.Topology()
	segment := map[string]int{}
	for _, h := range topo.Hosts {
		segment[h.Name] = h.Segment
	}
	if fmt.Sprint(segment) != "map[h1:1 h2:1 h3:2 h4:2]" {
		t.Fatalf("hosts by segment = %v, want h1 h2 on 1, h3 h4 on 2", segment)
	}
	if h3 := hostIP(t, l, "h3"); h3.String() != "10.4.8.23" {
		t.Fatalf("h3 at %s, want 10.4.8.23", h3)
	}

	for _, from := range topo.Hosts {
		for _, to := range topo.Hosts {
			if from.Name == to.Name {
				continue
			}
			s := subnetOf(t, l, to.Name)
			want := fmt.Sprintf("%s via %s dev flannel.1 proto 87 onlink", s, s.Addr())
			if from.Segment == to.Segment {
				want = fmt.Sprintf("%s via %s dev eth0 proto 87", s, hostIP(t, l, to.Name))
			}
			nstest.Eventually(t, 10*time.Second, func() error {
				out, err := exec.Command("ip", "-n", l.NS(from.Name), "-4", "route", "show", "exact", s.String()).CombinedOutput()
				if err != nil {
					return fmt.Errorf("ip route show in %s: %v: %s", from.Name, err, out)
				}
				if got := strings.TrimSpace(string(out)); got != want {
					return fmt.Errorf("%s's route to %s (segment %d → %d) = %q, want %q", from.Name, to.Name, from.Segment, to.Segment, got, want)
				}
				return nil
			})
		}
	}

	checks, err := l.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	hostOf := map[string]string{}
	for _, p := range topo.Pods() {
		hostOf[p.Name] = p.Host
	}
	hostOf["h1"], hostOf["h2"], hostOf["h3"], hostOf["h4"] = "h1", "h2", "h3", "h4"
	pairs := 0
	for _, c := range checks {
		if !c.OK() {
			t.Errorf("%s → %s failed: %s", c.From.Name, c.To.Name, c.Problem())
		}
		want := "vxlan"
		if segment[hostOf[c.From.Name]] == segment[hostOf[c.To.Name]] {
			want = "direct"
		}
		if c.Path != want {
			t.Errorf("%s → %s: path %q, want %q", c.From.Name, c.To.Name, c.Path, want)
		}
		if c.Kind == lab.PodToPod {
			pairs++
		}
	}
	if pairs != 12 {
		t.Errorf("%d pod pairs checked, want 12", pairs)
	}
	res := lab.Result{Checks: checks}
	if got, want := res.Paths(), "pod pairs by path: direct 4, vxlan 8"; got != want {
		t.Errorf("paths = %q, want %q", got, want)
	}

	if err := down(); err != nil {
		t.Fatalf("lab down: %v", err)
	}
	for _, ns := range topo.Namespaces() {
		if netns.Exists(ns) {
			t.Errorf("netns %s left after down", ns)
		}
	}
	if topo.Router.NS == "" || netns.Exists(topo.Router.NS) {
		t.Errorf("router netns %q: planned and removed? (exists: %v)", topo.Router.NS, netns.Exists(topo.Router.NS))
	}
}
