package wireguard

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/netconf"
)

var (
	testNet  = netip.MustParsePrefix("10.244.0.0/16")
	testNet6 = netip.MustParsePrefix("fd00:10:244::/56")
)

// dualLease is a dual-stack wireguard lease: v6data is its BackendV6Data
// ("" for none), pub6 its PublicIPv6 ("" for none).
func dualLease(subnet, subnet6, pub, pub6 string, key Key, v6data string) lease.Lease {
	l := wgLease(subnet, pub, key, 51820)
	l.IPv6Subnet = netip.MustParsePrefix(subnet6)
	if pub6 != "" {
		l.Attrs.PublicIPv6 = netip.MustParseAddr(pub6)
	}
	if v6data != "" {
		l.Attrs.BackendV6Data = json.RawMessage(v6data)
	}
	return l
}

func v6data(key Key, port int) string {
	return `{"PublicKey":"` + key.String() + `","Port":` + itoa(port) + `}`
}

func settings(t *testing.T, raw string) Settings {
	t.Helper()
	s, err := ParseSettings(json.RawMessage(raw), 1500)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func peerOf(id string, allowed []string, endpoint string, key Key) peer {
	p := peer{ID: netip.MustParsePrefix(id), Endpoint: netip.MustParseAddrPort(endpoint), Key: key}
	for _, a := range allowed {
		p.Allowed = append(p.Allowed, netip.MustParsePrefix(a))
	}
	return p
}

// Every Mode flannel knows parses; a Mode that names a family the config
// disables, or an MTU that leaves a device carrying IPv6 under 1280, is
// refused naming the option.
func TestCheckFamilies(t *testing.T) {
	dual := &netconf.Config{EnableIPv4: true, EnableIPv6: true}
	v4only := &netconf.Config{EnableIPv4: true}
	v6only := &netconf.Config{EnableIPv6: true}
	for _, c := range []struct {
		raw   string
		cfg   *netconf.Config
		field string // "" for none
	}{
		{`{"Mode":"separate"}`, dual, ""},
		{`{"Mode":"auto"}`, dual, ""},
		{`{"Mode":"ipv4"}`, dual, ""},
		{`{"Mode":"ipv6"}`, dual, ""},
		{`{"Mode":"auto"}`, v6only, ""},
		{`{"Mode":"ipv6"}`, v6only, ""},
		{`{"Mode":"ipv4"}`, v6only, `Mode "ipv4"`},
		{`{"Mode":"ipv6"}`, v4only, `Mode "ipv6"`},
		{`{"MTU":1300}`, v4only, ""},
		{`{"MTU":1300}`, dual, "MTU 1300"},
		{`{"MTU":1360}`, v6only, ""},
	} {
		s, err := parseOptions(json.RawMessage(c.raw))
		if err != nil {
			t.Fatalf("%s: %v", c.raw, err)
		}
		err = s.CheckFamilies(c.cfg)
		switch {
		case c.field == "" && err != nil:
			t.Errorf("%s with %+v: %v", c.raw, c.cfg, err)
		case c.field != "" && (err == nil || !strings.Contains(err.Error(), c.field)):
			t.Errorf("%s with %+v: err %v, want one naming %q", c.raw, c.cfg, err, c.field)
		}
	}
	if _, err := parseOptions(json.RawMessage(`{"Mode":"both"}`)); err == nil || !strings.Contains(err.Error(), `Mode "both"`) {
		t.Errorf("Mode both: %v", err)
	}
}

// Mode separate runs flannel-wg for IPv4 on ListenPort and flannel-wg-v6
// for IPv6 on ListenPortV6; the other modes run flannel-wg alone for
// both, on ListenPort.
func TestDevices(t *testing.T) {
	render := func(ds []DevSpec) string {
		var parts []string
		for _, d := range ds {
			var ns []string
			for _, n := range d.Networks {
				ns = append(ns, n.String())
			}
			parts = append(parts, d.Name+":"+itoa(d.Port)+":"+strings.Join(ns, ",")+":"+d.Socket)
		}
		return strings.Join(parts, " ")
	}
	var none netip.Prefix
	for _, c := range []struct {
		raw               string
		network, network6 netip.Prefix
		want              string
	}{
		{`{}`, testNet, none, "flannel-wg:51820:10.244.0.0/16:flannel-wg.sock"},
		{`{}`, testNet, testNet6, "flannel-wg:51820:10.244.0.0/16:flannel-wg.sock flannel-wg-v6:51821:fd00:10:244::/56:flannel-wg-v6.sock"},
		{`{"ListenPortV6":6000}`, none, testNet6, "flannel-wg-v6:6000:fd00:10:244::/56:flannel-wg-v6.sock"},
		{`{"Mode":"auto"}`, testNet, testNet6, "flannel-wg:51820:10.244.0.0/16,fd00:10:244::/56:flannel-wg.sock"},
		{`{"Mode":"ipv6","ListenPort":7000}`, none, testNet6, "flannel-wg:7000:fd00:10:244::/56:flannel-wg.sock"},
	} {
		if got := render(settings(t, c.raw).Devices(c.network, c.network6)); got != c.want {
			t.Errorf("%s %v %v: %s, want %s", c.raw, c.network, c.network6, got, c.want)
		}
	}
}

// A single device reaches a peer with one public address at it; with
// both, ipv4 and ipv6 pick theirs and auto decides as flannel does.
func TestPickEndpoint(t *testing.T) {
	a := netip.MustParseAddr
	var none netip.Addr
	priv4, pub4 := a("192.168.0.2"), a("203.0.113.2")
	ula6, glob6 := a("fd70::2"), a("2001:db8::2")
	own4, ownULA, ownGlob := a("192.168.0.1"), a("fd70::1"), a("2001:db8::1")
	for _, c := range []struct {
		mode             string
		pub4, pub6       netip.Addr
		own4, own6, want netip.Addr
	}{
		{ModeAuto, priv4, none, own4, ownGlob, priv4},
		{ModeAuto, none, ula6, none, ownULA, ula6},
		{ModeIPv6, priv4, none, own4, ownGlob, priv4}, // a peer on an IPv4-only config
		{ModeIPv4, priv4, glob6, own4, ownGlob, priv4},
		{ModeIPv6, pub4, ula6, own4, ownULA, ula6},
		{ModeAuto, pub4, glob6, own4, ownGlob, pub4},                 // public IPv4 first
		{ModeAuto, pub4, glob6, none, ownGlob, glob6},                // no IPv4 here
		{ModeAuto, priv4, glob6, own4, ownGlob, glob6},               // private IPv4, global IPv6 both sides
		{ModeAuto, priv4, glob6, own4, ownULA, priv4},                // this host's IPv6 is private
		{ModeAuto, priv4, ula6, own4, ownGlob, priv4},                // the peer's IPv6 is private
		{ModeAuto, priv4, glob6, own4, none, priv4},                  // no IPv6 here
		{ModeAuto, a("10.1.2.3"), ula6, own4, ownULA, a("10.1.2.3")}, // all private: IPv4
	} {
		if got := pickEndpoint(c.mode, c.pub4, c.pub6, c.own4, c.own6); got != c.want {
			t.Errorf("%s %v/%v from %v/%v: %v, want %v", c.mode, c.pub4, c.pub6, c.own4, c.own6, got, c.want)
		}
	}
}

// Mode separate: a dual-stack peer is a peer of flannel-wg at
// PublicIP:Port with its IPv4 subnet and of flannel-wg-v6 at
// [PublicIPv6]:its BackendV6Data's Port with its IPv6 subnet. A peer on an
// IPv4-only config is on flannel-wg alone, unrefused; a bad IPv6 half
// (no PublicIPv6, no or a bad BackendV6Data, another peer's key) is
// refused alone and the peer keeps flannel-wg.
func TestDesireDualStackSeparate(t *testing.T) {
	own := dualLease("10.244.1.0/24", "fd00:10:244:1::/64", "192.168.0.1", "fd70::1", mustKey(t, 1), v6data(mustKey(t, 1), 51821))
	leases := []lease.Lease{
		own,
		dualLease("10.244.2.0/24", "fd00:10:244:2::/64", "192.168.0.2", "fd70::2", mustKey(t, 2), v6data(mustKey(t, 2), 51999)),
		wgLease("10.244.3.0/24", "192.168.0.3", mustKey(t, 3), 51820), // IPv4-only config
		dualLease("10.244.4.0/24", "fd00:10:244:4::/64", "192.168.0.4", "", mustKey(t, 4), v6data(mustKey(t, 4), 51821)),
		dualLease("10.244.5.0/24", "fd00:10:244:5::/64", "192.168.0.5", "fd70::5", mustKey(t, 5), ""),
		dualLease("10.244.6.0/24", "fd00:10:244:6::/64", "192.168.0.6", "fd70::6", mustKey(t, 6), `{"PublicKey":"x"}`),
		dualLease("10.244.7.0/24", "fd00:10:244:7::/64", "192.168.0.7", "fd70::7", mustKey(t, 7), v6data(mustKey(t, 2), 51821)),
		dualLease("10.244.8.0/24", "fd00:10:244:8::/64", "192.168.0.8", "fd70::8", mustKey(t, 8), v6data(mustKey(t, 8), 0)),
	}
	p := plan{set: settings(t, `{}`), network: testNet, network6: testNet6, own: own,
		ownPublicIP: netip.MustParseAddr("192.168.0.1"), ownPublicIPv6: netip.MustParseAddr("fd70::1"), ownKey: mustKey(t, 1)}
	st := desire(p, leases)
	var v4 []peer
	for _, i := range []int{2, 3, 4, 5, 6, 7, 8} {
		s := "10.244." + itoa(i) + ".0/24"
		v4 = append(v4, peerOf(s, []string{s}, "192.168.0."+itoa(i)+":51820", mustKey(t, byte(i))))
	}
	wantPeers(t, DeviceName, st.devs[DeviceName], v4)
	wantPeers(t, DeviceNameV6, st.devs[DeviceNameV6], []peer{
		peerOf("10.244.2.0/24", []string{"fd00:10:244:2::/64"}, "[fd70::2]:51999", mustKey(t, 2)),
		peerOf("10.244.8.0/24", []string{"fd00:10:244:8::/64"}, "[fd70::8]:51821", mustKey(t, 8)), // no Port: ListenPortV6
	})
	if len(st.refused) != 0 {
		t.Errorf("refused = %v", st.refused)
	}
	wantReasons(t, "IPv6 half refused", st.refusedV6, map[string]string{
		"10.244.4.0/24": "no PublicIPv6",
		"10.244.5.0/24": "no BackendV6Data",
		"10.244.6.0/24": "BackendV6Data",
		"10.244.7.0/24": "public key of the peer with subnet 10.244.2.0/24",
	})
	if len(st.refusedV6) != 4 || len(st.errs) != 4 {
		t.Errorf("refusedV6 = %v, errs = %v", st.refusedV6, st.errs)
	}
}

// Mode auto: one peer of flannel-wg per lease, both subnets allowed,
// reached at the endpoint pickEndpoint chooses on that family's port. A
// peer whose BackendV6Data names another key than its BackendData keeps
// its IPv4 subnet alone; one without BackendV6Data is its BackendData's
// device.
func TestDesireDualStackAuto(t *testing.T) {
	own := dualLease("10.244.1.0/24", "fd00:10:244:1::/64", "192.168.0.1", "2001:db8::1", mustKey(t, 1), v6data(mustKey(t, 1), 51820))
	leases := []lease.Lease{
		own,
		dualLease("10.244.2.0/24", "fd00:10:244:2::/64", "192.168.0.2", "fd70::2", mustKey(t, 2), v6data(mustKey(t, 2), 51820)),
		dualLease("10.244.3.0/24", "fd00:10:244:3::/64", "192.168.0.3", "2001:db8::3", mustKey(t, 3), v6data(mustKey(t, 3), 52000)),
		dualLease("10.244.4.0/24", "fd00:10:244:4::/64", "192.168.0.4", "fd70::4", mustKey(t, 4), v6data(mustKey(t, 9), 51820)),
		dualLease("10.244.5.0/24", "fd00:10:244:5::/64", "192.168.0.5", "fd70::5", mustKey(t, 5), ""),
		wgLease("10.244.6.0/24", "192.168.0.6", mustKey(t, 6), 51820),
	}
	p := plan{set: settings(t, `{"Mode":"auto"}`), network: testNet, network6: testNet6, own: own,
		ownPublicIP: netip.MustParseAddr("192.168.0.1"), ownPublicIPv6: netip.MustParseAddr("2001:db8::1"), ownKey: mustKey(t, 1)}
	st := desire(p, leases)
	wantPeers(t, DeviceName, st.devs[DeviceName], []peer{
		peerOf("10.244.2.0/24", []string{"10.244.2.0/24", "fd00:10:244:2::/64"}, "192.168.0.2:51820", mustKey(t, 2)),
		peerOf("10.244.3.0/24", []string{"10.244.3.0/24", "fd00:10:244:3::/64"}, "[2001:db8::3]:52000", mustKey(t, 3)),
		peerOf("10.244.4.0/24", []string{"10.244.4.0/24"}, "192.168.0.4:51820", mustKey(t, 4)),
		peerOf("10.244.5.0/24", []string{"10.244.5.0/24", "fd00:10:244:5::/64"}, "192.168.0.5:51820", mustKey(t, 5)),
		peerOf("10.244.6.0/24", []string{"10.244.6.0/24"}, "192.168.0.6:51820", mustKey(t, 6)),
	})
	if len(st.devs) != 1 {
		t.Errorf("devices: %v", st.devs)
	}
	if got := st.refusedV6[netip.MustParsePrefix("10.244.4.0/24")]; !strings.Contains(got, "one device (flannel-wg) carries both families") || len(st.refusedV6) != 1 {
		t.Errorf("refusedV6 = %v", st.refusedV6)
	}
}

// An IPv6-only network: leases are their IPv6 halves, keyed by their IPv6
// subnet, on flannel-wg-v6 (separate) or flannel-wg (auto); a bad one is
// refused whole.
func TestDesireIPv6Only(t *testing.T) {
	v6lease := func(subnet6, pub6 string, key Key, data string) lease.Lease {
		l := lease.Lease{IPv6Subnet: netip.MustParsePrefix(subnet6), Attrs: lease.Attrs{BackendType: BackendType}}
		if pub6 != "" {
			l.Attrs.PublicIPv6 = netip.MustParseAddr(pub6)
		}
		if data != "" {
			l.Attrs.BackendV6Data = json.RawMessage(data)
		}
		return l
	}
	own := v6lease("fd00:10:244:1::/64", "fd70::1", mustKey(t, 1), v6data(mustKey(t, 1), 51821))
	leases := []lease.Lease{
		own,
		v6lease("fd00:10:244:2::/64", "fd70::2", mustKey(t, 2), v6data(mustKey(t, 2), 51821)),
		v6lease("fd00:10:244:3::/64", "", mustKey(t, 3), v6data(mustKey(t, 3), 51821)),
		v6lease("fd00:10:244:4::/64", "fd70::4", mustKey(t, 4), ""),
		v6lease("fd00:10:244:5::/64", "fd70::5", mustKey(t, 5), v6data(mustKey(t, 1), 51821)),
	}
	for _, c := range []struct {
		mode, dev, endpoint string
	}{{ModeSeparate, DeviceNameV6, "[fd70::2]:51821"}, {ModeAuto, DeviceName, "[fd70::2]:51821"}, {ModeIPv6, DeviceName, "[fd70::2]:51821"}} {
		p := plan{set: settings(t, `{"Mode":"`+c.mode+`"}`), network6: testNet6, own: own, ownPublicIPv6: netip.MustParseAddr("fd70::1"), ownKey: mustKey(t, 1)}
		st := desire(p, leases)
		wantPeers(t, c.mode+" "+c.dev, st.devs[c.dev], []peer{peerOf("fd00:10:244:2::/64", []string{"fd00:10:244:2::/64"}, c.endpoint, mustKey(t, 2))})
		wantReasons(t, c.mode+" refused", st.refused, map[string]string{
			"fd00:10:244:3::/64": "no PublicIPv6",
			"fd00:10:244:4::/64": "no BackendV6Data",
			"fd00:10:244:5::/64": "own public key",
		})
		if len(st.refusedV6) != 0 || len(st.devs) != 1 {
			t.Errorf("%s: refusedV6 %v, devices %v", c.mode, st.refusedV6, st.devs)
		}
	}
}

// The lease carries flannel's BackendData for flannel-wg and, with IPv6,
// BackendV6Data for the device that carries IPv6: one key, that device's
// port; an IPv6-only host publishes no BackendData.
func TestLeaseDataByMode(t *testing.T) {
	for _, c := range []struct {
		mode        string
		v4, v6      bool
		data, data6 string // ports; "" for none
	}{
		{ModeSeparate, true, false, "51820", ""},
		{ModeSeparate, true, true, "51820", "51821"},
		{ModeAuto, true, true, "51820", "51820"},
		{ModeSeparate, false, true, "", "51821"},
		{ModeIPv6, false, true, "", "51820"},
	} {
		cfg := &netconf.Config{EnableIPv4: c.v4, EnableIPv6: c.v6, BackendType: BackendType, Backend: json.RawMessage(`{"Mode":"` + c.mode + `"}`)}
		if c.v4 {
			cfg.Network = testNet
		}
		if c.v6 {
			cfg.IPv6Network = testNet6
		}
		b, err := NewWithOptions(backend.Config{Network: cfg, StateDir: t.TempDir(), Ext: backend.ExternalInterface{
			Name: "eth0", Index: 2, MTU: 1500, Addr: netip.MustParseAddr("192.168.0.1"), Addr6: netip.MustParseAddr("fd70::1")}}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		form := func(port string) string {
			if port == "" {
				return ""
			}
			return `{"PublicKey":"` + b.PublicKey().String() + `","Port":` + port + `}`
		}
		if _, data := b.LeaseAttrs(); string(data) != form(c.data) {
			t.Errorf("%s v4 %v v6 %v: BackendData %s, want %s", c.mode, c.v4, c.v6, data, form(c.data))
		}
		if data := backend.LeaseV6Data(b); string(data) != form(c.data6) {
			t.Errorf("%s v4 %v v6 %v: BackendV6Data %s, want %s", c.mode, c.v4, c.v6, data, form(c.data6))
		}
	}
}

// status's model per family: each device with MTU − 80 and its networks'
// routes, and a peer whose IPv6 half is refused keeps its row with the
// reason.
func TestWantsDualStack(t *testing.T) {
	own := dualLease("10.244.1.0/24", "fd00:10:244:1::/64", "192.168.0.1", "fd70::1", mustKey(t, 1), v6data(mustKey(t, 1), 51821))
	leases := []lease.Lease{own,
		dualLease("10.244.2.0/24", "fd00:10:244:2::/64", "192.168.0.2", "fd70::2", mustKey(t, 2), v6data(mustKey(t, 2), 51821)),
		dualLease("10.244.3.0/24", "fd00:10:244:3::/64", "192.168.0.3", "", mustKey(t, 3), v6data(mustKey(t, 3), 51821)),
	}
	for _, c := range []struct{ mode, host string }{
		{ModeSeparate, "flannel-wg mtu 1420 up|10.244.0.0/16 dev flannel-wg|flannel-wg-v6 mtu 1420 up|fd00:10:244::/56 dev flannel-wg-v6"},
		{ModeAuto, "flannel-wg mtu 1420 up|10.244.0.0/16 dev flannel-wg|fd00:10:244::/56 dev flannel-wg"},
	} {
		p := plan{set: settings(t, `{"Mode":"`+c.mode+`"}`), network: testNet, network6: testNet6, own: own, ownPublicIP: own.Attrs.PublicIP, ownPublicIPv6: own.Attrs.PublicIPv6}
		w := wants(p, 1420, leases)
		var host []string
		for _, h := range w.Host {
			host = append(host, h.String())
		}
		if got := strings.Join(host, "|"); got != c.host {
			t.Errorf("%s: host wants %s, want %s", c.mode, got, c.host)
		}
		if pw, ok := w.Peers[netip.MustParsePrefix("10.244.2.0/24")]; !ok || pw.Refused != "" || pw.RefusedV6 != "" {
			t.Errorf("%s: peer 2 = %+v", c.mode, pw)
		}
		if pw := w.Peers[netip.MustParsePrefix("10.244.3.0/24")]; pw.Refused != "" || !strings.Contains(pw.RefusedV6, "no PublicIPv6") {
			t.Errorf("%s: peer 3 = %+v", c.mode, pw)
		}
	}
}

// A device's peers that drifted from the desired ones are put back one by
// one: a missing key or one with other allowed IPs is set again, a key no
// lease has is removed, and a peer as wanted (whatever its endpoint,
// which roaming moves) is not touched.
func TestPeerDrift(t *testing.T) {
	set := settings(t, `{}`)
	a := peerOf("10.244.2.0/24", []string{"10.244.2.0/24", "fd00:10:244:2::/64"}, "192.168.0.2:51820", mustKey(t, 2))
	b := peerOf("10.244.3.0/24", []string{"10.244.3.0/24"}, "192.168.0.3:51820", mustKey(t, 3))
	c := peerOf("10.244.4.0/24", []string{"10.244.4.0/24"}, "192.168.0.4:51820", mustKey(t, 4))
	status := func(p peer, endpoint string, allowed ...string) PeerStatus {
		ps := PeerStatus{Key: p.Key, Endpoint: netip.MustParseAddrPort(endpoint)}
		for _, x := range allowed {
			ps.AllowedIPs = append(ps.AllowedIPs, netip.MustParsePrefix(x))
		}
		return ps
	}
	have := []PeerStatus{
		status(a, "10.9.9.9:4000", "fd00:10:244:2::/64", "10.244.2.0/24"), // roamed, allowed IPs in another order
		status(b, "192.168.0.3:51820", "10.244.3.0/25"),                   // allowed IPs changed
		{Key: mustKey(t, 9)}, // no lease
	}
	text, fixed, removed := peerDrift(have, []peer{a, b, c}, set)
	if removed != 1 || len(fixed) != 2 || !fixed[0].equal(b) || !fixed[1].equal(c) {
		t.Errorf("fixed %+v, removed %d", fixed, removed)
	}
	want := "public_key=" + mustKey(t, 9).hex() + "\nremove=true\n" +
		"public_key=" + mustKey(t, 3).hex() + "\nendpoint=192.168.0.3:51820\npersistent_keepalive_interval=0\nreplace_allowed_ips=true\nallowed_ip=10.244.3.0/24\n" +
		"public_key=" + mustKey(t, 4).hex() + "\nendpoint=192.168.0.4:51820\npersistent_keepalive_interval=0\nreplace_allowed_ips=true\nallowed_ip=10.244.4.0/24\n"
	if text != want {
		t.Errorf("drift text:\n%s\nwant:\n%s", text, want)
	}
	if text, _, _ := peerDrift(have[:1], []peer{a}, set); text != "" {
		t.Errorf("no drift: %q", text)
	}
}

// Admission on an IPv6-only network: a peer's lease publishes
// BackendV6Data alone, and its key there is the peer's identity; a lease
// without usable BackendV6Data is no peer. On a network with IPv4 the
// identity stays BackendData's key.
func TestLeaseCheckIPv6Only(t *testing.T) {
	k := mustKey(t, 7)
	v6data := json.RawMessage(`{"PublicKey":"` + k.String() + `","Port":51821}`)
	check, err := leaseCheck(&netconf.Config{EnableIPv6: true, BackendType: BackendType})
	if err != nil {
		t.Fatal(err)
	}
	l := lease.Lease{IPv6Subnet: netip.MustParsePrefix("fd00:10:244:1::/64")}
	l.Attrs.PublicIPv6 = netip.MustParseAddr("fd00:10:4:7::21")
	l.Attrs.BackendV6Data = v6data
	if id, err := check(l); err != nil || id != "PublicKey "+k.String() {
		t.Errorf("IPv6-only lease: %q, %v", id, err)
	}
	l.Attrs.BackendV6Data = nil
	if _, err := check(l); err == nil || !strings.Contains(err.Error(), "BackendV6Data") {
		t.Errorf("IPv6-only lease without BackendV6Data: %v", err)
	}

	check, err = leaseCheck(&netconf.Config{EnableIPv4: true, EnableIPv6: true, BackendType: BackendType})
	if err != nil {
		t.Fatal(err)
	}
	l.Attrs.BackendV6Data = v6data
	if _, err := check(l); err == nil {
		t.Error("a dual-stack network took a lease without BackendData")
	}
}
