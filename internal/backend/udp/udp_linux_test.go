package udp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/backend/backendtest"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/metrics"
	"github.com/weftnet/weft/internal/netconf"
	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/nstest"
)

// The integration tests run on backendtest.Hosts with the underlay
// 192.168.77.0/24: host i has eth0 192.168.77.i and pod address
// 10.244.i.1 on cni0, and leases 10.244.i.0/24; its backend makes flannel0
// with 10.244.i.0/32 and listens on 192.168.77.i:8285. Pod traffic between
// hosts goes cni0 address → flannel0 → udp → flannel0.

var network = backendtest.Network

type host struct {
	*backendtest.Host
	lease  lease.Lease
	logBuf *backendtest.LogBuffer
}

func segment(t testing.TB, n int) []*host {
	t.Helper()
	var hosts []*host
	for _, bh := range backendtest.Hosts(t, n, backendtest.Options{Underlay: netip.MustParsePrefix("192.168.77.0/24")}) {
		hosts = append(hosts, &host{
			Host:   bh,
			lease:  lease.Lease{Subnet: bh.Subnet, Attrs: lease.Attrs{PublicIP: bh.Ext.PublicIP}},
			logBuf: &backendtest.LogBuffer{},
		})
	}
	return hosts
}

// start builds and starts hg's backend with o; Handle and Netns are
// always the host's.
func (hg *host) start(t testing.TB, o Options) *Backend {
	t.Helper()
	return hg.startWith(t, o, nil)
}

// startWith is start with the backend's metrics recorded in m.
func (hg *host) startWith(t testing.TB, o Options, m *metrics.Metrics) *Backend {
	t.Helper()
	o.Handle = hg.Handle
	o.Netns = &hg.Netns
	if o.ReconcilePeriod == 0 {
		o.ReconcilePeriod = time.Minute
	}
	var w io.Writer = hg.logBuf
	if tt, ok := t.(*testing.T); ok {
		w = io.MultiWriter(tt.Output(), hg.logBuf)
	}
	log := slog.New(slog.NewTextHandler(w, nil)).With("host", hg.NS)
	b, err := NewWithOptions(backend.Config{
		Ext:     hg.Ext,
		Network: &netconf.Config{EnableIPv4: true, Network: network, SubnetLen: 24, BackendType: BackendType},
		Log:     log,
		Metrics: m,
	}, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(t.Context(), hg.lease); err != nil {
		t.Fatal(err)
	}
	return b
}

// cluster starts, applies and runs the backend on every host.
func cluster(t testing.TB, hs []*host) []*Backend {
	t.Helper()
	var bs []*Backend
	for _, hg := range hs {
		b := hg.start(t, Options{})
		if err := b.Apply(t.Context(), leases(hs...)); err != nil {
			t.Fatal(err)
		}
		backendtest.Run(t, b.Run)
		bs = append(bs, b)
	}
	return bs
}

func leases(hosts ...*host) []lease.Lease {
	var ls []lease.Lease
	for _, h := range hosts {
		ls = append(ls, h.lease)
	}
	return ls
}

func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func weftRoutes(t testing.TB, ns string) []string {
	return lines(nstest.Exec(t, ns, "ip", "route", "show", "proto", "87"))
}

func flannelAddrs(t testing.TB, ns string) []string {
	var out []string
	for _, l := range lines(nstest.Exec(t, ns, "ip", "-4", "-o", "addr", "show", "dev", "flannel0")) {
		f := strings.Fields(l)
		for i := range f {
			if f[i] == "inet" && i+1 < len(f) {
				out = append(out, f[i+1])
			}
		}
	}
	return out
}

// kernelState is flannel0 as `ip` shows it: the attributes weft sets, its
// IPv4 addresses and the routes weft installed.
func kernelState(t testing.TB, ns string) string {
	out, err := nstest.ExecErr(ns, "ip", "-d", "link", "show", "flannel0")
	if err != nil {
		return "no flannel0: " + out
	}
	var attrs []string
	for _, re := range []string{`mtu \d+`, `qlen \d+`} {
		if m := regexp.MustCompile(re).FindString(out); m != "" {
			attrs = append(attrs, m)
		}
	}
	if strings.Contains(out, ",UP") || strings.Contains(out, "<UP") {
		attrs = append(attrs, "up")
	}
	if m := regexp.MustCompile(`tun type tun pi \w+ vnet_hdr \w+ (multi_queue )?persist \w+`).FindString(out); m != "" {
		attrs = append(attrs, m)
	}
	return fmt.Sprintf("link: %s\naddrs: %s\nroutes: %s", strings.Join(attrs, ", "),
		strings.Join(flannelAddrs(t, ns), " "), strings.Join(weftRoutes(t, ns), "; "))
}

// vnet_hdr on: flannel0 carries super-packets (the offload path); flannel's
// own flannel0 has it off, which peers cannot tell.
const wantKernelState = "link: mtu 1472, qlen 1000, up, tun type tun pi off vnet_hdr on persist on\n" +
	"addrs: 10.244.1.0/32\n" +
	"routes: 10.244.0.0/16 dev flannel0"

func eventuallyKernelState(t testing.TB, ns, want string) {
	t.Helper()
	nstest.Eventually(t, 3*time.Second, func() error {
		if got := kernelState(t, ns); got != want {
			return fmt.Errorf("kernel state:\n%s\nwant:\n%s", got, want)
		}
		return nil
	})
}

func TestStartProgramsDeviceAddressAndRoute(t *testing.T) {
	hs := segment(t, 1)
	a := hs[0]
	// A leftover address on flannel0 from an earlier lease goes, too.
	nstest.Exec(t, a.NS, "ip", "tuntap", "add", "dev", "flannel0", "mode", "tun")
	nstest.Exec(t, a.NS, "ip", "addr", "add", "10.244.77.0/32", "dev", "flannel0")
	a.start(t, Options{})
	if got := kernelState(t, a.NS); got != wantKernelState {
		t.Errorf("kernel state after Start:\n%s\nwant:\n%s", got, wantKernelState)
	}
	// The socket listens on the external address and the default port.
	if out := nstest.Exec(t, a.NS, "ss", "-uanH"); !strings.Contains(out, "192.168.77.1:8285") {
		t.Errorf("no UDP socket on 192.168.77.1:8285:\n%s", out)
	}
	logs := a.logBuf.String()
	for _, want := range [][]string{
		{`msg="device attached"`, "device=flannel0"},
		{`msg="device mtu set"`, "mtu=1472 was=1500"},
		{`msg="device queue set"`, "txqueuelen=1000 was=500"},
		{`msg="device set up"`},
		{`msg="address removed"`, "addr=10.244.77.0/32"},
		{`msg="address added"`, "addr=10.244.1.0/32"},
		{`msg="route added"`, `route="10.244.0.0/16 dev flannel0 proto weft"`},
	} {
		if backendtest.LogLines(logs, want...) != 1 {
			t.Errorf("want one log line with %q:\n%s", want, logs)
		}
	}
}

func TestStartRefusesDeviceHeldByAnother(t *testing.T) {
	hs := segment(t, 1)
	a := hs[0]
	a.start(t, Options{})
	// Another address, so the socket binds and the device is what fails.
	b2, err := NewWithOptions(backend.Config{
		Ext:     backend.ExternalInterface{Name: "eth0", Index: a.Ext.Index, MTU: 1500, Addr: netip.MustParseAddr("127.0.0.1")},
		Network: &netconf.Config{EnableIPv4: true, Network: network, SubnetLen: 24},
	}, Options{Handle: a.Handle, Netns: &a.Netns})
	if err != nil {
		t.Fatal(err)
	}
	err = b2.Start(t.Context(), a.lease)
	if err == nil || !strings.Contains(err.Error(), "another process holds it") {
		t.Errorf("second backend on one host: %v", err)
	}
}

// dialEcho connects from src to dst over TCP, inside ns, and checks that
// the echo server answers.
func dialEcho(ns string, src netip.Addr, dst string) error {
	return netns.Do(ns, func() error {
		d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}
		c, err := d.Dial("tcp4", dst)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		msg := bytes.Repeat([]byte("weft"), 2000) // several segments, full-sized packets
		if _, err := c.Write(msg); err != nil {
			return err
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(c, buf); err != nil {
			return err
		}
		if !bytes.Equal(buf, msg) {
			return errors.New("echo differs")
		}
		return nil
	})
}

// icmpReply is the answer to one echo request.
type icmpReply struct {
	from      netip.Addr
	ttl       int
	typ, code byte
}

func (r icmpReply) String() string {
	return fmt.Sprintf("type %d code %d from %s ttl %d", r.typ, r.code, r.from, r.ttl)
}

// ping sends one ICMP echo request from src to dst with the given TTL
// inside ns, over a raw socket, and returns the echo reply or the ICMP error
// that answers it; it fails when nothing answers within a second. (The test
// machine has no ping binary, and this also shows the reply's TTL and the
// error's source.)
func ping(ns string, src netip.Addr, dst string, ttl int) (icmpReply, error) {
	var reply icmpReply
	err := netns.Do(ns, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: src.As4()}); err != nil {
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_TTL, ttl); err != nil {
			return err
		}
		tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		id := uint16(time.Now().UnixNano())
		req := []byte{8, 0, 0, 0, byte(id >> 8), byte(id), 0, 1, 'w', 'e', 'f', 't'}
		binary.BigEndian.PutUint16(req[2:], checksum(req))
		if err := unix.Sendto(fd, req, 0, &unix.SockaddrInet4{Addr: netip.MustParseAddr(dst).As4()}); err != nil {
			return err
		}
		buf := make([]byte, 1500)
		deadline := time.Now().Add(time.Second)
		for time.Now().Before(deadline) {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err == unix.EAGAIN || err == unix.EINTR {
				continue
			}
			if err != nil {
				return err
			}
			p := buf[:n]
			ihl := ipv4HeaderLen(p)
			if ihl == 0 || len(p) < ihl+8 {
				continue
			}
			ic := p[ihl:]
			r := icmpReply{from: netip.AddrFrom4([4]byte(p[12:16])), ttl: int(p[8]), typ: ic[0], code: ic[1]}
			switch {
			case r.typ == 0 && binary.BigEndian.Uint16(ic[4:6]) == id:
				reply = r
				return nil
			case isICMPError(r.typ) && len(ic) >= 8+20+8:
				inner := ic[8:]
				iihl := int(inner[0]&0x0f) * 4
				if len(inner) >= iihl+8 && inner[iihl] == 8 && binary.BigEndian.Uint16(inner[iihl+4:iihl+6]) == id {
					reply = r
					return nil
				}
			}
		}
		return fmt.Errorf("ping %s -> %s ttl %d: no answer within 1s", src, dst, ttl)
	})
	return reply, err
}

func TestPodTrafficThroughUDP(t *testing.T) {
	hs := segment(t, 3)
	a, bh, c := hs[0], hs[1], hs[2]
	targetB := bh.EchoServer(t)
	targetC := c.EchoServer(t)
	if err := dialEcho(a.NS, a.PodIP, targetB); err == nil {
		t.Fatal("pod-to-pod TCP worked before any backend ran")
	}
	bs := cluster(t, hs)
	for _, target := range []string{targetB, targetC} {
		if err := dialEcho(a.NS, a.PodIP, target); err != nil {
			t.Fatalf("%s -> %s: %v", a.PodIP, target, err)
		}
	}
	if r, err := ping(a.NS, a.PodIP, bh.PodIP.String(), 64); err != nil || r.typ != 0 {
		t.Errorf("ping %s -> %s: %v, %v", a.PodIP, bh.PodIP, r, err)
	}
	// Host-originated traffic leaves with the flannel0 address as its
	// source, which the peer routes back through its own flannel0.
	if err := dialEcho(a.NS, netip.MustParseAddr("10.244.1.0"), targetC); err != nil {
		t.Errorf("from A's flannel0 address: %v", err)
	}
	sa, sb := bs[0].Stats(), bs[1].Stats()
	if sa.Sent == 0 || sa.Delivered == 0 || sb.Sent == 0 || sb.Delivered == 0 {
		t.Errorf("traffic did not go through the udp backend: A %+v, B %+v", sa, sb)
	}
	if sa.SendErrors+sa.DeliverErrors+sa.Malformed+sa.Oversized != 0 {
		t.Errorf("A dropped packets: %+v", sa)
	}
}

func TestTTLDecrementedOnBothSides(t *testing.T) {
	hs := segment(t, 2)
	a, bh := hs[0], hs[1]
	bs := cluster(t, hs)
	// B answers with TTL 64; B's backend and A's each take one.
	r, err := ping(a.NS, a.PodIP, bh.PodIP.String(), 64)
	if err != nil || r.typ != 0 || r.ttl != 62 {
		t.Errorf("ping reply %v (%v); want an echo reply with TTL 62", r, err)
	}
	// A request sent with TTL 3 arrives with 1: delivered. With TTL 2 it
	// would arrive with 0: B drops it, as flannel does.
	if r, err := ping(a.NS, a.PodIP, bh.PodIP.String(), 3); err != nil || r.typ != 0 {
		t.Errorf("ping with TTL 3: %v, %v", r, err)
	}
	before := bs[1].Stats().TTLExpired
	if r, err := ping(a.NS, a.PodIP, bh.PodIP.String(), 2); err == nil {
		t.Errorf("ping with TTL 2 answered (%v); B should have dropped it", r)
	}
	if got := bs[1].Stats().TTLExpired - before; got != 1 {
		t.Errorf("B counted %d TTL drops, want 1", got)
	}
	// TTL 1 dies on A's side.
	before = bs[0].Stats().TTLExpired
	if r, err := ping(a.NS, a.PodIP, bh.PodIP.String(), 1); err == nil {
		t.Errorf("ping with TTL 1 answered: %v", r)
	}
	if got := bs[0].Stats().TTLExpired - before; got != 1 {
		t.Errorf("A counted %d TTL drops, want 1", got)
	}
}

func TestUnleasedSubnetIsNetUnreachable(t *testing.T) {
	hs := segment(t, 3)
	a, bh, c := hs[0], hs[1], hs[2]
	bs := cluster(t, hs)
	targetC := c.EchoServer(t)

	// A TCP connect to a subnet nobody leased fails at once with
	// ENETUNREACH, from the ICMP error A's backend wrote into flannel0.
	start := time.Now()
	err := dialEcho(a.NS, a.PodIP, "10.244.9.5:80")
	if !errors.Is(err, syscall.ENETUNREACH) {
		t.Errorf("connect to an unleased subnet: %v, want ENETUNREACH", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("connect took %v; the ICMP error should end it at once", d)
	}
	// An echo request gets the error too (flannel sends none for any
	// ICMP), from the unreachable address.
	r, err := ping(a.NS, a.PodIP, "10.244.9.5", 64)
	if err != nil || r.typ != 3 || r.code != 0 || r.from != netip.MustParseAddr("10.244.9.5") {
		t.Errorf("ping to an unleased subnet: %v, %v; want net unreachable from 10.244.9.5", r, err)
	}
	// The loop adds its counts after writing the error back.
	nstest.Eventually(t, time.Second, func() error {
		if st := bs[0].Stats(); st.NoLease != 2 || st.ICMPSent != 2 {
			return fmt.Errorf("A stats %+v: want the two packets counted and answered", st)
		}
		return nil
	})

	// C's lease goes: C becomes unreachable the same way.
	if err := dialEcho(a.NS, a.PodIP, targetC); err != nil {
		t.Fatal(err)
	}
	if err := bs[0].Apply(t.Context(), leases(a, bh)); err != nil {
		t.Fatal(err)
	}
	if err := dialEcho(a.NS, a.PodIP, targetC); !errors.Is(err, syscall.ENETUNREACH) {
		t.Errorf("connect to a departed peer: %v, want ENETUNREACH", err)
	}
	if backendtest.LogLines(a.logBuf.String(), `msg="peer removed"`, "subnet=10.244.3.0/24", "peer=192.168.77.3") != 1 {
		t.Errorf("removal not logged once:\n%s", a.logBuf.String())
	}
}

func TestRunRepairsKernelState(t *testing.T) {
	hs := segment(t, 2)
	a, bh := hs[0], hs[1]
	bs := cluster(t, hs)
	target := bh.EchoServer(t)
	eventuallyKernelState(t, a.NS, wantKernelState)

	for _, c := range []struct {
		name    string
		cmd     []string
		trigger string
	}{
		{"route deleted", []string{"ip", "route", "del", "10.244.0.0/16", "dev", "flannel0"}, ""},
		{"route changed", []string{"ip", "route", "replace", "10.244.0.0/16", "dev", "eth0"}, `trigger="route changed"`},
		{"address deleted", []string{"ip", "addr", "del", "10.244.1.0/32", "dev", "flannel0"}, `trigger="address changed"`},
		{"mtu changed", []string{"ip", "link", "set", "flannel0", "mtu", "1400"}, `trigger="device changed"`},
		{"device down", []string{"ip", "link", "set", "flannel0", "down"}, `trigger="device changed"`},
		{"queue shortened", []string{"ip", "link", "set", "flannel0", "txqueuelen", "10"}, `trigger="device changed"`},
		{"device deleted", []string{"ip", "link", "del", "flannel0"}, ""},
	} {
		before := bs[0].Repairs()
		nstest.Exec(t, a.NS, c.cmd...)
		// With a one-minute timer, only notifications (and, for the
		// deleted device, the failed read) can repair this fast.
		eventuallyKernelState(t, a.NS, wantKernelState)
		if bs[0].Repairs() == before {
			t.Errorf("%s: repaired without counting it", c.name)
		}
		if c.trigger != "" && backendtest.LogLines(a.logBuf.String(), c.trigger) == 0 {
			t.Errorf("%s: no repair logged with %s", c.name, c.trigger)
		}
		if err := dialEcho(a.NS, a.PodIP, target); err != nil {
			t.Errorf("%s: traffic after the repair: %v", c.name, err)
		}
	}
	if backendtest.LogLines(a.logBuf.String(), `msg="device created"`) != 2 { // at Start, and now
		t.Errorf("deleted device not logged as created again:\n%s", a.logBuf.String())
	}
}

func TestRunRepairsOnTimerWithoutWatch(t *testing.T) {
	hs := segment(t, 1)
	a := hs[0]
	b := a.start(t, Options{ReconcilePeriod: 100 * time.Millisecond, NoSubscribe: true})
	if err := b.Apply(t.Context(), leases(a)); err != nil {
		t.Fatal(err)
	}
	backendtest.Run(t, b.Run)
	// The first deletion may race Run's start-up reconcile; the second is
	// the timer's alone.
	for range 2 {
		nstest.Exec(t, a.NS, "ip", "route", "del", "10.244.0.0/16")
		eventuallyKernelState(t, a.NS, wantKernelState)
	}
	if backendtest.LogLines(a.logBuf.String(), `msg="route added"`, `trigger=timer`) == 0 {
		t.Errorf("route not restored by the timer:\n%s", a.logBuf.String())
	}
}

// TestRestartKeepsDeviceAndRoute stops A's backend and starts a new one:
// flannel0, its address and the route survive the gap (packets are
// dropped, not sent to the default route), and the new backend attaches
// without changing anything.
func TestRestartKeepsDeviceAndRoute(t *testing.T) {
	hs := segment(t, 2)
	a, bh := hs[0], hs[1]
	target := bh.EchoServer(t)
	bB := bh.start(t, Options{})
	if err := bB.Apply(t.Context(), leases(hs...)); err != nil {
		t.Fatal(err)
	}
	backendtest.Run(t, bB.Run)
	bA := a.start(t, Options{})
	if err := bA.Apply(t.Context(), leases(hs...)); err != nil {
		t.Fatal(err)
	}
	stop := backendtest.Run(t, bA.Run)
	if err := dialEcho(a.NS, a.PodIP, target); err != nil {
		t.Fatal(err)
	}
	stop()

	// While no agent runs: the entries stay; the kernel reports no carrier,
	// and drops what it routes into flannel0.
	if got, want := kernelState(t, a.NS), wantKernelState+" linkdown"; got != want {
		t.Errorf("kernel state with the agent stopped:\n%s\nwant:\n%s", got, want)
	}
	if out := nstest.Exec(t, a.NS, "ip", "link", "show", "flannel0"); !strings.Contains(out, "NO-CARRIER") {
		t.Errorf("flannel0 without a reader should have no carrier:\n%s", out)
	}
	if err := dialEcho(a.NS, a.PodIP, target); err == nil {
		t.Error("traffic flowed with no agent attached")
	}

	a.logBuf = &backendtest.LogBuffer{}
	bA2 := a.start(t, Options{})
	if err := bA2.Apply(t.Context(), leases(hs...)); err != nil {
		t.Fatal(err)
	}
	backendtest.Run(t, bA2.Run)
	if err := dialEcho(a.NS, a.PodIP, target); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	logs := a.logBuf.String()
	if backendtest.LogLines(logs, `msg="device attached"`) != 1 {
		t.Errorf("restart did not attach to the existing device:\n%s", logs)
	}
	for _, change := range []string{"device created", "device mtu set", "device queue set", "address added", "route added"} {
		if backendtest.LogLines(logs, `msg="`+change+`"`) != 0 {
			t.Errorf("restart changed the kernel (%s):\n%s", change, logs)
		}
	}
}

func TestOtherBackendTypesIgnored(t *testing.T) {
	hs := segment(t, 2)
	a, bh := hs[0], hs[1]
	target := bh.EchoServer(t)
	bh.start(t, Options{}) // B runs udp but A sees its lease as vxlan
	b := a.start(t, Options{})
	vx := bh.lease
	vx.Attrs.BackendType = "vxlan"
	if err := b.Apply(t.Context(), []lease.Lease{a.lease, vx}); err != nil {
		t.Fatal(err)
	}
	backendtest.Run(t, b.Run)
	if err := dialEcho(a.NS, a.PodIP, target); !errors.Is(err, syscall.ENETUNREACH) {
		t.Errorf("connect to a vxlan peer: %v, want ENETUNREACH", err)
	}
	if backendtest.LogLines(a.logBuf.String(), "ignoring peer of another backend type", "backend_type=vxlan", "subnet=10.244.2.0/24") != 1 {
		t.Errorf("want one log line for the vxlan peer:\n%s", a.logBuf.String())
	}
}

// BenchmarkTCPThroughput streams TCP from A's pod address to B's over the
// udp backend: the user-space data path end to end, on this machine.
func BenchmarkTCPThroughput(b *testing.B) {
	hs := segment(b, 2)
	a, bh := hs[0], hs[1]
	cluster(b, hs)
	var ln net.Listener
	if err := netns.Do(bh.NS, func() (err error) {
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(bh.PodIP, 0).String())
		return err
	}); err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- 0
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		got <- n
	}()
	var c net.Conn
	if err := netns.Do(a.NS, func() (err error) {
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(a.PodIP, 0))}
		c, err = d.Dial("tcp4", ln.Addr().String())
		return err
	}); err != nil {
		b.Fatal(err)
	}
	chunk := make([]byte, 1<<16)
	b.SetBytes(int64(len(chunk)))
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	c.Close()
	// Packets the sender's flannel0 dropped because the backend did not
	// read them in time (the TUN queue was full): TCP retransmits each.
	if l, err := a.Handle.LinkByName("flannel0"); err == nil && l.Attrs().Statistics != nil {
		b.ReportMetric(float64(l.Attrs().Statistics.TxDropped)/float64(b.N), "tun-drops/op")
	}
	if n := <-got; n != int64(b.N*len(chunk)) {
		b.Fatalf("received %d of %d bytes", n, b.N*len(chunk))
	}
}
