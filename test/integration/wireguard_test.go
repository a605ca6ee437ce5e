package integration

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/backend/wireguard"
	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/internal/status"
	"github.com/weftnet/weft/internal/testbin"
)

// Three hosts on the wireguard backend: flannel-wg is a TUN device with
// flannel's MTU (1500 − 80) and the one route for the network, each lease
// publishes flannel's BackendData, the private key is in the state
// directory with mode 0400, and every pod pair talks with its own source.
func TestWireGuardLab(t *testing.T) {
	l := upLabBackend(t, 3, 1, "wireguard")
	cli := etcd(t, l)
	for _, h := range []string{"h1", "h2", "h3"} {
		out, err := exec.Command("ip", "-n", l.NS(h), "route", "show", "dev", "flannel-wg").CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v: %s", h, err, out)
		}
		if want := "172.7.0.0/16 proto 87"; !strings.Contains(string(out), want) {
			t.Errorf("%s: flannel-wg routes %q lack %q", h, out, want)
		}
		link, _ := exec.Command("ip", "-n", l.NS(h), "-d", "link", "show", "flannel-wg").CombinedOutput()
		if !strings.Contains(string(link), "mtu 1420") || !strings.Contains(string(link), "tun type tun") {
			t.Errorf("%s: flannel-wg is not a tun with MTU 1500-80:\n%s", h, link)
		}
		hst, _ := l.Topology().Host(h)
		keyFile := filepath.Join(filepath.Dir(hst.SubnetFile), wireguard.KeyFileName)
		fi, err := os.Stat(keyFile)
		if err != nil || fi.Mode().Perm() != 0o400 {
			t.Errorf("%s: key file %s: %v, mode %v; want 0400", h, keyFile, err, fi)
		}
		pub := publishedKey(t, cli, l, h)
		if want := keyOfFile(t, keyFile); pub != want {
			t.Errorf("%s: lease publishes %s, key file's public key is %s", h, pub, want)
		}
	}
	checks, err := l.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range checks {
		if !c.OK() {
			t.Errorf("check %s → %s failed: %s", c.From, c.To, c.Problem())
		}
	}
}

// publishedKey is the PublicKey in host's lease, which must be flannel's
// BackendData {"PublicKey":"...","Port":51820}.
func publishedKey(t *testing.T, cli *clientv3.Client, l *lab.Lab, host string) wireguard.Key {
	t.Helper()
	return publishedKeyIn(t, cli, l, host, false)
}

// publishedKeyIn is publishedKey, or with v6 the PublicKey in the lease's
// BackendV6Data, which must be {"PublicKey":"...","Port":51821} (Mode
// separate's flannel-wg-v6).
func publishedKeyIn(t *testing.T, cli *clientv3.Client, l *lab.Lab, host string, v6 bool) wireguard.Key {
	t.Helper()
	sub6, _ := l.Subnet6(host) // zero in an IPv4 lab
	resp, err := cli.Get(context.Background(), prefix+"/subnets/"+lease.KeyName(subnetOf(t, l, host), sub6))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("%s's lease: %v (%d keys)", host, err, len(resp.Kvs))
	}
	var a lease.Attrs
	if err := a.UnmarshalJSON(resp.Kvs[0].Value); err != nil {
		t.Fatal(err)
	}
	data, port := a.BackendData, 51820
	if v6 {
		data, port = a.BackendV6Data, 51821
	}
	var d struct {
		PublicKey string
		Port      int
	}
	if err := json.Unmarshal(data, &d); err != nil || a.BackendType != "wireguard" || d.Port != port {
		t.Fatalf("%s's lease %s: BackendType %q, data %s (%v)", host, resp.Kvs[0].Value, a.BackendType, data, err)
	}
	k, err := wireguard.ParseKey(d.PublicKey)
	if err != nil {
		t.Fatalf("%s's lease PublicKey %q: %v", host, d.PublicKey, err)
	}
	return k
}

func keyOfFile(t *testing.T, path string) wireguard.Key {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := wireguard.ParseKey(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("key file %s: %v", path, err)
	}
	pub, err := priv.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// What crosses the underlay is WireGuard, not the pods' packets: a ping
// whose payload carries a marker shows the marker on h2's flannel-wg (the
// decrypted packet, which proves the capture would see it) and never on
// h2's eth0, where the datagrams to UDP 51820 are WireGuard transport
// messages (type 4, three reserved zero bytes).
func TestWireGuardOnTheWireIsEncrypted(t *testing.T) {
	l := upLabBackend(t, 2, 1, "wireguard")
	dst, ok := l.PodAddr("h2p1")
	if !ok {
		t.Fatal("no pod h2p1")
	}
	marker := []byte{0x77, 0x65, 0x66, 0x74, 0x2d, 0x6d, 0x61, 0x72, 0x6b, 0x65, 0x72, 0x21, 0x57, 0x47, 0x21, 0x5a}
	capt := startCapture(t, l.NS("h2"))
	out, err := exec.Command("ip", "netns", "exec", l.NS("h1p1"), "ping", "-c", "3", "-i", "0.2", "-W", "2",
		"-p", hex.EncodeToString(marker), dst.String()).CombinedOutput()
	if err != nil {
		t.Fatalf("ping %s from h1p1: %v\n%s", dst, err, out)
	}
	pkts := capt.stop()
	ifaces := map[int]string{}
	for _, name := range []string{"eth0", "flannel-wg"} {
		err := netns.Do(l.NS("h2"), func() error {
			i, err := net.InterfaceByName(name)
			if err == nil {
				ifaces[i.Index] = name
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var plainOnWG, wgData, markerOnWire int
	for _, p := range pkts {
		switch ifaces[p.ifindex] {
		case "flannel-wg":
			if bytes.Contains(p.data, marker) {
				plainOnWG++
			}
		case "eth0":
			if bytes.Contains(p.data, marker) {
				markerOnWire++
			}
			if payload, ok := udpPayload(p.data, wireguard.DefaultListenPort); ok && len(payload) >= 32 &&
				payload[0] == 4 && payload[1] == 0 && payload[2] == 0 && payload[3] == 0 {
				wgData++
			}
		}
	}
	t.Logf("captured %d packets: %d with the marker on flannel-wg, %d WireGuard data messages on eth0, %d with the marker on eth0",
		len(pkts), plainOnWG, wgData, markerOnWire)
	if plainOnWG == 0 {
		t.Fatal("the capture never saw the marker on flannel-wg; it cannot judge the wire")
	}
	if wgData < 3 {
		t.Errorf("%d WireGuard transport messages to UDP %d on eth0, want at least the 3 echo requests", wgData, wireguard.DefaultListenPort)
	}
	if markerOnWire != 0 {
		t.Errorf("the pods' payload crossed eth0 in the clear %d times", markerOnWire)
	}
}

// udpPayload returns the payload of an IPv4 UDP datagram to port.
func udpPayload(ip []byte, port int) ([]byte, bool) {
	if len(ip) < 20 || ip[0]>>4 != 4 || ip[9] != syscall.IPPROTO_UDP {
		return nil, false
	}
	ihl := int(ip[0]&0x0f) * 4
	if len(ip) < ihl+8 || int(binary.BigEndian.Uint16(ip[ihl+2:])) != port {
		return nil, false
	}
	return ip[ihl+8:], true
}

type captured struct {
	ifindex int
	data    []byte
}

type capture struct {
	fd   int
	mu   sync.Mutex
	pkts []captured
	done chan struct{}
}

// startCapture reads every IPv4 packet on every interface of the netns
// ns (an AF_PACKET socket, cooked: no link header) until stop.
func startCapture(t *testing.T, ns string) *capture {
	t.Helper()
	c := &capture{fd: -1, done: make(chan struct{})}
	proto := int(htons(unix.ETH_P_IP))
	err := netns.Do(ns, func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM, proto)
		c.fd = fd
		return err
	})
	if err != nil {
		t.Fatalf("packet socket in %s: %v", ns, err)
	}
	tv := unix.Timeval{Usec: 100000}
	if err := unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.stop() })
	fd := c.fd
	go func() {
		defer close(c.done)
		buf := make([]byte, 65536)
		for {
			n, from, err := unix.Recvfrom(fd, buf, 0)
			c.mu.Lock()
			stopped := c.fd < 0
			c.mu.Unlock()
			switch {
			case stopped:
				return
			case err == unix.EAGAIN || err == unix.EINTR:
				continue
			case err != nil:
				return
			}
			ll, ok := from.(*unix.SockaddrLinklayer)
			if !ok {
				continue
			}
			c.mu.Lock()
			c.pkts = append(c.pkts, captured{ifindex: ll.Ifindex, data: bytes.Clone(buf[:n])})
			c.mu.Unlock()
		}
	}()
	return c
}

// stop ends the capture and returns what it saw.
func (c *capture) stop() []captured {
	c.mu.Lock()
	fd := c.fd
	c.fd = -1
	c.mu.Unlock()
	if fd >= 0 {
		<-c.done
		unix.Close(fd)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pkts
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Key rotation: h2's agent stops, its key file is deleted, and it starts
// again. It makes a new key and publishes it in its lease; h1 replaces the
// peer, and pods talk again after no more than a handshake's worth of
// loss: the first ping after the restart that is answered comes within a
// WireGuard handshake retry (5 s) plus the time to notice the lease.
func TestWireGuardKeyRotation(t *testing.T) {
	l := upLabBackend(t, 2, 1, "wireguard")
	cli := etcd(t, l)
	dst, ok := l.PodAddr("h2p1")
	if !ok {
		t.Fatal("no pod h2p1")
	}
	old := publishedKey(t, cli, l, "h2")
	h2, _ := l.Topology().Host("h2")
	keyFile := filepath.Join(filepath.Dir(h2.SubnetFile), wireguard.KeyFileName)

	if err := l.StopAgent("h2", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(keyFile); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	restarted := time.Now()
	if err := l.StartAgent(ctx, "h2"); err != nil {
		t.Fatal(err)
	}
	rotated := publishedKey(t, cli, l, "h2")
	if rotated == old {
		t.Fatalf("h2 still publishes %s after its key file was deleted", old)
	}
	if got := keyOfFile(t, keyFile); got != rotated {
		t.Errorf("h2 publishes %s, its new key file's public key is %s", rotated, got)
	}
	var back time.Duration
	nstest.Eventually(t, 15*time.Second, func() error {
		pctx, pcancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer pcancel()
		if _, err := lab.Ping(pctx, l.NS("h1p1"), dst); err != nil {
			return fmt.Errorf("h1p1 → h2p1 after h2's key rotation: %w", err)
		}
		back = time.Since(restarted)
		return nil
	})
	t.Logf("key %s → %s; pods talk again %v after the restart began", old, rotated, back.Round(time.Millisecond))
	if back > 8*time.Second {
		t.Errorf("pods talked again only %v after the restart; want within a handshake retry", back)
	}
	// h1's device holds the new key only.
	h1, _ := l.Topology().Host("h1")
	st, err := wireguard.ReadStatusSocket(filepath.Join(filepath.Dir(h1.SubnetFile), wireguard.StatusSocketName), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if p := st.Peers; len(p) != 1 || p[0].Key != rotated || p[0].LastHandshake.IsZero() {
		t.Errorf("h1's peers after the rotation: %+v; want only %s, with a handshake", p, rotated)
	}
}

// `weft status --check` on a wireguard lab: healthy, it is ok; with h3's
// UDP port 51820 blocked (after h3 got a new key, so that no session
// survives from before), h1's row for h3 says there is no handshake and
// names the blocked port and the wrong key as the causes; with h2's lease
// edited to publish a key its device does not hold, status on h2 says so.
func TestWireGuardStatusExplainsHandshakeFailures(t *testing.T) {
	l := upLabBackend(t, 3, 1, "wireguard")
	cli := etcd(t, l)
	s2, s3 := subnetOf(t, l, "h2"), subnetOf(t, l, "h3")

	// Healthy: --check is OK. A probe sent while the suite loads the
	// machine can miss its 1 s (a pod gateway that came up 0.1 s before),
	// so this waits for an OK report with a deadline.
	var (
		r    status.Report
		code int
	)
	nstest.Eventually(t, 20*time.Second, func() error {
		r, code = statusJSON(t, l, "h1", "--check")
		if code != 0 || !r.OK || r.Backend != "wireguard" {
			return fmt.Errorf("healthy wireguard lab: exit %d, %+v", code, r)
		}
		return nil
	})

	// A firewall on h3 drops WireGuard; h3 comes back with a new key.
	nstest.Exec(t, l.NS("h3"), "iptables", "-I", "INPUT", "-p", "udp", "--dport", "51820", "-j", "DROP")
	if err := l.StopAgent("h3", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	h3, _ := l.Topology().Host("h3")
	if err := os.Remove(filepath.Join(filepath.Dir(h3.SubnetFile), wireguard.KeyFileName)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.StartAgent(ctx, "h3"); err != nil {
		t.Fatal(err)
	}
	newKey := publishedKey(t, cli, l, "h3")
	nstest.Eventually(t, 10*time.Second, func() error {
		r, _ = statusJSON(t, l, "h1", "--check")
		row := rowOf(t, r, s3.String())
		if !strings.Contains(strings.Join(codesOf(row.Problems), " "), status.CodeWGNoHandshake) {
			return fmt.Errorf("h1's row for h3: %+v", row.Problems)
		}
		return nil
	})
	row := rowOf(t, r, s3.String())
	msg := row.Problems[len(row.Problems)-1].Message
	if !strings.Contains(msg, "UDP port 51820 is blocked") || !strings.Contains(msg, newKey.String()) {
		t.Errorf("no-handshake message %q names neither the blocked port nor h3's key", msg)
	}
	if strings.Contains(strings.Join(codesOf(row.Problems), " "), status.CodeGatewayNoAnswer) {
		t.Errorf("h1's row for h3 still blames the pod gateway: %+v", row.Problems)
	}
	if other := rowOf(t, r, s2.String()); other.Status != "ok" {
		t.Errorf("h1's row for h2 %+v, want ok", other)
	}
	out, _ := weftStatus(t, l, "h1", "--check")
	t.Logf("h1 with h3's port blocked:\n%s", out)

	// h2's lease is edited to publish another key than its device's.
	key := prefix + "/subnets/" + lease.KeyName(s2, netip.Prefix{})
	resp, err := cli.Get(ctx, key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("h2's lease: %v", err)
	}
	devKey := publishedKey(t, cli, l, "h2")
	wrong := wireguard.Key{1, 2, 3}
	edited := strings.Replace(string(resp.Kvs[0].Value), devKey.String(), wrong.String(), 1)
	if _, err := cli.Put(ctx, key, edited, clientv3.WithLease(clientv3.LeaseID(resp.Kvs[0].Lease))); err != nil {
		t.Fatal(err)
	}
	r, code = statusJSON(t, l, "h2", "--check")
	if code != 1 || !strings.Contains(strings.Join(codesOf(r.Problems), " "), status.CodeWGOwnKey) {
		t.Fatalf("h2 publishing a key its device lacks: exit %d, host problems %+v", code, r.Problems)
	}
	if msg := r.Problems[len(r.Problems)-1].Message; !strings.Contains(msg, wrong.String()) || !strings.Contains(msg, devKey.String()) {
		t.Errorf("own-key message %q does not name both keys", msg)
	}
}

// wireguardGo returns a standalone wireguard-go binary: $WEFT_WIREGUARD_GO,
// else one built from the module weft uses.
func wireguardGo(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("WEFT_WIREGUARD_GO"); p != "" {
		return p
	}
	bin := filepath.Join(t.TempDir(), "wireguard-go")
	out, err := exec.Command("go", "build", "-o", bin, "golang.zx2c4.com/wireguard").CombinedOutput()
	if err != nil {
		t.Fatalf("build wireguard-go (set WEFT_WIREGUARD_GO to use a built one): %v\n%s", err, out)
	}
	return bin
}

// Interop on the wire: h3 runs no agent but a standalone wireguard-go
// process on flannel-wg, configured by hand the way flannel configures its
// kernel device (its own key, one peer per lease, the Network route into
// the device), and publishes flannel's BackendData. The weft hosts take it
// as a peer, and pods on all three talk. Dual-stack, h3 runs a second
// wireguard-go on flannel-wg-v6 with the same key, as flannel's Mode
// separate does (ListenPortV6, peers at [PublicIPv6]:51821 with their IPv6
// subnets, the IPv6Network route into it), and publishes BackendV6Data;
// pods talk over IPv6 through it too.
func TestWireGuardInteropWithStandaloneWireGuardGo(t *testing.T) {
	for _, family := range []string{lab.FamilyIPv4, lab.FamilyDual} {
		t.Run(family, func(t *testing.T) { testWireGuardInterop(t, family) })
	}
}

// standaloneDevice is one WireGuard device h3 runs with a standalone
// wireguard-go, as flannel would run its kernel device.
type standaloneDevice struct {
	name    string
	port    int
	network netip.Prefix
	own     netip.Prefix // h3's subnet of the family, its address on the device
	peers   []string     // `wg set` arguments of its peers: peer KEY endpoint EP allowed-ips SUBNET ...
}

func testWireGuardInterop(t *testing.T, family string) {
	nstest.RequireTools(t, "wg")
	bin := wireguardGo(t)
	l, _ := upLabSpec(t, lab.Spec{Hosts: 3, Pods: 1, Backend: "wireguard", IPFamily: family})
	dual := family == lab.FamilyDual
	cli := etcd(t, l)
	s3 := subnetOf(t, l, "h3")
	if err := l.StopAgent("h3", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	priv, err := wireguard.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := priv.PublicKey()
	keyFile := filepath.Join(t.TempDir(), "h3.key")
	if err := os.WriteFile(keyFile, []byte(priv.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	devs := []standaloneDevice{{name: wireguard.DeviceName, port: 51820, network: l.Topology().Spec.Network, own: s3}}
	for _, h := range []string{"h1", "h2"} {
		k := publishedKey(t, cli, l, h)
		devs[0].peers = append(devs[0].peers, "peer", k.String(), "endpoint", fmt.Sprintf("%s:51820", hostIP(t, l, h)), "allowed-ips", subnetOf(t, l, h).String())
	}
	if dual {
		s36, _ := l.Subnet6("h3")
		v6 := standaloneDevice{name: wireguard.DeviceNameV6, port: 51821, network: l.Topology().Spec.IPv6Network, own: s36}
		for _, h := range []string{"h1", "h2"} {
			k := publishedKeyIn(t, cli, l, h, true)
			host, _ := l.Topology().Host(h)
			sub6, _ := l.Subnet6(h)
			v6.peers = append(v6.peers, "peer", k.String(), "endpoint", fmt.Sprintf("[%s]:51821", host.Addr6.Addr()), "allowed-ips", sub6.String())
		}
		devs = append(devs, v6)
	}
	for _, d := range devs {
		nstest.Exec(t, l.NS("h3"), "ip", "link", "del", d.name)
		cmd := exec.Command("ip", "netns", "exec", l.NS("h3"), bin, "-f", d.name)
		cmd.Env = append(os.Environ(), "WG_PROCESS_FOREGROUND=1", "LOG_LEVEL=error")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		// Configured by Debian's wg, as an operator (or flannel, through
		// the same interface) would: with no kernel module here, wg finds
		// the userspace device by its socket in /var/run/wireguard.
		args := append([]string{"ip", "netns", "exec", l.NS("h3"), "wg", "set", d.name,
			"private-key", keyFile, "listen-port", fmt.Sprint(d.port)}, d.peers...)
		nstest.Eventually(t, 10*time.Second, func() error {
			if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
				return fmt.Errorf("%s: %v: %s", strings.Join(args[4:], " "), err, out)
			}
			return nil
		})
		bits := d.own.Addr().BitLen()
		for _, c := range [][]string{
			{"ip", "addr", "add", d.own.Addr().String() + "/" + fmt.Sprint(bits), "dev", d.name, "nodad"},
			{"ip", "link", "set", d.name, "mtu", "1420", "up"},
			{"ip", "route", "replace", d.network.String(), "dev", d.name},
		} {
			if bits == 32 {
				c = slices.DeleteFunc(c, func(s string) bool { return s == "nodad" })
			}
			nstest.Exec(t, l.NS("h3"), c...)
		}
	}

	// h3's lease as flannel writes it, with the key of its wireguard-go.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s36, _ := l.Subnet6("h3")
	key := prefix + "/subnets/" + lease.KeyName(s3, s36)
	resp, err := cli.Get(ctx, key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("h3's lease %s: %v", key, err)
	}
	old := publishedKey(t, cli, l, "h3")
	var doc map[string]any
	if err := json.Unmarshal(resp.Kvs[0].Value, &doc); err != nil {
		t.Fatal(err)
	}
	doc["BackendData"] = json.RawMessage(fmt.Sprintf(`{"PublicKey":%q,"Port":51820}`, pub.String()))
	if dual {
		doc["BackendV6Data"] = json.RawMessage(fmt.Sprintf(`{"PublicKey":%q,"Port":51821}`, pub.String()))
	}
	val, _ := json.Marshal(doc)
	if !strings.Contains(string(val), pub.String()) || strings.Contains(string(val), old.String()) {
		t.Fatalf("edited lease %s", val)
	}
	if _, err := cli.Put(ctx, key, string(val), clientv3.WithLease(clientv3.LeaseID(resp.Kvs[0].Lease))); err != nil {
		t.Fatal(err)
	}

	addrs := map[string]func(string) (netip.Addr, bool){"IPv4": l.PodAddr}
	if dual {
		addrs["IPv6"] = l.PodAddr6
	}
	for fam, addrOf := range addrs {
		pods := map[string]netip.Addr{}
		for _, p := range []string{"h1p1", "h2p1", "h3p1"} {
			a, ok := addrOf(p)
			if !ok {
				t.Fatalf("no %s address of pod %s", fam, p)
			}
			pods[p] = a
		}
		for _, pair := range [][2]string{{"h1p1", "h3p1"}, {"h3p1", "h2p1"}, {"h2p1", "h3p1"}, {"h3p1", "h1p1"}} {
			nstest.Eventually(t, 15*time.Second, func() error {
				pctx, pcancel := context.WithTimeout(ctx, 500*time.Millisecond)
				defer pcancel()
				if _, err := lab.Ping(pctx, l.NS(pair[0]), pods[pair[1]]); err != nil {
					return fmt.Errorf("%s %s → %s with h3 on standalone wireguard-go: %w", fam, pair[0], pair[1], err)
				}
				return nil
			})
		}
	}
	// The traffic was WireGuard's: h1's devices have sessions with h3's
	// wireguard-go key.
	h1, _ := l.Topology().Host("h1")
	for _, d := range devs {
		out := nstest.Exec(t, l.NS("h3"), "ip", "-s", "link", "show", d.name)
		t.Logf("h3's %s:\n%s", d.name, out)
		sock := wireguard.StatusSocketName
		if d.name == wireguard.DeviceNameV6 {
			sock = wireguard.StatusSocketNameV6
		}
		st, err := wireguard.ReadStatusSocket(filepath.Join(filepath.Dir(h1.SubnetFile), sock), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, p := range st.Peers {
			if p.Key == pub && !p.LastHandshake.IsZero() && p.RxBytes > 0 {
				found = true
			}
		}
		if !found {
			t.Errorf("h1's %s has no session with h3's wireguard-go key %s: %+v", d.name, pub, st.Peers)
		}
	}
}

// weft cleanup on a stopped wireguard host removes what the backend left:
// the persistent flannel-wg with its route, and the key file; on a
// dual-stack host flannel-wg-v6 too, with its IPv6 route and status
// socket.
func TestWireGuardCleanup(t *testing.T) {
	for _, family := range []string{lab.FamilyIPv4, lab.FamilyDual} {
		t.Run(family, func(t *testing.T) {
			l, _ := upLabSpec(t, lab.Spec{Hosts: 2, Pods: 1, Backend: "wireguard", IPFamily: family})
			h, _ := l.Topology().Host("h1")
			if err := l.StopAgent("h1", syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			keyFile := filepath.Join(h.Dir, wireguard.KeyFileName)
			if _, err := os.Stat(keyFile); err != nil {
				t.Fatalf("no key file before cleanup: %v", err)
			}
			// The devices outlive the agent, and drop what is routed into them.
			routes := func(fam string) string { return nstest.Exec(t, l.NS("h1"), "ip", fam, "route", "show", "proto", "87") }
			if s := routes("-4"); !strings.Contains(s, "dev flannel-wg") {
				t.Fatalf("flannel-wg's route is gone with the agent:\n%s", s)
			}
			if s := routes("-6"); family == lab.FamilyDual && !strings.Contains(s, "dev flannel-wg-v6") {
				t.Fatalf("flannel-wg-v6's route is gone with the agent:\n%s", s)
			}
			out, err := exec.Command("ip", "netns", "exec", l.NS("h1"), testbin.Weft(t), "cleanup",
				"--subnet-file="+h.SubnetFile, "--state-dir="+h.Dir).CombinedOutput()
			if err != nil {
				t.Fatalf("weft cleanup: %v\n%s", err, out)
			}
			if s := nstest.Exec(t, l.NS("h1"), "ip", "link"); strings.Contains(s, "flannel-wg") {
				t.Errorf("a wireguard device left:\n%s", s)
			}
			if s := routes("-4") + routes("-6"); strings.TrimSpace(s) != "" {
				t.Errorf("routes left:\n%s", s)
			}
			for _, f := range []string{keyFile, filepath.Join(h.Dir, wireguard.StatusSocketNameV6)} {
				if _, err := os.Stat(f); !os.IsNotExist(err) {
					t.Errorf("%s left: %v", f, err)
				}
			}
		})
	}
}
