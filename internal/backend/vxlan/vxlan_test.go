package vxlan

import (
	"encoding/json"
	"errors"
	"io/fs"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/backend/backendtest"
	"github.com/weftnet/weft/internal/kernel"
	"github.com/weftnet/weft/internal/lease"
)

var testNetwork = netip.MustParsePrefix("10.244.0.0/16")

func TestParseSettings(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  string
		want Settings
		err  string
	}{
		{name: "defaults", raw: `{"Type":"vxlan"}`, want: Settings{VNI: 1, MTU: 1500}},
		{name: "no object", raw: ``, want: Settings{VNI: 1, MTU: 1500}},
		{
			name: "all set",
			raw:  `{"Type":"vxlan","VNI":42,"Port":4789,"GBP":true,"Learning":true,"MTU":9000,"DirectRouting":true}`,
			want: Settings{VNI: 42, Port: 4789, GBP: true, Learning: true, MTU: 9000, DirectRouting: true},
		},
		{
			name: "keys match case-insensitively, unknown keys ignored",
			raw:  `{"type":"VXLAN","vni":7,"port":8472,"directrouting":true,"mtu":1400,"Flavour":"x"}`,
			want: Settings{VNI: 7, Port: 8472, MTU: 1400, DirectRouting: true},
		},
		{name: "explicit VNI 0 is flannel.0", raw: `{"VNI":0}`, want: Settings{VNI: 0, MTU: 1500}},
		{name: "negative VNI", raw: `{"VNI":-1}`, err: "vxlan option VNI -1: must be between 0 and 16777215"},
		{name: "VNI too large", raw: `{"VNI":16777216}`, err: "vxlan option VNI 16777216: must be between 0 and 16777215"},
		{name: "VNI makes the name too long", raw: `{"VNI":10000000}`, err: "the device name flannel.10000000 would be longer than the kernel's 15 bytes"},
		{name: "port", raw: `{"Port":70000}`, err: "vxlan option Port 70000"},
		{name: "MTU too small", raw: `{"MTU":117}`, err: "vxlan MTU 117: must be between 118 and 65535"},
		{name: "not an object", raw: `[1]`, err: "vxlan options [1]:"},
		{name: "wrong type", raw: `{"VNI":"one"}`, err: `vxlan options {"VNI":"one"}:`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSettings(json.RawMessage(tc.raw), 1500)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestLeaseDataIsFlannelsExactForm(t *testing.T) {
	mac := kernel.MAC{0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF}
	if got, want := string(leaseData(1, mac)), `{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}`; got != want {
		t.Errorf("leaseData = %s, want %s", got, want)
	}
	if got, want := string(leaseData(4096, mac)), `{"VNI":4096,"VtepMAC":"aa:bb:cc:dd:ee:ff"}`; got != want {
		t.Errorf("leaseData = %s, want %s", got, want)
	}
}

func TestParsePeerData(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want string // MAC, or the error's text
	}{
		{`{"VNI":1,"VtepMAC":"0e:11:22:33:44:55"}`, "0e:11:22:33:44:55"},
		{`{"vni":1,"vtepmac":"0E:11:22:33:44:55"}`, "0e:11:22:33:44:55"},
		{`{"VtepMAC":"0e-11-22-33-44-55","Extra":true}`, "0e:11:22:33:44:55"},
		{``, "it has no BackendData"},
		{`null`, "it has no BackendData"},
		{`{"VNI":1}`, `BackendData {"VNI":1} has no VtepMAC`},
		{`not json`, "BackendData not json: invalid character"},
		{`{"VNI":1,"VtepMAC":"zz:11:22:33:44:55"}`, `BackendData {"VNI":1,"VtepMAC":"zz:11:22:33:44:55"}: VtepMAC: address zz:11:22:33:44:55: invalid MAC address`},
		{`{"VtepMAC":"00:00:5e:00:53:00:00:01"}`, "not a 6-byte Ethernet address"},
		{`{"VtepMAC":"01:00:5e:00:00:01"}`, "VtepMAC 01:00:5e:00:00:01 is not a unicast address"},
		{`{"VtepMAC":"00:00:00:00:00:00"}`, "is not a unicast address"},
	} {
		mac, err := parsePeerData(json.RawMessage(tc.raw))
		got := mac.String()
		if err != nil {
			got = err.Error()
		}
		if !strings.Contains(got, tc.want) || (err == nil) != (tc.want == mac.String()) {
			t.Errorf("parsePeerData(%s) = %q, want %q", tc.raw, got, tc.want)
		}
	}
}

func vxLease(subnet, publicIP, mac string) lease.Lease {
	l := lease.Lease{Subnet: netip.MustParsePrefix(subnet), Attrs: lease.Attrs{BackendType: BackendType}}
	if publicIP != "" {
		l.Attrs.PublicIP = netip.MustParseAddr(publicIP)
	}
	if mac != "" {
		l.Attrs.BackendData = leaseData(1, mustMAC(mac))
	}
	return l
}

func mustMAC(s string) kernel.MAC {
	m, err := kernel.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func TestDesire(t *testing.T) {
	own := vxLease("10.244.1.0/24", "192.168.1.1", "0e:00:00:00:00:01")
	garbage := vxLease("10.244.7.0/24", "192.168.1.7", "")
	garbage.Attrs.BackendData = json.RawMessage(`{"VNI":1,"VtepMAC":"nope"}`)
	hostgw := vxLease("10.244.8.0/24", "192.168.1.8", "")
	hostgw.Attrs.BackendType = "host-gw"
	udp := vxLease("10.244.9.0/24", "192.168.1.9", "")
	udp.Attrs.BackendType = ""
	leases := []lease.Lease{
		vxLease("10.244.3.0/24", "192.168.1.3", "0e:00:00:00:00:03"),
		own,
		vxLease("10.244.2.0/24", "192.168.1.2", "0e:00:00:00:00:02"),
		garbage,
		hostgw,
		udp,
		vxLease("10.244.4.0/24", "192.168.1.4", "0e:00:00:00:00:02"), // MAC of .2
		vxLease("10.244.5.0/24", "192.168.1.1", "0e:00:00:00:00:05"), // own PublicIP
		vxLease("10.244.6.0/24", "192.168.1.6", "0e:00:00:00:00:01"), // own MAC
		vxLease("10.99.0.0/24", "192.168.1.10", "0e:00:00:00:00:10"),
		vxLease("10.244.1.128/25", "192.168.1.11", "0e:00:00:00:00:11"),
		vxLease("10.244.12.0/24", "", "0e:00:00:00:00:12"),
	}
	st := desire(testNetwork, own, netip.MustParseAddr("192.168.1.1"), mustMAC("0e:00:00:00:00:01"), leases)

	want := []peer{
		{Subnet: netip.MustParsePrefix("10.244.2.0/24"), PublicIP: netip.MustParseAddr("192.168.1.2"), MAC: mustMAC("0e:00:00:00:00:02")},
		{Subnet: netip.MustParsePrefix("10.244.3.0/24"), PublicIP: netip.MustParseAddr("192.168.1.3"), MAC: mustMAC("0e:00:00:00:00:03")},
	}
	if !slices.Equal(st.peers, want) {
		t.Errorf("peers = %+v\nwant %+v", st.peers, want)
	}
	if len(st.ignored) != 2 || st.ignored[netip.MustParsePrefix("10.244.8.0/24")].BackendType != "host-gw" {
		t.Errorf("ignored = %v, want the host-gw and the type-less lease", st.ignored)
	}
	var errs []string
	for _, e := range st.errs {
		errs = append(errs, e.Error())
	}
	wantErrs := []string{
		"peer 192.168.1.10 (subnet 10.99.0.0/24): skipped: its subnet is not inside the network 10.244.0.0/16",
		"peer 192.168.1.11 (subnet 10.244.1.128/25): skipped: its subnet overlaps this host's 10.244.1.0/24",
		"peer 192.168.1.4 (subnet 10.244.4.0/24): skipped: its VtepMAC 0e:00:00:00:00:02 is also published by the peer with subnet 10.244.2.0/24",
		"peer 192.168.1.1 (subnet 10.244.5.0/24): skipped: it carries this host's own PublicIP but is not this host's lease",
		"peer 192.168.1.6 (subnet 10.244.6.0/24): skipped: its VtepMAC 0e:00:00:00:00:01 is this host's own",
		`peer 192.168.1.7 (subnet 10.244.7.0/24): skipped: BackendData {"VNI":1,"VtepMAC":"nope"}: VtepMAC: address nope: invalid MAC address`,
		"peer none (subnet 10.244.12.0/24): skipped: it has no IPv4 PublicIP",
	}
	if !slices.Equal(errs, wantErrs) {
		t.Errorf("errs:\n%s\nwant:\n%s", strings.Join(errs, "\n"), strings.Join(wantErrs, "\n"))
	}
}

func TestEntries(t *testing.T) {
	peers := []peer{
		{Subnet: netip.MustParsePrefix("10.244.2.0/24"), PublicIP: netip.MustParseAddr("192.168.1.2"), MAC: mustMAC("0e:00:00:00:00:02")},
		{Subnet: netip.MustParsePrefix("10.244.3.0/24"), PublicIP: netip.MustParseAddr("192.168.2.3"), MAC: mustMAC("0e:00:00:00:00:03")},
	}
	neighs, fdbs, routes := entries(peers, 9, map[netip.Prefix]int{netip.MustParsePrefix("10.244.2.0/24"): 2})
	str := func(xs any) []string {
		var out []string
		switch v := xs.(type) {
		case []kernel.Neigh:
			for _, x := range v {
				out = append(out, x.String())
			}
		case []kernel.FDB:
			for _, x := range v {
				out = append(out, x.String())
			}
		case []kernel.Route:
			for _, x := range v {
				out = append(out, x.String())
			}
		}
		return out
	}
	for _, c := range []struct {
		what      string
		got, want []string
	}{
		{"neighbours", str(neighs), []string{"10.244.3.0 lladdr 0e:00:00:00:00:03 dev if9 nud permanent"}},
		{"fdb", str(fdbs), []string{"0e:00:00:00:00:03 dev if9 dst 192.168.2.3 self permanent"}},
		{"routes", str(routes), []string{
			"10.244.2.0/24 via 192.168.1.2 dev if2 proto weft",
			"10.244.3.0/24 via 10.244.3.0 dev if9 proto weft onlink",
		}},
	} {
		if !slices.Equal(c.got, c.want) {
			t.Errorf("%s:\n%s\nwant:\n%s", c.what, strings.Join(c.got, "\n"), strings.Join(c.want, "\n"))
		}
	}
}

func TestIncompatibility(t *testing.T) {
	want := deviceAttrs{Type: "vxlan", VNI: 1, VtepIndex: 2, Local: netip.MustParseAddr("192.168.1.1")}
	for _, tc := range []struct {
		name string
		mod  func(*deviceAttrs)
		want string
	}{
		{"same", func(*deviceAttrs) {}, ""},
		{"kernel reports its default port", func(d *deviceAttrs) { d.Port = 8472 }, ""},
		{"other port", func(d *deviceAttrs) { d.Port = 4789 }, "dstport 4789, want 8472"},
		{"other kind", func(d *deviceAttrs) { *d = deviceAttrs{Type: "bridge"} }, "it is a bridge device, not vxlan"},
		{"several", func(d *deviceAttrs) {
			d.VNI, d.VtepIndex, d.Local, d.Learning = 2, 3, netip.MustParseAddr("192.168.1.9"), true
		}, "vni 2, want 1; dev index 3, want 2; local 192.168.1.9, want 192.168.1.1; learning true, want false"},
		{"group", func(d *deviceAttrs) { d.Group = netip.MustParseAddr("239.1.1.1") }, "group 239.1.1.1, want invalid IP"},
		{"gbp and l2miss", func(d *deviceAttrs) { d.GBP, d.L2miss = true, true }, "gbp true, want false; l2miss true, want false"},
	} {
		have := want
		tc.mod(&have)
		if got := incompatibility(want, have); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	// A wanted explicit 8472 matches a device made with the default.
	w := want
	w.Port = 8472
	if got := incompatibility(w, want); got != "" {
		t.Errorf("explicit 8472 vs default: %q", got)
	}
}

func TestChooseMAC(t *testing.T) {
	file, dev, gen := mustMAC("0e:00:00:00:00:0f"), mustMAC("0e:00:00:00:00:0d"), mustMAC("0e:00:00:00:00:0a")
	pub := mustMAC("0e:00:00:00:00:0b")
	g := func() kernel.MAC { return gen }
	missing := fs.ErrNotExist
	for _, tc := range []struct {
		name    string
		file    kernel.MAC
		fileErr error
		dev     kernel.MAC
		pub     kernel.MAC
		want    kernel.MAC
		source  string
	}{
		{"file wins over the device", file, nil, dev, pub, file, "file"},
		{"device adopted without a file", kernel.MAC{}, missing, dev, pub, dev, "device"},
		{"device adopted over a broken file", kernel.MAC{}, errors.New("garbage"), dev, kernel.MAC{}, dev, "device"},
		{"published MAC after a reboot wiped file and device", kernel.MAC{}, missing, kernel.MAC{}, pub, pub, "published"},
		{"generated without any", kernel.MAC{}, missing, kernel.MAC{}, kernel.MAC{}, gen, "generated"},
		{"a multicast device MAC is not adopted", kernel.MAC{}, missing, mustMAC("01:00:00:00:00:01"), kernel.MAC{}, gen, "generated"},
	} {
		got, source := chooseMAC(tc.file, tc.fileErr, tc.dev, tc.pub, g)
		if got != tc.want || source != tc.source {
			t.Errorf("%s: %s from %s, want %s from %s", tc.name, got, source, tc.want, tc.source)
		}
	}
}

func TestRandomMACIsLocalUnicast(t *testing.T) {
	seen := make(map[kernel.MAC]bool)
	for range 200 {
		m := randomMAC()
		if m[0]&0x01 != 0 || m[0]&0x02 == 0 {
			t.Fatalf("%s is not a locally administered unicast address", m)
		}
		seen[m] = true
	}
	if len(seen) < 195 {
		t.Errorf("only %d distinct MACs in 200", len(seen))
	}
}

func TestMACFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run", "flannel") // does not exist yet
	path := filepath.Join(dir, MACFileName(1))
	if filepath.Base(path) != "weft-vtep-flannel.1.mac" {
		t.Errorf("file name %s", filepath.Base(path))
	}
	if _, err := readMACFile(path); !isNotExist(err) {
		t.Errorf("missing file: %v, want fs.ErrNotExist", err)
	}
	mac := mustMAC("0e:ab:cd:ef:01:23")
	if err := writeMACFile(path, mac); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil || string(raw) != "0e:ab:cd:ef:01:23\n" {
		t.Errorf("file holds %q (%v)", raw, err)
	}
	if got, err := readMACFile(path); err != nil || got != mac {
		t.Errorf("read back %s, %v", got, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d files, want only the MAC file", len(entries))
	}
	for content, want := range map[string]string{
		"garbage\n":             "invalid MAC address",
		"ff:ff:ff:ff:ff:ff\n":   "is not a unicast address",
		"00:00:00:00:00:00":     "is not a unicast address",
		" 0E:AB:CD:EF:01:23 \n": "",
	} {
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := readMACFile(path)
		if (want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), want)) {
			t.Errorf("file %q: %v, want %q", content, err, want)
		}
	}
}

// For any set of leases, the Wants status gets are exactly the entries
// desire and entries plan, grouped under the peer they are for; a subnet
// whose every lease PeerProblem refuses gets none.
func TestWantsAreThePlan(t *testing.T) {
	ownMAC := mustMAC("0a:00:00:00:01:05") // also in RandomLeases' pool
	own := backendtest.Own
	own.Attrs.BackendType, own.Attrs.BackendData = BackendType, leaseData(1, ownMAC)
	for seed := range uint64(300) {
		r := rand.New(rand.NewPCG(seed, 2))
		leases := append(backendtest.RandomLeases(r, 1+r.IntN(40), []string{BackendType, BackendType, "host-gw"}), own)
		r.Shuffle(len(leases), func(i, j int) { leases[i], leases[j] = leases[j], leases[i] })
		set := Settings{VNI: 1, MTU: 1500, DirectRouting: r.IntN(2) == 0}
		direct := make(map[netip.Addr]string)
		for i := range 40 {
			if r.IntN(3) == 0 {
				direct[netip.AddrFrom4([4]byte{192, 168, 1, byte(2 + i)})] = []string{"eth0", "eth1"}[r.IntN(2)]
			}
		}

		w := wants(testNetwork, set, "flannel.1", 1450, own, backendtest.OwnPublicIP, leases, direct)
		wantHost := []backend.Want{
			{Kind: backend.KindDevice, Dev: "flannel.1", MTU: 1450, MAC: ownMAC},
			{Kind: backend.KindAddr, Dev: "flannel.1", Dst: netip.MustParsePrefix("10.244.1.0/32")},
		}
		if !slices.Equal(w.Host, wantHost) {
			t.Fatalf("seed %d: host wants %v", seed, w.Host)
		}

		// The planner's output, with real link indexes.
		st := desire(testNetwork, own, backendtest.OwnPublicIP, ownMAC, leases)
		links := map[string]int{"flannel.1": 5, "eth0": 2, "eth1": 3}
		var directIdx map[netip.Prefix]int
		if set.DirectRouting {
			directIdx = make(map[netip.Prefix]int)
			for _, p := range st.peers {
				if dev, ok := direct[p.PublicIP]; ok {
					directIdx[p.Subnet] = links[dev]
				}
			}
		}
		neighs, fdbs, routes := entries(st.peers, 5, directIdx)
		plan := backend.EntryWants(map[int]string{5: "flannel.1", 2: "eth0", 3: "eth1"}, routes, neighs, fdbs)

		got, err := backendtest.PeerWants(w, leases, own.Subnet, []string{BackendType}, func(subnet netip.Prefix, e backend.Want) bool {
			return (e.Kind != backend.KindRoute || e.Dst == subnet) && (e.Kind != backend.KindNeigh || e.IP == subnet.Addr())
		})
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if !backendtest.SameWants(got, plan) {
			t.Fatalf("seed %d: wants\n%v\nplan\n%v", seed, got, plan)
		}

		for _, l := range leases {
			s := l.Subnet.Masked()
			if l.Attrs.BackendType != BackendType || s == own.Subnet {
				continue
			}
			pw := w.Peers[s]
			if allRefused(leases, s, own) && (pw.Refused == "" || len(pw.Entries) != 0) {
				t.Fatalf("seed %d: PeerProblem refuses every lease of %s, but wants %+v", seed, s, pw)
			}
			if pw.Mismatch != "" && !strings.Contains(pw.Mismatch, "VNI 2 but the network uses VNI 1") {
				t.Fatalf("seed %d: mismatch %q", seed, pw.Mismatch)
			}
		}
	}
}

func allRefused(leases []lease.Lease, subnet netip.Prefix, own lease.Lease) bool {
	for _, l := range leases {
		if l.Attrs.BackendType == BackendType && l.Subnet.Masked() == subnet &&
			backend.PeerProblem(l, testNetwork, own, backendtest.OwnPublicIP) == "" {
			return false
		}
	}
	return true
}

// The options alone: what CheckOptions and status accept. An MTU left out
// stays 0 for the host to fill.
func TestParseOptions(t *testing.T) {
	if s, err := parseOptions(nil); err != nil || s != (Settings{VNI: 1}) {
		t.Errorf("parseOptions(nil) = %+v, %v", s, err)
	}
	for raw, field := range map[string]string{
		`{"VNI":-1}`:       "VNI",
		`{"VNI":10000000}`: "VNI",
		`{"Port":65536}`:   "Port",
		`{"MTU":100}`:      "MTU",
		`{"MTU":70000}`:    "MTU",
	} {
		if _, err := parseOptions(json.RawMessage(raw)); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: err %v, want one naming %s", raw, err, field)
		}
	}
}

func FuzzParseOptions(f *testing.F) {
	for _, s := range []string{``, `{"VNI":1}`, `{"vni":9999999,"port":4789,"mtu":9000,"directrouting":true}`, `{"MTU":117}`, `[1]`, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		s, err := parseOptions(raw)
		if err != nil {
			return
		}
		if s.VNI < 0 || len(DeviceName(s.VNI)) > 15 || s.Port < 0 || s.Port > 65535 || (s.MTU != 0 && checkMTU(s.MTU) != nil) {
			t.Errorf("parseOptions(%q) accepted %+v", raw, s)
		}
		// What the options accept, a host with a sane MTU accepts too.
		if _, err := ParseSettings(raw, 1500); err != nil {
			t.Errorf("parseOptions(%q) accepted what ParseSettings refuses: %v", raw, err)
		}
	})
}
