package hostgw

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	vns "github.com/vishvananda/netns"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/netconf"
	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/nstest"
)

// The integration tests build hosts on one L2 segment, each a namespace:
//
//	 hostA                      hostB                      hostC
//	 cni0 10.244.1.1/24         cni0 10.244.2.1/24         cni0 10.244.3.1/24
//	 eth0 192.168.77.1/24       eth0 192.168.77.2/24       eth0 192.168.77.3/24
//	   |                          |                          |
//	   +---- pA ------------ [ sw: br0 ] ------------ pC ----+
//	                              |
//	                              pB
//
// cni0 is a bridge without ports standing in for the pod bridge (the test
// kernel has no dummy driver); its address is what pods would use.

var network = netip.MustParsePrefix("10.244.0.0/16")

type host struct {
	ns     string
	h      *netlink.Handle
	nsh    vns.NsHandle
	ext    backend.ExternalInterface
	lease  lease.Lease
	podIP  netip.Addr
	logBuf *syncBuffer
}

// syncBuffer collects log output written from Apply and Run concurrently.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func segment(t *testing.T, n int) []*host {
	t.Helper()
	nstest.RequireRoot(t)
	sw := nstest.NewNS(t, "sw")
	nstest.Exec(t, sw, "ip", "link", "add", "br0", "type", "bridge")
	nstest.Exec(t, sw, "ip", "link", "set", "br0", "up")
	var hosts []*host
	for i := 1; i <= n; i++ {
		ns := nstest.NewNS(t, fmt.Sprintf("h%d", i))
		port := fmt.Sprintf("p%d", i)
		nstest.Exec(t, sw, "ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
		nstest.Exec(t, sw, "ip", "link", "set", port, "master", "br0", "up")
		nstest.Exec(t, ns, "ip", "link", "set", "eth0", "up")
		nstest.Exec(t, ns, "ip", "addr", "add", fmt.Sprintf("192.168.77.%d/24", i), "dev", "eth0")
		nstest.Exec(t, ns, "ip", "link", "add", "cni0", "type", "bridge")
		nstest.Exec(t, ns, "ip", "link", "set", "cni0", "up")
		nstest.Exec(t, ns, "ip", "addr", "add", fmt.Sprintf("10.244.%d.1/24", i), "dev", "cni0")
		nstest.Exec(t, ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")

		h, err := netns.Handle(ns)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(h.Close)
		nsh, err := vns.GetFromName(ns)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nsh.Close() })
		eth0, err := h.LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		addr := netip.MustParseAddr(fmt.Sprintf("192.168.77.%d", i))
		hosts = append(hosts, &host{
			ns:  ns,
			h:   h,
			nsh: nsh,
			ext: backend.ExternalInterface{
				Name: "eth0", Index: eth0.Attrs().Index, MTU: eth0.Attrs().MTU, Addr: addr, PublicIP: addr,
			},
			lease: lease.Lease{
				Subnet: netip.MustParsePrefix(fmt.Sprintf("10.244.%d.0/24", i)),
				Attrs:  lease.Attrs{PublicIP: addr, BackendType: BackendType},
			},
			podIP:  netip.MustParseAddr(fmt.Sprintf("10.244.%d.1", i)),
			logBuf: &syncBuffer{},
		})
	}
	return hosts
}

// start builds and starts hg's backend with o; Handle and Netns are filled
// in unless o says otherwise.
func (hg *host) start(t *testing.T, o Options) *Backend {
	t.Helper()
	o.Handle = hg.h
	if !o.NoSubscribe {
		o.Netns = &hg.nsh
	}
	if o.ReconcilePeriod == 0 {
		o.ReconcilePeriod = time.Minute
	}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(t.Output(), hg.logBuf), nil)).With("host", hg.ns)
	b, err := NewWithOptions(backend.Config{
		Ext:     hg.ext,
		Network: &netconf.Config{EnableIPv4: true, Network: network, SubnetLen: 24, BackendType: BackendType},
		Log:     log,
	}, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(t.Context(), hg.lease); err != nil {
		t.Fatal(err)
	}
	return b
}

// run runs b.Run until the test ends and checks that it returned nil.
func run(t *testing.T, b *Backend) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return within 5s of cancel")
		}
	})
}

func leases(hosts ...*host) []lease.Lease {
	var ls []lease.Lease
	for _, h := range hosts {
		ls = append(ls, h.lease)
	}
	return ls
}

// routes is `ip route show table main` in ns, one trimmed line per route,
// without "linkdown": whether the portless cni0 has carrier yet is racy.
func routes(t *testing.T, ns string) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(nstest.Exec(t, ns, "ip", "route", "show", "table", "main"), "\n") {
		l = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(l), " linkdown"))
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// logLines counts the lines of logs that contain every one of parts.
func logLines(logs string, parts ...string) int {
	n := 0
	for _, l := range strings.Split(logs, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(l, p)
		}
		if all && l != "" {
			n++
		}
	}
	return n
}

// weftRoutes is `ip route show proto 87` in ns.
func weftRoutes(t *testing.T, ns string) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(nstest.Exec(t, ns, "ip", "route", "show", "proto", "87"), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func wantLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s:\n%s\nwant:\n%s", what, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestApplyProgramsPeersAndRemovesDeparted(t *testing.T) {
	hs := segment(t, 3)
	a := hs[0]
	b := a.start(t, Options{})
	vx := lease.Lease{
		Subnet: netip.MustParsePrefix("10.244.4.0/24"),
		Attrs:  lease.Attrs{PublicIP: netip.MustParseAddr("192.168.77.4"), BackendType: "vxlan"},
	}

	if err := b.Apply(t.Context(), append(leases(hs...), vx)); err != nil {
		t.Fatal(err)
	}
	wantLines(t, "routes after Apply(A, B, C, vxlan D)", weftRoutes(t, a.ns), []string{
		"10.244.2.0/24 via 192.168.77.2 dev eth0",
		"10.244.3.0/24 via 192.168.77.3 dev eth0",
	})

	// C leaves; D stays and must not be logged again.
	if err := b.Apply(t.Context(), append(leases(hs[0], hs[1]), vx)); err != nil {
		t.Fatal(err)
	}
	wantLines(t, "routes after C left", routes(t, a.ns), []string{
		"10.244.1.0/24 dev cni0 proto kernel scope link src 10.244.1.1",
		"10.244.2.0/24 via 192.168.77.2 dev eth0 proto 87",
		"192.168.77.0/24 dev eth0 proto kernel scope link src 192.168.77.1",
	})

	logs := a.logBuf.String()
	if n := strings.Count(logs, "ignoring peer of another backend type"); n != 1 {
		t.Errorf("the vxlan peer was logged %d times over two Applies, want once:\n%s", n, logs)
	}
	for _, want := range [][]string{
		{`msg="route added"`, `subnet=10.244.2.0/24 peer=192.168.77.2`},
		{`msg="route added"`, `subnet=10.244.3.0/24 peer=192.168.77.3`},
		{`msg="route removed"`, `subnet=10.244.3.0/24 peer=192.168.77.3`},
	} {
		if logLines(logs, want...) != 1 {
			t.Errorf("want exactly one log line with %q; logs:\n%s", want, logs)
		}
	}
}

func TestApplyReplacesConflictsAndRemovesStaleRoutes(t *testing.T) {
	hs := segment(t, 2)
	a := hs[0]
	// Left over from before: a route to B's subnet via a wrong gateway, a
	// flannel route to a peer that left while no agent ran, and routes
	// that are not weft's to touch.
	nstest.Exec(t, a.ns, "ip", "route", "add", "10.244.2.0/24", "via", "192.168.77.99", "dev", "eth0")
	nstest.Exec(t, a.ns, "ip", "route", "add", "10.244.9.0/24", "via", "192.168.77.9", "dev", "eth0")
	nstest.Exec(t, a.ns, "ip", "route", "add", "10.99.0.0/24", "via", "192.168.77.5", "dev", "eth0")
	nstest.Exec(t, a.ns, "ip", "route", "add", "10.244.6.0/24", "dev", "eth0")
	nstest.Exec(t, a.ns, "ip", "route", "add", "default", "via", "192.168.77.254", "dev", "eth0")

	b := a.start(t, Options{})
	if err := b.Apply(t.Context(), leases(hs...)); err != nil {
		t.Fatal(err)
	}
	wantLines(t, "routes", routes(t, a.ns), []string{
		"default via 192.168.77.254 dev eth0",
		"10.99.0.0/24 via 192.168.77.5 dev eth0",
		"10.244.1.0/24 dev cni0 proto kernel scope link src 10.244.1.1",
		"10.244.2.0/24 via 192.168.77.2 dev eth0 proto 87",
		"10.244.6.0/24 dev eth0 scope link",
		"192.168.77.0/24 dev eth0 proto kernel scope link src 192.168.77.1",
	})
	logs := a.logBuf.String()
	for _, want := range [][]string{
		{`msg="route replaced"`, `subnet=10.244.2.0/24 peer=192.168.77.2`, `was="10.244.2.0/24 via 192.168.77.99 dev eth0 proto boot"`},
		{`msg="route removed"`, `subnet=10.244.9.0/24 peer=192.168.77.9`},
	} {
		if logLines(logs, want...) != 1 {
			t.Errorf("want one log line with %q; logs:\n%s", want, logs)
		}
	}
}

func TestApplyReportsUnreachablePeerAndProgramsTheRest(t *testing.T) {
	hs := segment(t, 2)
	a := hs[0]
	b := a.start(t, Options{})
	far := lease.Lease{
		Subnet: netip.MustParsePrefix("10.244.5.0/24"),
		Attrs:  lease.Attrs{PublicIP: netip.MustParseAddr("10.99.0.5"), BackendType: BackendType},
	}
	err := b.Apply(t.Context(), append(leases(hs...), far))
	if err == nil {
		t.Fatal("Apply with a peer off the segment succeeded")
	}
	for _, want := range []string{
		"peer 10.99.0.5 (subnet 10.244.5.0/24): replace route 10.244.5.0/24 via 10.99.0.5 dev eth0 proto weft: network is unreachable",
		"host-gw can only route to hosts on the same L2 segment",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	wantLines(t, "routes", weftRoutes(t, a.ns), []string{"10.244.2.0/24 via 192.168.77.2 dev eth0"})
}

func TestRunRepairsDeletedRouteAtOnce(t *testing.T) {
	hs := segment(t, 3)
	a := hs[0]
	// With a one-minute period, only the deletion watch can repair in time.
	b := a.start(t, Options{ReconcilePeriod: time.Minute})
	if err := b.Apply(t.Context(), leases(hs...)); err != nil {
		t.Fatal(err)
	}
	run(t, b)
	want := []string{
		"10.244.2.0/24 via 192.168.77.2 dev eth0",
		"10.244.3.0/24 via 192.168.77.3 dev eth0",
	}
	// The first deletion may race Run's start-up repair; once it is back,
	// the watch is certainly running, and the second is the watch's alone.
	for i := 1; i <= 2; i++ {
		nstest.Exec(t, a.ns, "ip", "route", "del", "10.244.3.0/24")
		nstest.Eventually(t, 2*time.Second, func() error {
			if got := weftRoutes(t, a.ns); !slices.Equal(got, want) {
				return fmt.Errorf("routes after deletion %d: %q", i, got)
			}
			return nil
		})
		if got := b.Repairs(); got != uint64(i) {
			t.Errorf("Repairs = %d after %d deletions", got, i)
		}
	}
	if logLines(a.logBuf.String(), `msg="route added"`, `subnet=10.244.3.0/24 peer=192.168.77.3`, `trigger="route deleted"`) == 0 {
		t.Errorf("repair not logged as triggered by the deletion:\n%s", a.logBuf.String())
	}
}

func TestRunRepairsOnTimerWithoutWatch(t *testing.T) {
	hs := segment(t, 2)
	a := hs[0]
	b := a.start(t, Options{ReconcilePeriod: 100 * time.Millisecond, NoSubscribe: true})
	if err := b.Apply(t.Context(), leases(hs...)); err != nil {
		t.Fatal(err)
	}
	run(t, b)
	want := []string{"10.244.2.0/24 via 192.168.77.2 dev eth0"}
	nstest.Exec(t, a.ns, "ip", "route", "del", "10.244.2.0/24")
	nstest.Eventually(t, 2*time.Second, func() error {
		if got := weftRoutes(t, a.ns); !slices.Equal(got, want) {
			return fmt.Errorf("routes: %q", got)
		}
		return nil
	})
	// A route changed in place sends no deletion; the timer fixes it too.
	nstest.Exec(t, a.ns, "ip", "route", "replace", "10.244.2.0/24", "via", "192.168.77.50", "dev", "eth0")
	nstest.Eventually(t, 2*time.Second, func() error {
		if got := weftRoutes(t, a.ns); !slices.Equal(got, want) {
			return fmt.Errorf("routes: %q", got)
		}
		return nil
	})
	if got := b.Repairs(); got != 2 {
		t.Errorf("Repairs = %d, want 2", got)
	}
}

func TestRunLeavesTableAloneBeforeFirstApply(t *testing.T) {
	hs := segment(t, 1)
	a := hs[0]
	nstest.Exec(t, a.ns, "ip", "route", "add", "10.244.9.0/24", "via", "192.168.77.9", "dev", "eth0")
	b := a.start(t, Options{ReconcilePeriod: 20 * time.Millisecond})
	run(t, b)
	// Deleting an unrelated route wakes the watch; the timer fires many
	// times within the wait. Neither may remove the stale route yet.
	nstest.Exec(t, a.ns, "ip", "route", "add", "10.99.1.0/24", "via", "192.168.77.8", "dev", "eth0")
	nstest.Exec(t, a.ns, "ip", "route", "del", "10.99.1.0/24")
	deadline := time.Now().Add(300 * time.Millisecond)
	nstest.Eventually(t, time.Second, func() error {
		if !slices.Contains(routes(t, a.ns), "10.244.9.0/24 via 192.168.77.9 dev eth0") {
			t.Fatal("Run removed a route before any Apply")
		}
		if time.Now().Before(deadline) {
			return errors.New("still watching")
		}
		return nil
	})
	// The first Apply, a complete snapshot, removes it.
	if err := b.Apply(t.Context(), leases(a)); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(routes(t, a.ns), "10.244.9.0/24 via 192.168.77.9 dev eth0") {
		t.Error("Apply left the stale route")
	}
	if b.Repairs() != 0 {
		t.Errorf("Repairs = %d, want 0", b.Repairs())
	}
}

func TestConcurrentApplyAndRun(t *testing.T) {
	hs := segment(t, 3)
	a := hs[0]
	b := a.start(t, Options{ReconcilePeriod: 5 * time.Millisecond})
	if err := b.Apply(t.Context(), leases(hs...)); err != nil {
		t.Fatal(err)
	}
	run(t, b)
	for i := range 50 {
		ls := leases(hs...)
		if i%2 == 1 {
			ls = leases(hs[0], hs[1])
		}
		if err := b.Apply(t.Context(), ls); err != nil {
			t.Fatal(err)
		}
	}
	wantLines(t, "routes after the last Apply(A, B)", weftRoutes(t, a.ns), []string{"10.244.2.0/24 via 192.168.77.2 dev eth0"})
	if b.Repairs() != 0 {
		t.Errorf("Repairs = %d: Run fought Apply", b.Repairs())
	}
}

// TestPodTraffic checks the data plane end to end: an address in A's pod
// subnet reaches one in B's over TCP only once both hosts applied.
func TestPodTraffic(t *testing.T) {
	hs := segment(t, 2)
	a, bh := hs[0], hs[1]

	var ln net.Listener
	if err := netns.Do(bh.ns, func() (err error) {
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(bh.podIP, 0).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	target := ln.Addr().String()

	dial := func() error {
		return netns.Do(a.ns, func() error {
			d := net.Dialer{
				Timeout:   time.Second,
				LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(a.podIP, 0)),
			}
			c, err := d.Dial("tcp4", target)
			if err != nil {
				return err
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(time.Second))
			if _, err := c.Write([]byte("weft")); err != nil {
				return err
			}
			buf := make([]byte, 4)
			if _, err := io.ReadFull(c, buf); err != nil {
				return err
			}
			if string(buf) != "weft" {
				return fmt.Errorf("echo = %q", buf)
			}
			return nil
		})
	}

	if err := dial(); err == nil {
		t.Fatal("pod-to-pod connection worked before any route was programmed")
	}
	for _, hg := range hs {
		if err := hg.start(t, Options{}).Apply(t.Context(), leases(hs...)); err != nil {
			t.Fatal(err)
		}
	}
	if err := dial(); err != nil {
		t.Fatalf("%s -> %s after Apply: %v", a.podIP, target, err)
	}
}
