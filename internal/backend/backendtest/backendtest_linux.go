package backendtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
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
	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/nstest"
)

// Network is the cluster network the hosts' pod subnets are carved from.
var Network = netip.MustParsePrefix("10.244.0.0/16")

// DefaultUnderlay is the first segment's network when Options.Underlay is
// not set.
var DefaultUnderlay = netip.MustParsePrefix("192.168.70.0/24")

// Network6 is the cluster's IPv6 network the hosts' IPv6 pod subnets are
// carved from.
var Network6 = netip.MustParsePrefix("fd00:10:244::/56")

// Underlay6 is the IPv6 underlay: segment s is fd70:0:0:s::/64, host i
// has fd70:0:0:s::i on its eth0 beside its IPv4 address, and the router
// ::fe on every segment.
var Underlay6 = netip.MustParsePrefix("fd70::/48")

// underlay6 is the address of host (or router, 0xfe) i on segment s.
func underlay6(s, i int) netip.Addr {
	a := Underlay6.Addr().As16()
	a[7], a[15] = byte(s), byte(i)
	return netip.AddrFrom16(a)
}

// Options shape the topology Hosts builds.
type Options struct {
	// Underlay is the first segment's /24; segment s uses the /24 s above
	// it, and host i has address .i in its segment's. Zero means
	// DefaultUnderlay.
	Underlay netip.Prefix
	// Segments splits the hosts, in order, over L2 segments of these sizes,
	// which must add up to n. A router namespace holds .254 on every
	// segment and forwards between them; each host routes via its
	// segment's .254 by default. Nil puts all hosts on one segment with no
	// router.
	Segments []int
}

// Host is one virtual host: a network namespace with its underlay
// interface eth0 and a pod bridge cni0.
type Host struct {
	// NS is the namespace's name, for nstest.Exec and netns.Do.
	NS string
	// Handle is a netlink handle in NS, closed when the test ends.
	Handle *netlink.Handle
	// Netns is NS, opened, for a backend's Options.Netns; closed when the
	// test ends.
	Netns vns.NsHandle
	// Ext is eth0 as the agent would hand it to a backend: Addr and
	// PublicIP are both its IPv4 underlay address, Addr6 and PublicIPv6
	// its IPv6 one.
	Ext backend.ExternalInterface
	// Subnet is the host's pod subnet, 10.244.i.0/24 for host i.
	Subnet netip.Prefix
	// PodIP is cni0's address, 10.244.i.1, which stands in for a pod.
	PodIP netip.Addr
	// Subnet6 is the host's IPv6 pod subnet, fd00:10:244:i::/64, and
	// PodIP6 cni0's address in it, ::1.
	Subnet6 netip.Prefix
	PodIP6  netip.Addr
}

// Hosts builds n hosts as the package comment shows and returns them in
// order (host i at index i-1). It needs root: without it the test skips,
// or fails under CI (nstest.RequireRoot). Everything it creates is removed
// when the test ends, whether it passed, failed, or Hosts itself failed
// half-way.
func Hosts(t testing.TB, n int, o Options) []*Host {
	t.Helper()
	nstest.RequireRoot(t)
	segments := o.Segments
	if segments == nil {
		segments = []int{n}
	}
	underlay := o.Underlay
	if !underlay.IsValid() {
		underlay = DefaultUnderlay
	}
	if err := checkOptions(n, underlay, segments); err != nil {
		t.Fatalf("backendtest.Hosts: %v", err)
	}

	var rt string
	if len(segments) > 1 {
		rt = nstest.NewNS(t, "rt")
		nstest.Exec(t, rt, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	}
	hosts := make([]*Host, 0, n)
	i := 0
	for s, size := range segments {
		sw := nstest.NewNS(t, "sw")
		// No multicast snooping: IPv6 neighbour discovery goes to
		// solicited-node groups, which a snooping bridge may not flood
		// before it has heard the members report.
		nstest.Exec(t, sw, "ip", "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
		nstest.Exec(t, sw, "ip", "link", "set", "br0", "up")
		lan := underlay.Masked().Addr().As4()
		lan[2] += byte(s)
		gateway := lan
		gateway[3] = 254
		if rt != "" {
			up, rtPort := fmt.Sprintf("up%d", s), fmt.Sprintf("eth%d", s)
			nstest.Exec(t, sw, "ip", "link", "add", up, "type", "veth", "peer", "name", rtPort, "netns", rt)
			nstest.Exec(t, sw, "ip", "link", "set", up, "master", "br0", "up")
			nstest.Exec(t, rt, "ip", "link", "set", rtPort, "up")
			nstest.Exec(t, rt, "ip", "addr", "add", netip.PrefixFrom(netip.AddrFrom4(gateway), 24).String(), "dev", rtPort)
			nstest.Exec(t, rt, "ip", "addr", "add", netip.PrefixFrom(underlay6(s, 0xfe), 64).String(), "dev", rtPort, "nodad")
		}
		for range size {
			i++
			addr := lan
			addr[3] = byte(i)
			hosts = append(hosts, newHost(t, sw, i, netip.AddrFrom4(addr), rt != "", netip.AddrFrom4(gateway), s))
		}
	}
	return hosts
}

// checkOptions says why the topology asked for cannot be built, if it
// cannot.
func checkOptions(n int, underlay netip.Prefix, segments []int) error {
	if n < 1 || n > 253 {
		return fmt.Errorf("%d hosts; want 1 to 253 (.254 is the router's)", n)
	}
	if !underlay.Addr().Is4() || underlay.Bits() != 24 {
		return fmt.Errorf("Underlay %s is not an IPv4 /24", underlay)
	}
	if last := int(underlay.Addr().As4()[2]) + len(segments) - 1; last > 255 {
		return fmt.Errorf("%d segments from Underlay %s run past x.x.255.0", len(segments), underlay)
	}
	sum := 0
	for _, size := range segments {
		if size < 1 {
			return fmt.Errorf("Segments %v has an empty segment", segments)
		}
		sum += size
	}
	if sum != n {
		return fmt.Errorf("Segments %v hold %d hosts, not %d", segments, sum, n)
	}
	return nil
}

// newHost makes host i of segment seg with underlay address addr, its
// eth0 plugged into the bridge in sw.
func newHost(t testing.TB, sw string, i int, addr netip.Addr, routed bool, gateway netip.Addr, seg int) *Host {
	t.Helper()
	ns := nstest.NewNS(t, fmt.Sprintf("h%d", i))
	port := fmt.Sprintf("p%d", i)
	nstest.Exec(t, sw, "ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
	nstest.Exec(t, sw, "ip", "link", "set", port, "master", "br0", "up")
	nstest.Exec(t, ns, "ip", "link", "set", "eth0", "up")
	nstest.Exec(t, ns, "ip", "addr", "add", netip.PrefixFrom(addr, 24).String(), "dev", "eth0")
	// nodad: the address is usable at once rather than after duplicate
	// address detection's second.
	addr6 := underlay6(seg, i)
	nstest.Exec(t, ns, "ip", "addr", "add", netip.PrefixFrom(addr6, 64).String(), "dev", "eth0", "nodad")
	if routed {
		nstest.Exec(t, ns, "ip", "route", "add", "default", "via", gateway.String())
		nstest.Exec(t, ns, "ip", "-6", "route", "add", "default", "via", underlay6(seg, 0xfe).String())
	}
	subnet := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(i), 0}), 24)
	podIP := subnet.Addr().Next()
	a6 := Network6.Addr().As16()
	a6[7] = byte(i)
	subnet6 := netip.PrefixFrom(netip.AddrFrom16(a6), 64)
	podIP6 := subnet6.Addr().Next()
	nstest.Exec(t, ns, "ip", "link", "add", "cni0", "type", "bridge")
	nstest.Exec(t, ns, "ip", "link", "set", "cni0", "up")
	nstest.Exec(t, ns, "ip", "addr", "add", netip.PrefixFrom(podIP, 24).String(), "dev", "cni0")
	nstest.Exec(t, ns, "ip", "addr", "add", netip.PrefixFrom(podIP6, 64).String(), "dev", "cni0", "nodad")
	nstest.Exec(t, ns, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")

	h, err := netns.Handle(ns)
	if err != nil {
		t.Fatalf("backendtest: host %d: %v", i, err)
	}
	t.Cleanup(h.Close)
	nsh, err := vns.GetFromName(ns)
	if err != nil {
		t.Fatalf("backendtest: host %d: open netns %s: %v", i, ns, err)
	}
	t.Cleanup(func() { nsh.Close() })
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatalf("backendtest: host %d: find eth0 in %s: %v", i, ns, err)
	}
	return &Host{
		NS:     ns,
		Handle: h,
		Netns:  nsh,
		Ext: backend.ExternalInterface{
			Name: "eth0", Index: eth0.Attrs().Index, MTU: eth0.Attrs().MTU, Addr: addr, PublicIP: addr,
			Addr6: addr6, PublicIPv6: addr6,
		},
		Subnet:  subnet,
		PodIP:   podIP,
		Subnet6: subnet6,
		PodIP6:  podIP6,
	}
}

// EchoServer listens on TCP at h's PodIP, on a port the kernel picks,
// echoes back whatever each connection sends, and returns its "ip:port".
// It stops when the test ends.
func (h *Host) EchoServer(t testing.TB) string {
	t.Helper()
	return h.echoServer(t, h.PodIP)
}

// EchoServer6 is EchoServer at h's PodIP6; it returns "[ip]:port".
func (h *Host) EchoServer6(t testing.TB) string {
	t.Helper()
	return h.echoServer(t, h.PodIP6)
}

func (h *Host) echoServer(t testing.TB, ip netip.Addr) string {
	t.Helper()
	var ln net.Listener
	if err := netns.Do(h.NS, func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(ip, 0).String())
		return err
	}); err != nil {
		t.Fatalf("backendtest: echo server on %s in %s: %v", ip, h.NS, err)
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
	return ln.Addr().String()
}

// Echo connects from h's PodIP (PodIP6 to an IPv6 target) to an
// EchoServer at target, within timeout, and checks that what it sends
// comes back.
func (h *Host) Echo(target string, timeout time.Duration) error {
	ap, err := netip.ParseAddrPort(target)
	if err != nil {
		return fmt.Errorf("echo target %q: %w", target, err)
	}
	src := h.PodIP
	if ap.Addr().Is6() {
		src = h.PodIP6
	}
	return netns.Do(h.NS, func() error {
		d := net.Dialer{Timeout: timeout, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}
		c, err := d.Dial("tcp", target)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(timeout))
		if _, err := c.Write([]byte("weft")); err != nil {
			return err
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err != nil {
			return err
		}
		if string(buf) != "weft" {
			return fmt.Errorf("echo from %s = %q, want %q", target, buf, "weft")
		}
		return nil
	})
}

// LogBuffer collects a backend's log output, written from Apply and Run
// concurrently, for the test to search.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// LogLines counts the non-empty lines of logs that contain every one of
// parts.
func LogLines(logs string, parts ...string) int {
	n := 0
	for _, l := range strings.Split(logs, "\n") {
		all := l != ""
		for _, p := range parts {
			all = all && strings.Contains(l, p)
		}
		if all {
			n++
		}
	}
	return n
}

// WantLines reports an error naming what when got and want differ.
func WantLines(t testing.TB, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s:\n%s\nwant:\n%s", what, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// runTimeout is how long Run's stop waits for the backend's Run to return
// once its context is cancelled.
const runTimeout = 5 * time.Second

// Run runs run (a backend's Run method) in a goroutine until stop is
// called or the test ends, whichever comes first. stop cancels run's
// context and reports a test error if run returned one or did not return
// within 5 seconds; calling it again does nothing.
func Run(t testing.TB, run func(context.Context) error) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(runTimeout):
				t.Errorf("Run did not return within %v of cancel", runTimeout)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}
