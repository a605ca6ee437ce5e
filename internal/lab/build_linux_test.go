package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/nstest"
)

// testPrefix returns a lab prefix unique to this test run, so a test lab
// never meets a real one ("weft") or another test's.
func testPrefix() string {
	return nstest.UniqueName("t") // "t" + 6 hex digits: valid, 7 bytes
}

// rootLinks lists the link names of the machine's root namespace, to
// prove that the lab left it alone. Reading is all it does.
func rootLinks(t *testing.T) []string {
	t.Helper()
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatalf("list root links: %v", err)
	}
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	slices.Sort(names)
	return names
}

// assertGone fails unless nothing of the lab is left: no namespace named
// like it, no process from the given pids alive, no state directory.
func assertGone(t *testing.T, topo Topology, pids []int) {
	t.Helper()
	left, err := labNamespaces(topo.Spec.Prefix)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("namespaces left behind: %v", left)
	}
	for _, ns := range topo.Namespaces() {
		if _, err := os.Stat(filepath.Join(netns.Dir, ns)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still in %s: %v", ns, netns.Dir, err)
		}
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("process %d still alive", pid)
		}
	}
	if _, err := os.Stat(topo.StateDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state dir %s still there: %v", topo.StateDir, err)
	}
}

// downOnCleanup tears the lab down at the end of the test even when it
// fails half-way.
func downOnCleanup(t *testing.T, spec Spec) {
	t.Cleanup(func() {
		if err := Down(context.Background(), spec, nil); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
}

// <p>-ul: sw0 10.4.7.12/24
//
//	|ve-h1           |ve-h2
//
// <p>-h1: eth0 .21   <p>-h2: eth0 .22   (sleep 1000 running in h1)
func TestBuildWiresHostsAndTeardownRemovesEverything(t *testing.T) {
	nstest.RequireRoot(t)
	spec := Spec{Prefix: testPrefix(), Hosts: 2, StateRoot: t.TempDir()}
	topo, err := Plan(spec)
	if err != nil {
		t.Fatal(err)
	}
	downOnCleanup(t, spec)
	before := rootLinks(t)

	if err := os.MkdirAll(topo.StateDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := buildUnderlay(topo.Underlay); err != nil {
		t.Fatal(err)
	}
	for _, h := range topo.Hosts {
		if err := os.MkdirAll(h.Dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := buildHost(topo.Spec, topo.Underlay, h); err != nil {
			t.Fatal(err)
		}
	}
	h1, h2 := topo.Hosts[0], topo.Hosts[1]

	// Hosts reach each other and the underlay's address over the switch.
	ctx := context.Background()
	for _, dst := range []Host{h2} {
		if _, err := pingFrom(ctx, h1.NS, dst.Addr.Addr()); err != nil {
			t.Errorf("h1 -> %s: %v", dst.Name, err)
		}
	}
	if _, err := pingFrom(ctx, h2.NS, topo.Underlay.Addr.Addr()); err != nil {
		t.Errorf("h2 -> underlay: %v", err)
	}
	// A TCP server in h2 sees h1's own address.
	srv, err := startEchoServers([]probeTarget{{Pod: Pod{Name: "h2", NS: h2.NS}, Addr: h2.Addr.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	seen, err := seenSourceFrom(ctx, h1.NS, h2.Addr.Addr())
	srv.Close()
	if err != nil || seen != h1.Addr.Addr() {
		t.Errorf("h2's server saw %v (err %v), want %s", seen, err, h1.Addr.Addr())
	}
	// ip_forward is on in hosts.
	var fwd []byte
	if err := netns.Do(h1.NS, func() error {
		var err error
		fwd, err = os.ReadFile("/proc/sys/net/ipv4/ip_forward")
		return err
	}); err != nil || strings.TrimSpace(string(fwd)) != "1" {
		t.Errorf("ip_forward in %s = %q (err %v), want 1", h1.NS, fwd, err)
	}
	// Nothing appeared in the root namespace.
	if after := rootLinks(t); !slices.Equal(before, after) {
		t.Errorf("root namespace links changed:\nbefore %v\nafter  %v", before, after)
	}

	// A process in a host: found by namespace and through its pid file.
	c, err := spawn("sleeper", h1.NS, "/bin/sleep", []string{"1000"}, filepath.Join(h1.Dir, "sleep.log"), h1.AgentPID)
	if err != nil {
		t.Fatal(err)
	}
	// `ip netns exec` enters the namespace just after it starts.
	nstest.Eventually(t, 5*time.Second, func() error {
		pids, err := pidsInNamespaces([]string{h1.NS})
		if err != nil || !slices.Contains(pids, c.pid) {
			return fmt.Errorf("pidsInNamespaces(%s) = %v, %v; want it to contain %d", h1.NS, pids, err, c.pid)
		}
		return nil
	})
	if pid, ok, err := readPIDFile(h1.AgentPID); err != nil || !ok || pid != c.pid {
		t.Errorf("readPIDFile = %d, %v, %v; want %d, true", pid, ok, err, c.pid)
	}

	if err := teardown(ctx, topo, "", testLog(t), &printer{w: io.Discard}); err != nil {
		t.Fatalf("teardown: %v", err)
	}
	select {
	case <-c.exited:
	case <-time.After(5 * time.Second):
		t.Fatal("sleeper not reaped after teardown")
	}
	assertGone(t, topo, []int{c.pid})
	if after := rootLinks(t); !slices.Equal(before, after) {
		t.Errorf("root namespace links changed after teardown:\nbefore %v\nafter  %v", before, after)
	}
}

func TestUpRefusesExistingLab(t *testing.T) {
	nstest.RequireRoot(t)
	spec := Spec{Prefix: testPrefix(), Hosts: 2, StateRoot: t.TempDir()}
	topo, err := Plan(spec)
	if err != nil {
		t.Fatal(err)
	}
	downOnCleanup(t, spec)
	if err := buildUnderlay(topo.Underlay); err != nil {
		t.Fatal(err)
	}
	err = checkAbsent(topo)
	if !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), topo.Underlay.NS) {
		t.Errorf("checkAbsent with %s present = %v, want ErrExists naming it", topo.Underlay.NS, err)
	}
	if !netns.Exists(topo.Underlay.NS) {
		t.Error("checkAbsent removed the existing namespace")
	}
}

func TestTeardownLeavesOtherLabsAlone(t *testing.T) {
	nstest.RequireRoot(t)
	root := t.TempDir()
	a := Spec{Prefix: testPrefix(), Hosts: 1, StateRoot: root}
	b := Spec{Prefix: a.Prefix + "x", Hosts: 1, StateRoot: root} // shares a's prefix as a string prefix
	downOnCleanup(t, a)
	downOnCleanup(t, b)
	for _, s := range []Spec{a, b} {
		topo, err := Plan(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := buildUnderlay(topo.Underlay); err != nil {
			t.Fatal(err)
		}
		if err := buildHost(topo.Spec, topo.Underlay, topo.Hosts[0]); err != nil {
			t.Fatal(err)
		}
	}
	if err := Down(context.Background(), a, nil); err != nil {
		t.Fatal(err)
	}
	if left, _ := labNamespaces(a.Prefix); len(left) > 0 {
		t.Errorf("lab %s: namespaces left: %v", a.Prefix, left)
	}
	left, _ := labNamespaces(b.Prefix)
	if len(left) != 2 {
		t.Errorf("lab %s: namespaces = %v after tearing down %s, want its 2 untouched", b.Prefix, left, a.Prefix)
	}
}

// testLog is a logger that writes to the test's log.
func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
