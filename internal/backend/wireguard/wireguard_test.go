package wireguard

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/lease"
)

func mustKey(t testing.TB, b byte) Key {
	t.Helper()
	var k Key
	for i := range k {
		k[i] = b
	}
	return k
}

// flannel's defaults, and each option's errors name the option.
func TestParseOptions(t *testing.T) {
	s, err := ParseSettings(nil, 1500)
	if err != nil {
		t.Fatal(err)
	}
	if s.ListenPort != 51820 || s.ListenPortV6 != 51821 || s.Mode != "separate" || s.MTU != 1500 || s.PSK != "" || s.PersistentKeepaliveInterval != 0 {
		t.Errorf("defaults = %+v", s)
	}
	psk := mustKey(t, 7).String()
	s, err = ParseSettings(json.RawMessage(`{"Type":"wireguard","listenport":51999,"PSK":"`+psk+`","PersistentKeepaliveInterval":25,"MTU":1400,"Mode":"auto","Unknown":1}`), 1500)
	if err != nil {
		t.Fatal(err)
	}
	if s.ListenPort != 51999 || s.psk != mustKey(t, 7) || s.PersistentKeepaliveInterval != 25 || s.MTU != 1400 || s.Mode != "auto" {
		t.Errorf("parsed = %+v", s)
	}
	for _, c := range []struct{ raw, field string }{
		{`{"ListenPort":70000}`, "ListenPort 70000"},
		{`{"ListenPort":-1}`, "ListenPort -1"},
		{`{"ListenPortV6":65536}`, "ListenPortV6"},
		{`{"PSK":"bm90IGEga2V5"}`, "PSK"},
		{`{"PSK":"%%%"}`, "PSK"},
		{`{"PersistentKeepaliveInterval":-5}`, "PersistentKeepaliveInterval"},
		{`{"PersistentKeepaliveInterval":70000}`, "PersistentKeepaliveInterval"},
		{`{"PersistentKeepaliveInterval":"25s"}`, "PersistentKeepaliveInterval"},
		{`{"MTU":100}`, "MTU 100"},
		{`{"Mode":"mesh"}`, "Mode"},
		{`[1]`, "wireguard options"},
	} {
		_, err := parseOptions(json.RawMessage(c.raw))
		if err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: err %v, want one naming %q", c.raw, err, c.field)
		}
	}
	// The PSK is a secret: a bad one is not echoed.
	_, err = parseOptions(json.RawMessage(`{"PSK":"c2VjcmV0c2VjcmV0"}`))
	if err == nil || strings.Contains(err.Error(), "c2VjcmV0c2VjcmV0") {
		t.Errorf("bad PSK error %v shows the value", err)
	}
	if _, err := ParseSettings(nil, 120); err == nil || !strings.Contains(err.Error(), "MTU 120") {
		t.Errorf("underlay MTU 120: err %v", err)
	}
}

// The lease carries flannel's BackendData, and a peer's decodes back.
func TestLeaseDataRoundTrip(t *testing.T) {
	priv, err := NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := priv.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	raw := leaseData(pub, 51820)
	if want := `{"PublicKey":"` + pub.String() + `","Port":51820}`; string(raw) != want {
		t.Errorf("lease data %s, want %s", raw, want)
	}
	d, err := ParsePeerData(raw)
	if err != nil || d.Key != pub || d.Port != 51820 {
		t.Errorf("ParsePeerData = %+v, %v", d, err)
	}
	// Older flannel leases carry no Port.
	d, err = ParsePeerData(json.RawMessage(`{"PublicKey":"` + pub.String() + `"}`))
	if err != nil || d.Port != 0 {
		t.Errorf("no Port: %+v, %v", d, err)
	}
	for _, raw := range []string{``, `null`, `{}`, `{"PublicKey":"abc"}`, `{"PublicKey":"` + Key{}.String() + `"}`,
		`{"PublicKey":"` + pub.String() + `","Port":99999}`, `"str"`} {
		if _, err := ParsePeerData(json.RawMessage(raw)); err == nil {
			t.Errorf("ParsePeerData(%s) accepted", raw)
		}
	}
}

// The public key is Curve25519's of the clamped private key: RFC 7748's
// test vector (Alice).
func TestPublicKey(t *testing.T) {
	var priv Key
	copy(priv[:], mustHex(t, "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"))
	pub, err := priv.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := pub.hex(), "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"; got != want {
		t.Errorf("public key %s, want %s", got, want)
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	var b []byte
	for i := 0; i+1 < len(s); i += 2 {
		var v byte
		for _, c := range s[i : i+2] {
			v <<= 4
			switch {
			case c >= '0' && c <= '9':
				v |= byte(c - '0')
			default:
				v |= byte(c-'a') + 10
			}
		}
		b = append(b, v)
	}
	return b
}

func wgLease(subnet, pub string, key Key, port int) lease.Lease {
	data := json.RawMessage(`{"PublicKey":"` + key.String() + `","Port":` + itoa(port) + `}`)
	if port < 0 {
		data = json.RawMessage(`{"PublicKey":"` + key.String() + `"}`)
	}
	return lease.Lease{Subnet: netip.MustParsePrefix(subnet), Attrs: lease.Attrs{
		PublicIP: netip.MustParseAddr(pub), BackendType: BackendType, BackendData: data}}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// One peer per usable wireguard lease; the own lease, other types, bad
// keys, the own key and a key published twice get none, with reasons.
func TestDesire(t *testing.T) {
	network := netip.MustParsePrefix("10.244.0.0/16")
	own := wgLease("10.244.1.0/24", "192.168.0.1", mustKey(t, 1), 51820)
	leases := []lease.Lease{
		own,
		wgLease("10.244.3.0/24", "192.168.0.3", mustKey(t, 3), 51821),
		wgLease("10.244.2.0/24", "192.168.0.2", mustKey(t, 2), -1),    // no Port: the own listen port
		wgLease("10.244.4.0/24", "192.168.0.4", mustKey(t, 1), 51820), // our key
		wgLease("10.244.5.0/24", "192.168.0.5", mustKey(t, 3), 51820), // 10.244.3.0's key
		{Subnet: netip.MustParsePrefix("10.244.6.0/24"), Attrs: lease.Attrs{PublicIP: netip.MustParseAddr("192.168.0.6"), BackendType: "vxlan"}},
		{Subnet: netip.MustParsePrefix("10.244.7.0/24"), Attrs: lease.Attrs{PublicIP: netip.MustParseAddr("192.168.0.7"), BackendType: BackendType, BackendData: json.RawMessage(`{"PublicKey":"x"}`)}},
	}
	set, _ := ParseSettings(nil, 1500)
	st := desire(plan{set: set, network: network, own: own, ownPublicIP: netip.MustParseAddr("192.168.0.1"), ownKey: mustKey(t, 1)}, leases)
	want := []peer{
		v4peer("10.244.2.0/24", "192.168.0.2:51820", mustKey(t, 2)),
		v4peer("10.244.3.0/24", "192.168.0.3:51821", mustKey(t, 3)),
	}
	wantPeers(t, DeviceName, st.devs[DeviceName], want)
	if len(st.devs) != 1 {
		t.Errorf("devices = %v", st.devs)
	}
	wantReasons(t, "refused", st.refused, map[string]string{
		"10.244.4.0/24": "own public key",
		"10.244.5.0/24": "public key of the peer with subnet 10.244.3.0/24",
		"10.244.7.0/24": "PublicKey",
	})
	if len(st.errs) != 3 {
		t.Errorf("errs = %v", st.errs)
	}
	if _, ok := st.ignored[netip.MustParsePrefix("10.244.6.0/24")]; !ok || len(st.ignored) != 1 {
		t.Errorf("ignored = %v", st.ignored)
	}
}

// A fresh device gets every peer; an update touches only the peers that
// changed, and a rotated key is removed before its successor is added.
func TestUAPIConfig(t *testing.T) {
	set, err := ParseSettings(json.RawMessage(`{"PSK":"`+mustKey(t, 9).String()+`","PersistentKeepaliveInterval":25}`), 1500)
	if err != nil {
		t.Fatal(err)
	}
	a := v4peer("10.244.2.0/24", "192.168.0.2:51820", mustKey(t, 2))
	b := v4peer("10.244.3.0/24", "192.168.0.3:51820", mustKey(t, 3))
	full := deviceConfig(mustKey(t, 1), 51820, []peer{a}, set)
	want := "private_key=" + mustKey(t, 1).hex() + "\nlisten_port=51820\nreplace_peers=true\n" +
		"public_key=" + mustKey(t, 2).hex() + "\npreshared_key=" + mustKey(t, 9).hex() + "\nendpoint=192.168.0.2:51820\n" +
		"persistent_keepalive_interval=25\nreplace_allowed_ips=true\nallowed_ip=10.244.2.0/24\n"
	if full != want {
		t.Errorf("device config:\n%s\nwant:\n%s", full, want)
	}
	if got := updateConfig([]peer{a, b}, []peer{a, b}, set); got != "" {
		t.Errorf("no change: %q", got)
	}
	if got := updateConfig([]peer{a, b}, []peer{a}, set); got != "public_key="+mustKey(t, 3).hex()+"\nremove=true\n" {
		t.Errorf("removal: %q", got)
	}
	rotated := b
	rotated.Key = mustKey(t, 4)
	got := updateConfig([]peer{a, b}, []peer{a, rotated}, set)
	if !strings.HasPrefix(got, "public_key="+mustKey(t, 3).hex()+"\nremove=true\npublic_key="+mustKey(t, 4).hex()+"\n") ||
		strings.Contains(got, mustKey(t, 2).hex()) {
		t.Errorf("rotation: %q", got)
	}
	// A key that moves to another subnet is not removed after being set.
	moved := v4peer("10.244.9.0/24", b.Endpoint.String(), b.Key)
	got = updateConfig([]peer{b}, []peer{moved}, set)
	if strings.Contains(got, "remove=true") || !strings.Contains(got, "allowed_ip=10.244.9.0/24") {
		t.Errorf("moved key: %q", got)
	}
	changes := diffPeers([]peer{a, b}, []peer{a, rotated})
	if len(changes) != 1 || changes[0].kind != "changed" || changes[0].was.Key != b.Key {
		t.Errorf("diff = %+v", changes)
	}
}

func TestParseIpcGet(t *testing.T) {
	text := "private_key=" + mustKey(t, 1).hex() + "\nlisten_port=51820\n" +
		"public_key=" + mustKey(t, 2).hex() + "\nendpoint=192.168.0.2:51820\nlast_handshake_time_sec=1700000000\nlast_handshake_time_nsec=5\n" +
		"tx_bytes=10\nrx_bytes=20\nallowed_ip=10.244.2.0/24\n" +
		"public_key=" + mustKey(t, 3).hex() + "\nlast_handshake_time_sec=0\nlast_handshake_time_nsec=0\nnew_key=1\nerrno=0\n"
	st, err := ParseIpcGet(text)
	if err != nil {
		t.Fatal(err)
	}
	if pub, _ := mustKey(t, 1).PublicKey(); st.PublicKey != pub || st.ListenPort != 51820 {
		t.Errorf("device = %+v", st)
	}
	ps := st.Peers
	if len(ps) != 2 || ps[0].Key != mustKey(t, 2) || !ps[0].LastHandshake.Equal(time.Unix(1700000000, 5)) ||
		ps[0].TxBytes != 10 || ps[0].RxBytes != 20 || len(ps[0].AllowedIPs) != 1 || ps[0].Endpoint.Port() != 51820 {
		t.Errorf("peer 0 = %+v", ps)
	}
	if !ps[1].LastHandshake.IsZero() {
		t.Errorf("peer 1 has a handshake: %+v", ps[1])
	}
	for _, bad := range []string{"noequals\n", "public_key=zz\n", "public_key=" + mustKey(t, 2).hex() + "\nrx_bytes=-1\n"} {
		if _, err := ParseIpcGet(bad); err == nil {
			t.Errorf("ParseIpcGet(%q) accepted", bad)
		}
	}
}

// status's model: flannel-wg with MTU − 80 and the Network route, and a
// peer without kernel entries, or refused with the backend's reason.
func TestWants(t *testing.T) {
	network := netip.MustParsePrefix("10.244.0.0/16")
	own := wgLease("10.244.1.0/24", "192.168.0.1", mustKey(t, 1), 51820)
	set, _ := ParseSettings(nil, 1500)
	w := wants(plan{set: set, network: network, own: own, ownPublicIP: netip.MustParseAddr("192.168.0.1")}, 1420, []lease.Lease{
		own, wgLease("10.244.2.0/24", "192.168.0.2", mustKey(t, 2), 51820),
		{Subnet: netip.MustParsePrefix("10.244.3.0/24"), Attrs: lease.Attrs{PublicIP: netip.MustParseAddr("192.168.0.3"), BackendType: BackendType}},
	})
	if len(w.Host) != 2 || w.Host[0].String() != "flannel-wg mtu 1420 up" || w.Host[1].String() != "10.244.0.0/16 dev flannel-wg" {
		t.Errorf("host wants = %v", w.Host)
	}
	if p, ok := w.Peers[netip.MustParsePrefix("10.244.2.0/24")]; !ok || p.Refused != "" || len(p.Entries) != 0 {
		t.Errorf("peer 2 = %+v", p)
	}
	if p := w.Peers[netip.MustParsePrefix("10.244.3.0/24")]; !strings.Contains(p.Refused, "BackendData") {
		t.Errorf("peer 3 = %+v", p)
	}
}

// v4peer is the peer of an IPv4-only lease on flannel-wg.
func v4peer(subnet, endpoint string, key Key) peer {
	p := netip.MustParsePrefix(subnet)
	return peer{ID: p, Allowed: []netip.Prefix{p}, Endpoint: netip.MustParseAddrPort(endpoint), Key: key}
}

func wantPeers(t *testing.T, dev string, got, want []peer) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s peers = %+v, want %+v", dev, got, want)
	}
	for i := range want {
		if !got[i].equal(want[i]) {
			t.Errorf("%s peer %d = %+v, want %+v", dev, i, got[i], want[i])
		}
	}
}

// wantReasons checks that got holds, for each subnet of want, a reason
// containing want's words; what names the map in errors.
func wantReasons(t *testing.T, what string, got map[netip.Prefix]string, want map[string]string) {
	t.Helper()
	for subnet, why := range want {
		if r := got[netip.MustParsePrefix(subnet)]; !strings.Contains(r, why) {
			t.Errorf("%s %s: %q, want %q", what, subnet, r, why)
		}
	}
}
