package backendtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	vns "github.com/vishvananda/netns"

	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/nstest"
)

// underlayConnect opens a TCP connection from from's underlay address to a
// listener on to's, and checks that bytes come across.
func underlayConnect(from, to *Host) error {
	var ln net.Listener
	if err := netns.Do(to.NS, func() (err error) {
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(to.Ext.Addr, 0).String())
		return err
	}); err != nil {
		return err
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		b, _ := io.ReadAll(c)
		got <- string(b)
	}()
	if err := netns.Do(from.NS, func() error {
		d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(from.Ext.Addr, 0))}
		c, err := d.Dial("tcp4", ln.Addr().String())
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte(from.NS))
		return err
	}); err != nil {
		return fmt.Errorf("%s -> %s: %w", from.Ext.Addr, to.Ext.Addr, err)
	}
	if s := <-got; s != from.NS {
		return fmt.Errorf("%s -> %s: received %q, want %q", from.Ext.Addr, to.Ext.Addr, s, from.NS)
	}
	return nil
}

// checkHost checks that h is host i as documented, on underlay address
// addr.
func checkHost(t *testing.T, h *Host, i int, addr string) {
	t.Helper()
	wantAddr := netip.MustParseAddr(addr)
	if h.Ext.Name != "eth0" || h.Ext.Addr != wantAddr || h.Ext.PublicIP != wantAddr {
		t.Errorf("host %d: Ext %+v, want eth0 with Addr and PublicIP %s", i, h.Ext, addr)
	}
	eth0, err := h.Handle.LinkByName("eth0")
	if err != nil {
		t.Fatalf("host %d: Handle does not see eth0: %v", i, err)
	}
	if eth0.Attrs().Index != h.Ext.Index || eth0.Attrs().MTU != h.Ext.MTU {
		t.Errorf("host %d: eth0 has index %d MTU %d; Ext says %d, %d", i, eth0.Attrs().Index, eth0.Attrs().MTU, h.Ext.Index, h.Ext.MTU)
	}
	byName, err := vns.GetFromName(h.NS)
	if err != nil {
		t.Fatal(err)
	}
	defer byName.Close()
	if !h.Netns.Equal(byName) {
		t.Errorf("host %d: Netns is not namespace %s", i, h.NS)
	}
	if want := netip.MustParsePrefix(fmt.Sprintf("10.244.%d.0/24", i)); h.Subnet != want || !Network.Contains(h.Subnet.Addr()) {
		t.Errorf("host %d: Subnet %s, want %s", i, h.Subnet, want)
	}
	if want := netip.MustParseAddr(fmt.Sprintf("10.244.%d.1", i)); h.PodIP != want {
		t.Errorf("host %d: PodIP %s, want %s", i, h.PodIP, want)
	}
	for dev, want := range map[string]string{"eth0": addr + "/24", "cni0": h.PodIP.String() + "/24"} {
		if out := nstest.Exec(t, h.NS, "ip", "-4", "-o", "addr", "show", "dev", dev); !strings.Contains(out, "inet "+want+" ") {
			t.Errorf("host %d: %s lacks %s:\n%s", i, dev, want, out)
		}
	}
	if out := nstest.Exec(t, h.NS, "sysctl", "-n", "net.ipv4.ip_forward"); strings.TrimSpace(out) != "1" {
		t.Errorf("host %d does not forward: ip_forward=%s", i, out)
	}
}

func TestHostsOnOneSegment(t *testing.T) {
	hs := Hosts(t, 3, Options{Underlay: netip.MustParsePrefix("192.168.77.0/24")})
	if len(hs) != 3 {
		t.Fatalf("%d hosts, want 3", len(hs))
	}
	seen := map[string]bool{}
	for i, h := range hs {
		checkHost(t, h, i+1, fmt.Sprintf("192.168.77.%d", i+1))
		if seen[h.NS] {
			t.Errorf("namespace %s used twice", h.NS)
		}
		seen[h.NS] = true
		if out := nstest.Exec(t, h.NS, "ip", "route", "show", "default"); out != "" {
			t.Errorf("host %d has a default route on a single segment: %s", i+1, out)
		}
	}
	for _, from := range hs {
		for _, to := range hs {
			if from != to {
				if err := underlayConnect(from, to); err != nil {
					t.Error(err)
				}
			}
		}
	}
}

func TestHostsOnTwoSegmentsWithRouter(t *testing.T) {
	hs := Hosts(t, 3, Options{Segments: []int{2, 1}})
	for i, addr := range []string{"192.168.70.1", "192.168.70.2", "192.168.71.3"} {
		checkHost(t, hs[i], i+1, addr)
	}
	for i, gw := range []string{"192.168.70.254", "192.168.70.254", "192.168.71.254"} {
		if out := nstest.Exec(t, hs[i].NS, "ip", "route", "show", "default"); !strings.Contains(out, "default via "+gw+" dev eth0") {
			t.Errorf("host %d: default route %q, want via %s", i+1, out, gw)
		}
	}
	// Host 1 reaches host 2 on its segment directly, host 3 through the
	// router.
	if out := nstest.Exec(t, hs[0].NS, "ip", "route", "get", "192.168.71.3"); !strings.Contains(out, "via 192.168.70.254") {
		t.Errorf("route from host 1 to host 3: %s", out)
	}
	for _, pair := range [][2]int{{0, 1}, {0, 2}, {2, 0}, {1, 2}} {
		if err := underlayConnect(hs[pair[0]], hs[pair[1]]); err != nil {
			t.Error(err)
		}
	}
}

func TestHostsCleanUpWhenTheTestEnds(t *testing.T) {
	nstest.RequireRoot(t)
	var names []string
	t.Run("build", func(t *testing.T) {
		for _, h := range Hosts(t, 2, Options{}) {
			names = append(names, h.NS)
		}
	})
	if len(names) != 2 {
		t.Fatalf("built %d hosts, want 2", len(names))
	}
	for _, n := range names {
		if netns.Exists(n) {
			t.Errorf("namespace %s outlived its test", n)
		}
	}
}

func TestEchoServer(t *testing.T) {
	h := Hosts(t, 1, Options{})[0]
	target := h.EchoServer(t)
	if ap := netip.MustParseAddrPort(target); ap.Addr() != h.PodIP || ap.Port() == 0 {
		t.Errorf("echo server at %s, want %s:<port>", target, h.PodIP)
	}
	if err := h.Echo(target, 2*time.Second); err != nil {
		t.Error(err)
	}
}

func TestCheckOptions(t *testing.T) {
	u := DefaultUnderlay
	for _, c := range []struct {
		name     string
		n        int
		underlay netip.Prefix
		segments []int
		want     string
	}{
		{"one segment", 3, u, []int{3}, ""},
		{"two segments", 3, u, []int{2, 1}, ""},
		{"no hosts", 0, u, []int{0}, "0 hosts"},
		{"too many hosts", 254, u, []int{254}, "254 hosts; want 1 to 253"},
		{"IPv6 underlay", 1, netip.MustParsePrefix("fd00::/64"), []int{1}, "Underlay fd00::/64 is not an IPv4 /24"},
		{"wide underlay", 1, netip.MustParsePrefix("10.0.0.0/16"), []int{1}, "Underlay 10.0.0.0/16 is not an IPv4 /24"},
		{"segments past .255", 2, netip.MustParsePrefix("192.168.255.0/24"), []int{1, 1}, "run past"},
		{"empty segment", 2, u, []int{2, 0}, "Segments [2 0] has an empty segment"},
		{"wrong sum", 3, u, []int{1, 1}, "Segments [1 1] hold 2 hosts, not 3"},
	} {
		err := checkOptions(c.n, c.underlay, c.segments)
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}

func TestRunStopsAndReportsErrors(t *testing.T) {
	var stopped bool
	t.Run("nil", func(t *testing.T) {
		stop := Run(t, func(ctx context.Context) error {
			<-ctx.Done()
			stopped = true
			return nil
		})
		stop()
		if !stopped {
			t.Error("stop returned before run did")
		}
		stop() // a second call, and the cleanup's, must not block or report
	})
	if !stopped {
		t.Error("run did not stop")
	}

	// A Run that fails must fail the test; a fake TB records it.
	rec := &recorder{TB: t}
	stop := Run(rec, func(ctx context.Context) error {
		<-ctx.Done()
		return errors.New("boom")
	})
	stop()
	if len(rec.errs) != 1 || rec.errs[0] != "Run: boom" {
		t.Errorf("errors reported: %q, want [\"Run: boom\"]", rec.errs)
	}
}

// recorder is a testing.TB that collects Errorf messages instead of
// failing.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}
