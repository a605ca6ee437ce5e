package udp

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/backend/backendtest"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/netconf"
)

var (
	testNetwork = netip.MustParsePrefix("10.244.0.0/16")
	testExt     = backend.ExternalInterface{
		Name: "eth0", Index: 2, MTU: 1500,
		Addr: netip.MustParseAddr("192.168.1.1"), PublicIP: netip.MustParseAddr("192.168.1.1"),
	}
)

func testConfig(backendJSON string) backend.Config {
	return backend.Config{Ext: testExt, Network: &netconf.Config{
		EnableIPv4: true, Network: testNetwork, SubnetLen: 24, BackendType: "udp", Backend: json.RawMessage(backendJSON),
	}}
}

func typedLease(subnet, publicIP, typ string) lease.Lease {
	l := lease.Lease{Subnet: netip.MustParsePrefix(subnet), Attrs: lease.Attrs{BackendType: typ}}
	if publicIP != "" {
		l.Attrs.PublicIP = netip.MustParseAddr(publicIP)
	}
	return l
}

func udpLease(subnet, publicIP string) lease.Lease { return typedLease(subnet, publicIP, "") }

func TestParseConfig(t *testing.T) {
	for _, c := range []struct {
		in      string
		port    int
		wantErr string
	}{
		{``, 8285, ""},
		{`{"Type":"udp"}`, 8285, ""},
		{`{"Type":"udp","Port":9000}`, 9000, ""},
		{`{"type":"udp","port":9001}`, 9001, ""},
		{`{"Type":"udp","PORT":9002,"Unknown":true}`, 9002, ""},
		{`{"Type":"udp","Port":0}`, 8285, ""},
		{`{"Type":"udp","Port":70000}`, 0, "udp backend option Port 70000 is not a UDP port (1-65535)"},
		{`{"Type":"udp","Port":-1}`, 0, "udp backend option Port -1 is not a UDP port (1-65535)"},
		{`{"Type":"udp","Port":"8285"}`, 0, "cannot unmarshal string"},
	} {
		got, err := parseConfig(json.RawMessage(c.in))
		switch {
		case c.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%s: error %v, want %q", c.in, err, c.wantErr)
			}
		case err != nil:
			t.Errorf("%s: %v", c.in, err)
		case got.Port != c.port:
			t.Errorf("%s: Port %d, want %d", c.in, got.Port, c.port)
		}
	}
}

func TestNewChecksConfig(t *testing.T) {
	for name, mod := range map[string]func(*backend.Config){
		"no network":   func(c *backend.Config) { c.Network = nil },
		"IPv6 only":    func(c *backend.Config) { c.Network.Network = netip.Prefix{} },
		"no interface": func(c *backend.Config) { c.Ext = backend.ExternalInterface{} },
		"no address":   func(c *backend.Config) { c.Ext.Addr = netip.Addr{} },
		"tiny MTU":     func(c *backend.Config) { c.Ext.MTU = 90 },
		"bad port":     func(c *backend.Config) { c.Network.Backend = json.RawMessage(`{"Port":65536}`) },
	} {
		cfg := testConfig(`{"Type":"udp"}`)
		mod(&cfg)
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
	if _, err := NewWithOptions(testConfig(""), Options{Handle: nil}); err != nil {
		t.Errorf("valid config: %v", err)
	}
}

// TestLeaseAttrsMatchFlannel: flannel's udp leases carry PublicIP only,
// and this is what the lease encodes to.
func TestLeaseAttrsMatchFlannel(t *testing.T) {
	b, err := NewWithOptions(testConfig(`{"Type":"udp","Port":8300}`), Options{})
	if err != nil {
		t.Fatal(err)
	}
	typ, data := b.LeaseAttrs()
	if typ != "" || data != nil {
		t.Errorf("LeaseAttrs = %q, %s; want no type and no data", typ, data)
	}
	enc, err := json.Marshal(lease.Attrs{PublicIP: testExt.PublicIP, BackendType: typ, BackendData: data})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"PublicIP":"192.168.1.1","PublicIPv6":null}`; string(enc) != want {
		t.Errorf("lease value %s, want %s", enc, want)
	}
	if b.MTU() != 1472 || b.Port() != 8300 {
		t.Errorf("MTU %d, Port %d; want 1472, 8300", b.MTU(), b.Port())
	}
}

func TestDesire(t *testing.T) {
	own := udpLease("10.244.1.0/24", "192.168.1.1")
	leases := []lease.Lease{
		own,
		udpLease("10.244.3.0/24", "192.168.1.3"),
		typedLease("10.244.2.0/24", "192.168.1.2", "udp"),
		typedLease("10.244.4.0/24", "192.168.1.4", "vxlan"),
		typedLease("10.244.5.0/24", "192.168.1.5", "host-gw"),
		udpLease("10.245.0.0/24", "192.168.1.6"),   // outside the network
		udpLease("10.244.7.0/24", ""),              // no PublicIP
		udpLease("10.244.8.0/24", "192.168.1.1"),   // our address, another subnet
		udpLease("10.244.1.128/25", "192.168.1.9"), // overlaps ours
		udpLease("10.244.10.0/23", "10.99.0.10"),   // another SubnetLen: still a peer
		udpLease("10.244.3.0/24", "192.168.1.33"),  // duplicate subnet
	}
	st := desire(testNetwork, own, testExt.PublicIP, 8285, leases)
	var got []string
	for _, p := range st.table.peers {
		got = append(got, fmt.Sprintf("%s -> %s:%d", p.subnet, p.publicIP(), p.ep.port))
	}
	want := []string{
		"10.244.2.0/24 -> 192.168.1.2:8285",
		"10.244.3.0/24 -> 192.168.1.3:8285",
		"10.244.10.0/23 -> 10.99.0.10:8285",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("peers:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(st.ignored) != 2 || st.ignored[netip.MustParsePrefix("10.244.4.0/24")].BackendType != "vxlan" {
		t.Errorf("ignored = %v, want the vxlan and host-gw leases", st.ignored)
	}
	wantErrs := []string{
		"peer 192.168.1.6 (subnet 10.245.0.0/24): not reachable over udp: its subnet is not inside the network 10.244.0.0/16",
		"peer none (subnet 10.244.7.0/24): not reachable over udp: it has no IPv4 PublicIP",
		"peer 192.168.1.1 (subnet 10.244.8.0/24): not reachable over udp: it carries this host's own PublicIP but is not this host's lease",
		"peer 192.168.1.9 (subnet 10.244.1.128/25): not reachable over udp: its subnet overlaps this host's 10.244.1.0/24",
		"peer 192.168.1.33 (subnet 10.244.3.0/24): not reachable over udp: another lease has the same subnet",
	}
	var gotErrs []string
	for _, e := range st.errs {
		gotErrs = append(gotErrs, e.Error())
	}
	if strings.Join(gotErrs, "\n") != strings.Join(wantErrs, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(gotErrs, "\n"), strings.Join(wantErrs, "\n"))
	}
}

func addr32(s string) uint32 {
	a := netip.MustParseAddr(s).As4()
	return binary.BigEndian.Uint32(a[:])
}

func TestLookup(t *testing.T) {
	tbl := newPeerTable([]peer{
		{subnet: netip.MustParsePrefix("10.244.2.0/24"), ep: endpoint{ip: [4]byte{1, 1, 1, 2}, port: 1}},
		{subnet: netip.MustParsePrefix("10.244.10.0/23"), ep: endpoint{ip: [4]byte{1, 1, 1, 10}, port: 1}},
		{subnet: netip.MustParsePrefix("10.244.11.128/25"), ep: endpoint{ip: [4]byte{1, 1, 1, 11}, port: 1}},
	})
	for _, c := range []struct {
		dst  string
		want byte // last octet of the peer; 0: none
	}{
		{"10.244.2.0", 2}, {"10.244.2.255", 2}, {"10.244.3.1", 0},
		{"10.244.10.1", 10}, {"10.244.11.1", 10},
		{"10.244.11.129", 11}, // longest match wins over the /23
		{"10.244.1.1", 0}, {"192.168.1.1", 0},
	} {
		ep, ok := tbl.lookup(addr32(c.dst))
		if got := map[bool]byte{true: ep.ip[3], false: 0}[ok]; got != c.want {
			t.Errorf("lookup %s: peer .%d, want .%d", c.dst, got, c.want)
		}
	}
	var empty *peerTable
	if _, ok := empty.lookup(addr32("10.244.2.1")); ok {
		t.Error("nil table found a peer")
	}
}

func TestDiffPeers(t *testing.T) {
	p := func(subnet string, ip byte) peer {
		return peer{subnet: netip.MustParsePrefix(subnet), ep: endpoint{ip: [4]byte{192, 168, 1, ip}, port: 8285}}
	}
	prev := newPeerTable([]peer{p("10.244.2.0/24", 2), p("10.244.3.0/24", 3), p("10.244.4.0/24", 4)})
	next := newPeerTable([]peer{p("10.244.5.0/24", 5), p("10.244.3.0/24", 33), p("10.244.2.0/24", 2)})
	var got []string
	for _, c := range diffPeers(prev, next) {
		got = append(got, fmt.Sprintf("%s %s %s was %s", c.kind, c.peer.subnet, c.peer.publicIP(), c.was.publicIP()))
	}
	want := []string{
		"changed 10.244.3.0/24 192.168.1.33 was 192.168.1.3",
		"added 10.244.5.0/24 192.168.1.5 was 0.0.0.0",
		"removed 10.244.4.0/24 192.168.1.4 was 0.0.0.0",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("diff:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(diffPeers(nil, nil)) != 0 || len(diffPeers(next, next)) != 0 {
		t.Error("diff of equal tables is not empty")
	}
}

// TestApplyPublishesTableAndLogsChanges runs Apply without a kernel: the
// backend is marked started by hand, as Start would leave it.
func TestApplyPublishesTableAndLogsChanges(t *testing.T) {
	var logs bytes.Buffer
	cfg := testConfig("")
	cfg.Log = slog.New(slog.NewTextHandler(&logs, nil))
	b, err := NewWithOptions(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Apply(context.Background(), nil); err == nil {
		t.Error("Apply before Start succeeded")
	}
	own := udpLease("10.244.1.0/24", "192.168.1.1")
	b.ownLease.Store(&own)

	vx := typedLease("10.244.4.0/24", "192.168.1.4", "vxlan")
	all := []lease.Lease{own, udpLease("10.244.2.0/24", "192.168.1.2"), udpLease("10.244.3.0/24", "192.168.1.3"), vx}
	if err := b.Apply(context.Background(), all); err != nil {
		t.Fatal(err)
	}
	if _, ok := b.peers.Load().lookup(addr32("10.244.3.9")); !ok {
		t.Error("peer 10.244.3.0/24 not in the published table")
	}
	if err := b.Apply(context.Background(), append(all[:2:2], vx, udpLease("10.244.7.0/24", ""))); err == nil {
		t.Error("Apply with a lease without PublicIP reported no error")
	}
	if _, ok := b.peers.Load().lookup(addr32("10.244.3.9")); ok {
		t.Error("removed peer still in the table")
	}
	if _, ok := b.peers.Load().lookup(addr32("10.244.2.9")); !ok {
		t.Error("the valid peer went missing because another lease was bad")
	}
	out := logs.String()
	for _, want := range []string{
		`msg="peer added" backend=udp subnet=10.244.2.0/24 peer=192.168.1.2 port=8285`,
		`msg="peer added" backend=udp subnet=10.244.3.0/24 peer=192.168.1.3 port=8285`,
		`msg="peer removed" backend=udp subnet=10.244.3.0/24 peer=192.168.1.3 port=8285`,
	} {
		if strings.Count(out, want) != 1 {
			t.Errorf("want one %q in logs:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "ignoring peer of another backend type"); n != 1 {
		t.Errorf("vxlan peer logged %d times over two Applies, want once:\n%s", n, out)
	}
}

// For any set of leases, status gets flannel0 and its route, and per peer
// no entry: a usable peer when desire puts it in the table, refused when
// PeerProblem refuses every lease of its subnet.
func TestWantsAreThePlan(t *testing.T) {
	own := backendtest.Own
	for seed := range uint64(300) {
		r := rand.New(rand.NewPCG(seed, 3))
		leases := append(backendtest.RandomLeases(r, 1+r.IntN(40), []string{"", "", BackendType, "vxlan"}), own)
		w := wants(testNetwork, 1472, DefaultPort, own, backendtest.OwnPublicIP, leases)
		if got := fmt.Sprint(w.Host); got != "[flannel0 mtu 1472 up 10.244.0.0/16 dev flannel0]" {
			t.Fatalf("seed %d: host wants %s", seed, got)
		}
		st := desire(testNetwork, own, backendtest.OwnPublicIP, DefaultPort, leases)
		inTable := make(map[netip.Prefix]bool)
		for _, p := range st.table.peers {
			inTable[p.subnet] = true
		}
		if _, err := backendtest.PeerWants(w, leases, own.Subnet, []string{"", BackendType}, func(netip.Prefix, backend.Want) bool { return false }); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		for subnet, pw := range w.Peers {
			if pw.Mismatch != "" || (pw.Refused == "") != inTable[subnet] {
				t.Fatalf("seed %d: %s: %+v, in the table %v", seed, subnet, pw, inTable[subnet])
			}
		}
		for _, l := range leases {
			s := l.Subnet.Masked()
			if !acceptsType(l.Attrs.BackendType) || s == own.Subnet {
				continue
			}
			if backend.PeerProblem(l, testNetwork, own, backendtest.OwnPublicIP) == "" && w.Peers[s].Refused != "" {
				t.Fatalf("seed %d: usable lease %v refused: %s", seed, l, w.Peers[s].Refused)
			}
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{``, `{"Type":"udp"}`, `{"port":9000}`, `{"Port":70000}`, `{"Port":"1"}`, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := parseConfig(raw)
		if err == nil && (c.Port < 1 || c.Port > 65535) {
			t.Errorf("parseConfig(%q) = port %d", raw, c.Port)
		}
		if err != nil && !strings.Contains(err.Error(), "udp backend option") {
			t.Errorf("parseConfig(%q): error %q does not say it is about the udp options", raw, err)
		}
	})
}
