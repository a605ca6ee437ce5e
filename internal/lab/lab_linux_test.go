package lab

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/internal/testbin"
)

// syncBuffer collects progress output; fire runs once when a line
// containing trigger has been written.
type syncBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	trigger string
	fire    func()
	fired   bool
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if b.fire != nil && !b.fired && strings.Contains(b.buf.String(), b.trigger) {
		b.fired = true
		b.fire()
	}
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// procsMentioning returns the live processes whose command line contains
// s. Every lab process names the lab's state directory in its arguments,
// and each test's state directory is unique, so this finds exactly the
// test's own leftovers.
func procsMentioning(t *testing.T, s string) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() || !alive(pid) {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if cmd := strings.ReplaceAll(string(b), "\x00", " "); strings.Contains(cmd, s) {
			found = append(found, e.Name()+": "+cmd)
		}
	}
	return found
}

func labOptions(t *testing.T, spec Spec, out *syncBuffer) Options {
	return Options{
		Spec:         spec,
		WeftBinary:   testbin.Weft(t),
		CNIBinDir:    testbin.CNIDir(t),
		ReadyTimeout: 30 * time.Second,
		Out:          out,
		Log:          testLog(t),
	}
}

// The demo exactly as `sudo make demo` runs it (3 hosts × 2 pods on
// host-gw), with the topology drawn in doc.go:
//
//	<p>-ul: sw0 10.4.7.12/24 + etcd
//	  <p>-h1 .21        <p>-h2 .22        <p>-h3 .23       (agent each)
//	  h1p1 h1p2         h2p1 h2p2         h3p1 h3p2        (CNI: flannel → bridge)
func TestDemoThreeHostsHostGW(t *testing.T) {
	nstest.RequireRoot(t)
	spec := Spec{Prefix: testPrefix(), Hosts: 3, Pods: 2, Backend: "host-gw", StateRoot: t.TempDir()}
	topo, err := Plan(spec)
	if err != nil {
		t.Fatal(err)
	}
	downOnCleanup(t, spec)
	before := rootLinks(t)
	out := &syncBuffer{}
	opts := labOptions(t, spec, out)

	res, err := Demo(context.Background(), opts)
	t.Logf("demo output:\n%s", out.String())
	if err != nil {
		t.Fatalf("demo: %v", err)
	}

	// 6 pods, each to the 4 on other hosts; 3 hosts, each to 4 remote pods.
	var pairs, hostChecks int
	podSubnet := map[string]netip.Prefix{} // host name -> /24 its pods are in
	for _, c := range res.Checks {
		if !c.OK() {
			t.Errorf("%s -> %s failed: %s", c.From.Name, c.To.Name, c.Problem())
		}
		if !DefaultNetwork.Contains(c.To.Addr) {
			t.Errorf("%s has address %s outside the cluster network", c.To.Name, c.To.Addr)
		}
		switch c.Kind {
		case PodToPod:
			pairs++
			if c.SeenSource != c.From.Addr {
				t.Errorf("%s -> %s: server saw %s, want the client pod's %s", c.From.Name, c.To.Name, c.SeenSource, c.From.Addr)
			}
			host := c.From.Name[:strings.IndexByte(c.From.Name, 'p')]
			sub, _ := c.From.Addr.Prefix(24)
			if prev, ok := podSubnet[host]; ok && prev != sub {
				t.Errorf("pods of %s in two subnets: %s and %s", host, prev, sub)
			}
			podSubnet[host] = sub
		case HostToPod:
			hostChecks++
		}
	}
	if pairs != 24 || hostChecks != 12 {
		t.Errorf("%d pod pairs and %d host→pod checks, want 24 and 12", pairs, hostChecks)
	}
	subnets := map[netip.Prefix]bool{}
	for _, s := range podSubnet {
		subnets[s] = true
	}
	if len(subnets) != 3 {
		t.Errorf("pod subnets per host = %v, want 3 distinct", podSubnet)
	}
	if !strings.Contains(out.String(), "24/24 pod pairs ok, source IPs preserved; 12/12 host→pod ok") {
		t.Error("summary line missing from the output")
	}
	for _, want := range []string{"etcd ready at http://10.4.7.12:2379", "h1: agent leased 172.7.", "h3p2: 172.7.", "lab torn down", "total "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}

	assertGone(t, topo, nil)
	if left := procsMentioning(t, topo.StateDir); len(left) > 0 {
		t.Errorf("processes left after the demo:\n%s", strings.Join(left, "\n"))
	}
	if after := rootLinks(t); !slices.Equal(before, after) {
		t.Errorf("root namespace links changed:\nbefore %v\nafter  %v", before, after)
	}
}

// A dual-stack demo (--ip-family dual) on host-gw, vxlan and wireguard
// (Mode separate, flannel-wg and flannel-wg-v6; and Mode auto, flannel-wg
// alone for both), 3 hosts × 2 pods: every pod pair and host→pod check
// passes over both families, each IPv6 pod pair keeps the client pod's
// own IPv6 address as its source and takes the backend's path, and every
// pod's addresses lie in its host's subnets of the two networks. It needs
// each backend's IPv6 data plane (routes via PublicIPv6; flannel-v6.1;
// flannel-wg-v6 or flannel-wg's second family).
func TestDemoDualStack(t *testing.T) {
	for _, tc := range []struct{ name, backend, wgMode, wgLine string }{
		{"host-gw", "host-gw", "", ""},
		{"vxlan", "vxlan", "", ""},
		{"wireguard", "wireguard", "", "wireguard: every host's flannel-wg and flannel-wg-v6 has a session with each of the other 2 hosts"},
		{"wireguard-auto", "wireguard", "auto", "wireguard: every host's flannel-wg has a session with each of the other 2 hosts"},
	} {
		backend := tc.backend
		t.Run(tc.name, func(t *testing.T) {
			nstest.RequireRoot(t)
			spec := Spec{Prefix: testPrefix(), Hosts: 3, Pods: 2, Backend: backend, WireGuardMode: tc.wgMode, IPFamily: FamilyDual, StateRoot: t.TempDir()}
			downOnCleanup(t, spec)
			out := &syncBuffer{}
			res, err := Demo(context.Background(), labOptions(t, spec, out))
			t.Logf("demo output:\n%s", out.String())
			if err != nil && len(res.Checks) == 0 {
				t.Fatalf("demo: %v", err)
			} else if err != nil {
				t.Errorf("demo: %v", err)
			}
			count := map[string]int{}
			for _, c := range res.Checks {
				if !c.OK() {
					t.Errorf("%s %s -> %s failed: %s", c.Family(), c.From.Name, c.To.Name, c.Problem())
				}
				net := DefaultNetwork
				if c.Family() == "IPv6" {
					net = DefaultIPv6Network
				}
				if !net.Contains(c.To.Addr) {
					t.Errorf("%s has %s address %s outside %s", c.To.Name, c.Family(), c.To.Addr, net)
				}
				count[c.Family()+" "+map[CheckKind]string{PodToPod: "pod", HostToPod: "host"}[c.Kind]]++
				if c.Kind == PodToPod && c.Path != backend {
					t.Errorf("%s %s -> %s went by %q, want %s", c.Family(), c.From.Name, c.To.Name, c.Path, backend)
				}
			}
			want := map[string]int{"IPv4 pod": 24, "IPv6 pod": 24, "IPv4 host": 12, "IPv6 host": 12}
			for k, n := range want {
				if count[k] != n {
					t.Errorf("%d %s checks, want %d (all: %v)", count[k], k, n, count)
				}
			}
			lines := []string{
				"IPv4: 24/24 pod pairs ok, source IPs preserved; 12/12 host→pod ok; IPv6: 24/24 pod pairs ok, source IPs preserved; 12/12 host→pod ok",
				`"EnableIPv6": true, "IPv6Network": "fd00:10:244::/56"`,
				"IPv6 routes: every host reaches every other host's IPv6 subnet",
			}
			if tc.wgLine != "" {
				lines = append(lines, tc.wgLine)
			}
			for _, line := range lines {
				if !strings.Contains(out.String(), line) {
					t.Errorf("output lacks %q", line)
				}
			}
		})
	}
}

// Cancelling the context while the build is under way (agents started, no
// pods yet) must still tear everything down before Demo returns.
func TestDemoCancelledMidBuildTearsDown(t *testing.T) {
	nstest.RequireRoot(t)
	spec := Spec{Prefix: testPrefix(), Hosts: 2, Pods: 1, StateRoot: t.TempDir()}
	topo, err := Plan(spec)
	if err != nil {
		t.Fatal(err)
	}
	downOnCleanup(t, spec)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &syncBuffer{trigger: "agent leased", fire: cancel}

	_, err = Demo(ctx, labOptions(t, spec, out))
	t.Logf("demo output:\n%s", out.String())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Demo after cancel = %v, want context.Canceled", err)
	}
	if !strings.Contains(out.String(), "agent leased") {
		t.Fatal("the build never got as far as an agent")
	}
	assertGone(t, topo, nil)
	if left := procsMentioning(t, topo.StateDir); len(left) > 0 {
		t.Errorf("processes left after cancel:\n%s", strings.Join(left, "\n"))
	}
}

// The interactive path: `weft lab up` leaves the lab running for
// check, status and exec from other invocations, and `weft lab down`
// removes it.
func TestUpThenCommandsThenDown(t *testing.T) {
	nstest.RequireRoot(t)
	spec := Spec{Prefix: testPrefix(), Hosts: 2, Pods: 1, StateRoot: t.TempDir()}
	topo, err := Plan(spec)
	if err != nil {
		t.Fatal(err)
	}
	downOnCleanup(t, spec)
	ctx := context.Background()
	out := &syncBuffer{}
	l, err := Up(ctx, labOptions(t, spec, out))
	t.Logf("up output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	pods := []string{}
	for _, p := range topo.Pods() {
		a, ok := l.PodAddr(p.Name)
		if !ok {
			t.Fatalf("no address for %s", p.Name)
		}
		pods = append(pods, a.String())
	}
	var pids []int
	for _, f := range []string{topo.Etcd.PIDFile, topo.Hosts[0].AgentPID, topo.Hosts[1].AgentPID} {
		pid, ok, err := readPIDFile(f)
		if err != nil || !ok {
			t.Fatalf("pid file %s: %d %v %v", f, pid, ok, err)
		}
		pids = append(pids, pid)
	}

	common := []string{"--prefix", spec.Prefix, "--state-dir", spec.StateRoot}
	run := func(args ...string) (string, error) {
		var stdout, stderr bytes.Buffer
		err := Main(ctx, args, &stdout, &stderr)
		return stdout.String() + stderr.String(), err
	}
	if o, err := run(append([]string{"check"}, common...)...); err != nil || !strings.Contains(o, "2/2 pod pairs ok, source IPs preserved") {
		t.Errorf("lab check: %v\n%s", err, o)
	}
	if o, err := run(append([]string{"status"}, common...)...); err != nil || !strings.Contains(o, pods[0]) || !strings.Contains(o, "agent pid") {
		t.Errorf("lab status: %v\n%s", err, o)
	}
	if o, err := run(append(append([]string{"exec"}, common...), "h1p1", "--", "ip", "-4", "addr", "show", "eth0")...); err != nil || !strings.Contains(o, pods[0]+"/24") {
		t.Errorf("lab exec h1p1 ip addr: %v\n%s", err, o)
	}
	if o, err := run(append([]string{"down"}, common...)...); err != nil {
		t.Errorf("lab down: %v\n%s", err, o)
	}
	assertGone(t, topo, pids)
	if left := procsMentioning(t, topo.StateDir); len(left) > 0 {
		t.Errorf("processes left after down:\n%s", strings.Join(left, "\n"))
	}
}
