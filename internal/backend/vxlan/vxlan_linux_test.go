package vxlan

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/backend/backendtest"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/metrics"
	"github.com/weftnet/weft/internal/netconf"
	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/nstest"
)

// The integration tests run on backendtest.Hosts, on one L2 segment or on
// two joined by a router: host i has eth0 192.168.70.i (192.168.71.i on
// the second segment) and pod address 10.244.i.1 on cni0, and leases
// 10.244.i.0/24; its backend makes flannel.1 with 10.244.i.0.

var network = backendtest.Network

type host struct {
	*backendtest.Host
	stateDir string
	logBuf   *backendtest.LogBuffer
	metrics  *metrics.Metrics // nil unless a test counts repairs
	// ipv6 enables IPv6 in the network config: the host leases and
	// publishes its IPv6 subnet too (dualstack_linux_test.go).
	ipv6 bool
	// v6only makes the network config IPv6-only ("EnableIPv4": false):
	// the host leases and publishes its IPv6 half alone
	// (ipv6only_linux_test.go).
	v6only bool
}

// cluster builds perSegment[s] hosts on segment s, numbered on from 1
// across segments.
func cluster(t *testing.T, perSegment ...int) []*host {
	t.Helper()
	n := 0
	for _, size := range perSegment {
		n += size
	}
	var hosts []*host
	for _, bh := range backendtest.Hosts(t, n, backendtest.Options{Segments: perSegment}) {
		hosts = append(hosts, &host{Host: bh, stateDir: t.TempDir(), logBuf: &backendtest.LogBuffer{}})
	}
	return hosts
}

const plainConfig = `{"Type":"vxlan"}`

// build makes a backend for hg from the Backend object conf; Handle and
// Netns are filled in unless o says otherwise.
func (hg *host) build(t *testing.T, conf string, o Options) (*Backend, error) {
	t.Helper()
	return hg.buildWith(t, conf, o, nil)
}

// buildWith is build with what the store published for the IPv6 side
// (backend.Config.PublishedV6).
func (hg *host) buildWith(t *testing.T, conf string, o Options, publishedV6 json.RawMessage) (*Backend, error) {
	t.Helper()
	o.Handle = hg.Handle
	if !o.NoSubscribe {
		o.Netns = &hg.Netns
	}
	if o.ReconcilePeriod == 0 {
		o.ReconcilePeriod = time.Minute
	}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(t.Output(), hg.logBuf), nil)).With("host", hg.NS)
	cfg := &netconf.Config{EnableIPv4: true, Network: network, SubnetLen: 24, BackendType: BackendType, Backend: json.RawMessage(conf)}
	if hg.ipv6 || hg.v6only {
		cfg.EnableIPv6, cfg.IPv6Network, cfg.IPv6SubnetLen = true, backendtest.Network6, 64
	}
	if hg.v6only {
		cfg.EnableIPv4, cfg.Network, cfg.SubnetLen = false, netip.Prefix{}, 0
	}
	return NewWithOptions(backend.Config{
		Ext:         hg.Ext,
		Network:     cfg,
		Log:         log,
		StateDir:    hg.stateDir,
		Metrics:     hg.metrics,
		PublishedV6: publishedV6,
	}, o)
}

// start builds and starts a backend for hg.
func (hg *host) start(t *testing.T, conf string, o Options) *Backend {
	t.Helper()
	b, err := hg.build(t, conf, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(t.Context(), hg.lease(b)); err != nil {
		t.Fatal(err)
	}
	return b
}

// lease is the lease hg publishes with b.
func (hg *host) lease(b *Backend) lease.Lease {
	typ, data := b.LeaseAttrs()
	if hg.v6only {
		return lease.Lease{IPv6Subnet: hg.Subnet6, Attrs: lease.Attrs{PublicIPv6: hg.Ext.PublicIPv6, BackendType: typ, BackendData: data, BackendV6Data: b.LeaseV6Data()}}
	}
	l := lease.Lease{Subnet: hg.Subnet, Attrs: lease.Attrs{PublicIP: hg.Ext.PublicIP, BackendType: typ, BackendData: data}}
	if hg.ipv6 {
		l.IPv6Subnet, l.Attrs.PublicIPv6, l.Attrs.BackendV6Data = hg.Subnet6, hg.Ext.PublicIPv6, b.LeaseV6Data()
	}
	return l
}

// startAll starts a backend on every host and applies every lease on each.
func startAll(t *testing.T, hosts []*host, conf string) ([]*Backend, []lease.Lease) {
	t.Helper()
	var bs []*Backend
	var ls []lease.Lease
	for _, hg := range hosts {
		b := hg.start(t, conf, Options{})
		bs = append(bs, b)
		ls = append(ls, hg.lease(b))
	}
	for i, b := range bs {
		if err := b.Apply(t.Context(), ls); err != nil {
			t.Fatalf("Apply on %s: %v", hosts[i].NS, err)
		}
	}
	return bs, ls
}

// lines runs a command in ns and returns its trimmed non-empty output
// lines, sorted when sorted is set (FDB dumps come in hash order).
func lines(t *testing.T, ns string, sorted bool, args ...string) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(nstest.Exec(t, ns, args...), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	if sorted {
		slices.Sort(out)
	}
	return out
}

// family is one side of the backend as the tests look at it: ip's
// family flag and the side's device.
type family struct{ flag, dev string }

var (
	ipv4 = family{"-4", "flannel.1"}
	ipv6 = family{"-6", "flannel-v6.1"}
)

func neighs(t *testing.T, ns string) []string { return neighsOf(t, ns, ipv4) }

func neighsOf(t *testing.T, ns string, f family) []string {
	return lines(t, ns, true, "ip", f.flag, "neigh", "show", "dev", f.dev, "nud", "permanent")
}

func fdb(t *testing.T, ns string) []string { return fdbOf(t, ns, ipv4) }

func fdbOf(t *testing.T, ns string, f family) []string {
	return lines(t, ns, true, "bridge", "fdb", "show", "dev", f.dev)
}

func weftRoutes(t *testing.T, ns string) []string { return weftRoutesOf(t, ns, ipv4) }

func weftRoutesOf(t *testing.T, ns string, f family) []string {
	return lines(t, ns, false, "ip", f.flag, "route", "show", "proto", "87")
}

// state is everything a host's backend programs, for comparing before and
// after a repair.
func state(t *testing.T, ns string) string { return stateOf(t, ns, ipv4) }

// stateOf is state of one side.
func stateOf(t *testing.T, ns string, f family) string {
	return strings.Join([]string{
		strings.Join(neighsOf(t, ns, f), "\n"),
		strings.Join(fdbOf(t, ns, f), "\n"),
		strings.Join(weftRoutesOf(t, ns, f), "\n"),
		strings.Join(lines(t, ns, false, "ip", f.flag, "-br", "addr", "show", "dev", f.dev, "scope", "global"), "\n"),
	}, "\n--\n")
}

func logs0(hg *host) string { return hg.logBuf.String() }

func linkOf(t *testing.T, hg *host, name string) netlink.Link {
	t.Helper()
	l, err := hg.Handle.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestDeviceAndLeaseAttrs(t *testing.T) {
	hs := cluster(t, 1)
	a := hs[0]
	b, err := a.build(t, plainConfig, Options{})
	if err != nil {
		t.Fatal(err)
	}
	mac := b.VtepMAC().String()
	if mac[1] != '2' && mac[1] != '6' && mac[1] != 'a' && mac[1] != 'e' {
		t.Errorf("generated MAC %s is not a locally administered unicast address", mac)
	}
	typ, data := b.LeaseAttrs()
	if typ != "vxlan" || string(data) != `{"VNI":1,"VtepMAC":"`+mac+`"}` {
		t.Errorf("LeaseAttrs = %s %s", typ, data)
	}
	if b.MTU() != 1450 {
		t.Errorf("MTU() = %d, want 1450", b.MTU())
	}
	raw, err := os.ReadFile(filepath.Join(a.stateDir, "weft-vtep-flannel.1.mac"))
	if err != nil || string(raw) != mac+"\n" {
		t.Errorf("state file holds %q (%v), want %s", raw, err, mac)
	}

	// New created the device already, with the published MAC.
	link := nstest.Exec(t, a.NS, "ip", "-d", "link", "show", "flannel.1")
	for _, want := range []string{
		"mtu 1450 ",
		"link/ether " + mac + " ",
		"vxlan id 1 local 192.168.70.1 dev eth0 srcport 0 0 dstport 8472 nolearning ",
	} {
		if !strings.Contains(link, want) {
			t.Errorf("ip -d link show flannel.1 lacks %q:\n%s", want, link)
		}
	}
	if strings.Contains(link, " gbp") {
		t.Errorf("device has gbp:\n%s", link)
	}
	v := linkOf(t, a, "flannel.1").(*netlink.Vxlan)
	if v.Flags&net.FlagUp == 0 || v.VtepDevIndex != a.Ext.Index || v.Learning || v.GBP || v.Port != 8472 {
		t.Errorf("device %+v", v)
	}

	if err := b.Start(t.Context(), a.lease(b)); err != nil {
		t.Fatal(err)
	}
	addrs := func() []string {
		var out []string
		for _, l := range lines(t, a.NS, false, "ip", "-4", "-o", "addr", "show", "dev", "flannel.1") {
			f := strings.Fields(l)
			out = append(out, strings.Join(f[1:6], " "))
		}
		return out
	}
	backendtest.WantLines(t, "addresses", addrs(), []string{"flannel.1 inet 10.244.1.0/32 scope global"})

	// Addresses inside the network other than the own one go at the next
	// Apply; others stay.
	nstest.Exec(t, a.NS, "ip", "addr", "add", "10.244.9.9/24", "dev", "flannel.1")
	nstest.Exec(t, a.NS, "ip", "addr", "add", "192.0.2.1/32", "dev", "flannel.1")
	if err := b.Apply(t.Context(), []lease.Lease{a.lease(b)}); err != nil {
		t.Fatal(err)
	}
	backendtest.WantLines(t, "addresses after Apply", addrs(), []string{
		"flannel.1 inet 10.244.1.0/32 scope global",
		"flannel.1 inet 192.0.2.1/32 scope global",
	})
}

func TestDeviceOptions(t *testing.T) {
	hs := cluster(t, 1)
	a := hs[0]
	b := a.start(t, `{"type":"vxlan","vni":7,"Port":4789,"GBP":true,"Learning":true,"MTU":1400}`, Options{})
	if b.Device() != "flannel.7" || b.MTU() != 1350 {
		t.Errorf("Device() = %s, MTU() = %d; want flannel.7, 1350", b.Device(), b.MTU())
	}
	if _, data := b.LeaseAttrs(); string(data) != `{"VNI":7,"VtepMAC":"`+b.VtepMAC().String()+`"}` {
		t.Errorf("BackendData %s", data)
	}
	link := nstest.Exec(t, a.NS, "ip", "-d", "link", "show", "flannel.7")
	for _, want := range []string{
		"mtu 1350 ",
		"link/ether " + b.VtepMAC().String() + " ",
		"vxlan id 7 local 192.168.70.1 dev eth0 srcport 0 0 dstport 4789 ",
		" gbp ",
	} {
		if !strings.Contains(link, want) {
			t.Errorf("ip -d link show flannel.7 lacks %q:\n%s", want, link)
		}
	}
	if strings.Contains(link, "nolearning") {
		t.Errorf("Learning:true made a device without learning:\n%s", link)
	}
	if _, err := os.Stat(filepath.Join(a.stateDir, "weft-vtep-flannel.7.mac")); err != nil {
		t.Error(err)
	}
}

func TestApplyProgramsPeersAndRemovesDeparted(t *testing.T) {
	hs := cluster(t, 3)
	a := hs[0]
	var bs []*Backend
	var ls []lease.Lease
	for _, hg := range hs {
		b, err := hg.build(t, plainConfig, Options{})
		if err != nil {
			t.Fatal(err)
		}
		bs = append(bs, b)
		ls = append(ls, hg.lease(b))
	}
	ba := bs[0]
	if err := ba.Start(t.Context(), ls[0]); err != nil {
		t.Fatal(err)
	}
	macB, macC := bs[1].VtepMAC().String(), bs[2].VtepMAC().String()
	hostgwPeer := lease.Lease{
		Subnet: netip.MustParsePrefix("10.244.4.0/24"),
		Attrs:  lease.Attrs{PublicIP: netip.MustParseAddr("192.168.70.4"), BackendType: "host-gw"},
	}
	badJSON := lease.Lease{
		Subnet: netip.MustParsePrefix("10.244.5.0/24"),
		Attrs:  lease.Attrs{PublicIP: netip.MustParseAddr("192.168.70.5"), BackendType: "vxlan", BackendData: json.RawMessage(`{"VNI":1,`)},
	}
	badMAC := lease.Lease{
		Subnet: netip.MustParsePrefix("10.244.6.0/24"),
		Attrs:  lease.Attrs{PublicIP: netip.MustParseAddr("192.168.70.6"), BackendType: "vxlan", BackendData: json.RawMessage(`{"VNI":1,"VtepMAC":"aa:bb"}`)},
	}
	all := append(slices.Clone(ls), hostgwPeer, badJSON, badMAC)

	err := ba.Apply(t.Context(), all)
	if err == nil {
		t.Fatal("Apply with garbage BackendData succeeded")
	}
	for _, want := range []string{
		"peer 192.168.70.5 (subnet 10.244.5.0/24): skipped: BackendData {\"VNI\":1,: unexpected end of JSON input",
		"peer 192.168.70.6 (subnet 10.244.6.0/24): skipped: BackendData {\"VNI\":1,\"VtepMAC\":\"aa:bb\"}: VtepMAC: address aa:bb: invalid MAC address",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Apply error lacks %q:\n%v", want, err)
		}
	}
	if n := len(strings.Split(err.Error(), "\n")); n != 2 {
		t.Errorf("Apply returned %d errors, want 2:\n%v", n, err)
	}
	backendtest.WantLines(t, "neighbours", neighs(t, a.NS), []string{
		"10.244.2.0 lladdr " + macB + " PERMANENT",
		"10.244.3.0 lladdr " + macC + " PERMANENT",
	})
	backendtest.WantLines(t, "fdb", fdb(t, a.NS), sorted(
		macB+" dst 192.168.70.2 self permanent",
		macC+" dst 192.168.70.3 self permanent",
	))
	backendtest.WantLines(t, "routes", weftRoutes(t, a.NS), []string{
		"10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink",
		"10.244.3.0/24 via 10.244.3.0 dev flannel.1 onlink",
	})

	// C leaves; the ignored peer must not be logged again.
	if err := ba.Apply(t.Context(), append(slices.Clone(ls[:2]), hostgwPeer)); err != nil {
		t.Fatal(err)
	}
	backendtest.WantLines(t, "neighbours after C left", neighs(t, a.NS), []string{"10.244.2.0 lladdr " + macB + " PERMANENT"})
	backendtest.WantLines(t, "fdb after C left", fdb(t, a.NS), []string{macB + " dst 192.168.70.2 self permanent"})
	backendtest.WantLines(t, "routes after C left", weftRoutes(t, a.NS), []string{"10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink"})

	// The same leases again change nothing.
	before := a.logBuf.String()
	if err := ba.Apply(t.Context(), append(slices.Clone(ls[:2]), hostgwPeer)); err != nil {
		t.Fatal(err)
	}
	if after := a.logBuf.String(); after != before {
		t.Errorf("a repeated Apply logged:\n%s", strings.TrimPrefix(after, before))
	}

	logs := a.logBuf.String()
	if n := backendtest.LogLines(logs, "ignoring peer of another backend type", "subnet=10.244.4.0/24", "backend_type=host-gw"); n != 1 {
		t.Errorf("the host-gw peer was logged %d times over three Applies, want once:\n%s", n, logs)
	}
	for _, want := range [][]string{
		{`msg="peer added"`, "subnet=10.244.2.0/24 peer=192.168.70.2 vtep_mac=" + macB + " mode=vxlan"},
		{`msg="peer added"`, "subnet=10.244.3.0/24 peer=192.168.70.3 vtep_mac=" + macC + " mode=vxlan",
			"neigh replace 10.244.3.0 lladdr " + macC + "; fdb replace " + macC + " dst 192.168.70.3; route replace 10.244.3.0/24 via 10.244.3.0 dev flannel.1 proto weft onlink"},
		{`msg="peer removed"`, "subnet=10.244.3.0/24 peer=192.168.70.3",
			"route delete 10.244.3.0/24 via 10.244.3.0 dev flannel.1 proto weft onlink; fdb delete " + macC + " dst 192.168.70.3; neigh delete 10.244.3.0 lladdr " + macC},
	} {
		if backendtest.LogLines(logs, want...) != 1 {
			t.Errorf("want exactly one log line with %q; logs:\n%s", want, logs)
		}
	}
	if n := backendtest.LogLines(logs, "subnet=10.244.3.0/24"); n != 2 {
		t.Errorf("%d log lines about C, want 2 (added, removed)", n)
	}
}

func sorted(xs ...string) []string {
	slices.Sort(xs)
	return xs
}

func TestApplyCleansUpAfterFlannel(t *testing.T) {
	hs := cluster(t, 2)
	a := hs[0]
	ba, err := a.build(t, plainConfig, Options{})
	if err != nil {
		t.Fatal(err)
	}
	bb, err := hs[1].build(t, plainConfig, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// What flannel left: entries of a peer that left while it was down,
	// and an entry for B with an old MAC and address. Plus what is not
	// weft's: a route outside the network and a learned neighbour.
	for _, cmd := range [][]string{
		{"ip", "neigh", "replace", "10.244.9.0", "lladdr", "0e:00:00:00:00:09", "dev", "flannel.1", "nud", "permanent"},
		{"bridge", "fdb", "replace", "0e:00:00:00:00:09", "dev", "flannel.1", "dst", "192.168.70.9", "self", "permanent"},
		{"ip", "route", "replace", "10.244.9.0/24", "via", "10.244.9.0", "dev", "flannel.1", "onlink"},
		{"ip", "neigh", "replace", "10.244.2.0", "lladdr", "0e:00:00:00:00:02", "dev", "flannel.1", "nud", "permanent"},
		{"bridge", "fdb", "replace", "0e:00:00:00:00:02", "dev", "flannel.1", "dst", "192.168.70.22", "self", "permanent"},
		{"ip", "route", "replace", "10.244.2.0/24", "via", "10.244.2.0", "dev", "flannel.1", "onlink"},
		{"ip", "route", "replace", "10.99.0.0/24", "via", "10.99.0.0", "dev", "flannel.1", "onlink"},
		{"ip", "neigh", "replace", "10.244.8.0", "lladdr", "0e:00:00:00:00:08", "dev", "flannel.1", "nud", "reachable"},
	} {
		nstest.Exec(t, a.NS, cmd...)
	}
	if err := ba.Start(t.Context(), a.lease(ba)); err != nil {
		t.Fatal(err)
	}
	if err := ba.Apply(t.Context(), []lease.Lease{a.lease(ba), hs[1].lease(bb)}); err != nil {
		t.Fatal(err)
	}
	macB := bb.VtepMAC().String()
	backendtest.WantLines(t, "neighbours", neighs(t, a.NS), []string{"10.244.2.0 lladdr " + macB + " PERMANENT"})
	backendtest.WantLines(t, "fdb", fdb(t, a.NS), []string{macB + " dst 192.168.70.2 self permanent"})
	backendtest.WantLines(t, "routes", lines(t, a.NS, false, "ip", "route", "show", "dev", "flannel.1"), []string{
		"10.99.0.0/24 via 10.99.0.0 onlink",
		"10.244.2.0/24 via 10.244.2.0 proto 87 onlink",
	})
	if got := lines(t, a.NS, false, "ip", "-4", "neigh", "show", "10.244.8.0", "dev", "flannel.1"); len(got) != 1 {
		t.Errorf("the learned neighbour was touched: %q", got)
	}
	logs := a.logBuf.String()
	for _, want := range [][]string{
		{`msg="peer added"`, "subnet=10.244.2.0/24", "route 10.244.2.0/24 had proto boot, want proto weft, replaced"},
		{`msg="peer removed"`, "subnet=10.244.9.0/24", "route delete", "fdb delete 0e:00:00:00:00:09 dst 192.168.70.9", "neigh delete 10.244.9.0"},
	} {
		if backendtest.LogLines(logs, want...) != 1 {
			t.Errorf("want exactly one log line with %q; logs:\n%s", want, logs)
		}
	}
}

// TestRunRepairsEachDeletedEntry deletes, one at a time, a neighbour, an
// FDB entry, a route and the whole device, and waits for each to come back.
// The timer period is a minute, so only the watches can repair in time.
func TestRunRepairsEachDeletedEntry(t *testing.T) {
	hs := cluster(t, 3)
	a := hs[0]
	bs, _ := startAll(t, hs, plainConfig)
	ba := bs[0]
	macA, macB := ba.VtepMAC().String(), bs[1].VtepMAC().String()
	want := state(t, a.NS)
	if !strings.Contains(want, "10.244.3.0/24 via 10.244.3.0 dev flannel.1 onlink") {
		t.Fatalf("nothing programmed:\n%s", want)
	}
	backendtest.Run(t, ba.Run)

	back := func(what string) {
		t.Helper()
		nstest.Eventually(t, 2*time.Second, func() error {
			if got := state(t, a.NS); got != want {
				return fmt.Errorf("after deleting %s:\n%s\nwant:\n%s", what, got, want)
			}
			return nil
		})
	}
	// The first deletion may race Run's start-up repair; once it is back
	// the watches certainly run, and every later repair is theirs.
	nstest.Exec(t, a.NS, "ip", "route", "del", "10.244.2.0/24")
	back("the route (warm-up)")
	base := ba.RepairCounts()

	nstest.Exec(t, a.NS, "ip", "neigh", "del", "10.244.2.0", "dev", "flannel.1")
	back("a neighbour")
	nstest.Exec(t, a.NS, "bridge", "fdb", "del", macB, "dev", "flannel.1", "dst", "192.168.70.2", "self")
	back("an fdb entry")
	nstest.Exec(t, a.NS, "ip", "route", "del", "10.244.3.0/24")
	back("a route")
	got := ba.RepairCounts()
	if d := (RepairCounts{Neighbour: got.Neighbour - base.Neighbour, FDB: got.FDB - base.FDB, Route: got.Route - base.Route}); d != (RepairCounts{Neighbour: 1, FDB: 1, Route: 1}) {
		t.Errorf("repairs for one neighbour, FDB entry and route: %+v", d)
	}

	oldIndex := linkOf(t, a, "flannel.1").Attrs().Index
	nstest.Exec(t, a.NS, "ip", "link", "del", "flannel.1")
	back("the device")
	l := linkOf(t, a, "flannel.1")
	if l.Attrs().Index == oldIndex {
		t.Error("the device was not re-created")
	}
	if l.Attrs().HardwareAddr.String() != macA || l.Attrs().MTU != 1450 || l.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("re-created device: MAC %s MTU %d flags %v; want %s, 1450, up", l.Attrs().HardwareAddr, l.Attrs().MTU, l.Attrs().Flags, macA)
	}
	if n := backendtest.LogLines(logs0(a), `msg="device updated"`, "created flannel.1 address "+macA+" mtu 1450 type vxlan id 1 dev eth0 local 192.168.70.1 nolearning; up; address 10.244.1.0/32"); n != 1 {
		t.Errorf("the re-creation was logged %d times, want once:\n%s", n, logs0(a))
	}
	got2 := ba.RepairCounts()
	if got2.Device <= got.Device || got2.Address != got.Address+1 || got2.Neighbour != got.Neighbour+2 ||
		got2.FDB != got.FDB+2 || got2.Route != got.Route+2 {
		t.Errorf("repairs for the device: before %+v, after %+v", got, got2)
	}

	logs := a.logBuf.String()
	for _, want := range [][]string{
		{`msg="peer repaired"`, "subnet=10.244.2.0/24", `changes="neigh replace 10.244.2.0 lladdr ` + macB + `" trigger="neighbour deleted"`},
		{`msg="peer repaired"`, "subnet=10.244.2.0/24", `changes="fdb replace ` + macB + ` dst 192.168.70.2" trigger="fdb entry deleted"`},
		{`msg="peer repaired"`, "subnet=10.244.3.0/24", `changes="route replace 10.244.3.0/24 via 10.244.3.0 dev flannel.1 proto weft onlink" trigger="route deleted"`},
	} {
		if backendtest.LogLines(logs, want...) != 1 {
			t.Errorf("want exactly one log line with %q; logs:\n%s", want, logs)
		}
	}
}

// TestRunCountsRepairsInMetrics deletes a neighbour and an FDB entry and
// sees both return and weft_reconcile_repairs_total{neighbour,fdb} move,
// which stayed 0 before the repair loop was shared.
func TestRunCountsRepairsInMetrics(t *testing.T) {
	hs := cluster(t, 2)
	a := hs[0]
	a.metrics = metrics.New()
	bs, _ := startAll(t, hs, plainConfig)
	macB := bs[1].VtepMAC().String()
	want := state(t, a.NS)
	backendtest.Run(t, bs[0].Run)
	count := func(kind string) float64 { return backendtest.Repairs(t, a.metrics, kind) }

	// The first deletion may race Run's start-up repair; once the route is
	// back the watches certainly run.
	nstest.Exec(t, a.NS, "ip", "route", "del", "10.244.2.0/24")
	nstest.Eventually(t, 2*time.Second, func() error {
		if count(metrics.KindRoute) < 1 {
			return errors.New("route repair not counted yet")
		}
		return nil
	})
	neigh0, fdb0 := count(metrics.KindNeighbour), count(metrics.KindFDB)

	nstest.Exec(t, a.NS, "ip", "neigh", "del", "10.244.2.0", "dev", "flannel.1")
	nstest.Exec(t, a.NS, "bridge", "fdb", "del", macB, "dev", "flannel.1", "dst", "192.168.70.2", "self")
	nstest.Eventually(t, 2*time.Second, func() error {
		if got := state(t, a.NS); got != want {
			return fmt.Errorf("after deleting the neighbour and fdb entry:\n%s\nwant:\n%s", got, want)
		}
		if n, f := count(metrics.KindNeighbour)-neigh0, count(metrics.KindFDB)-fdb0; n != 1 || f != 1 {
			return fmt.Errorf("repairs counted: neighbour +%v, fdb +%v; want +1 each", n, f)
		}
		return nil
	})
}

func TestRunRepairsOnTimerWithoutWatch(t *testing.T) {
	hs := cluster(t, 2)
	a := hs[0]
	ba := a.start(t, plainConfig, Options{ReconcilePeriod: 100 * time.Millisecond, NoSubscribe: true})
	bb, err := hs[1].build(t, plainConfig, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ba.Apply(t.Context(), []lease.Lease{a.lease(ba), hs[1].lease(bb)}); err != nil {
		t.Fatal(err)
	}
	want := state(t, a.NS)
	backendtest.Run(t, ba.Run)
	for _, cmd := range [][]string{
		{"ip", "route", "del", "10.244.2.0/24"},
		// Without subscriptions, changes in place are the timer's too.
		{"ip", "route", "replace", "10.244.2.0/24", "via", "192.168.70.50", "dev", "eth0"},
		{"ip", "neigh", "replace", "10.244.2.0", "lladdr", "0e:00:00:00:00:99", "dev", "flannel.1", "nud", "permanent"},
		{"bridge", "fdb", "replace", bb.VtepMAC().String(), "dev", "flannel.1", "dst", "192.168.70.99", "self", "permanent"},
		{"ip", "link", "set", "flannel.1", "mtu", "1300"},
		{"ip", "addr", "del", "10.244.1.0/32", "dev", "flannel.1"},
		{"ip", "link", "set", "flannel.1", "down"},
	} {
		nstest.Exec(t, a.NS, cmd...)
		nstest.Eventually(t, 2*time.Second, func() error {
			if got := state(t, a.NS); got != want {
				return fmt.Errorf("after %q:\n%s\nwant:\n%s", cmd, got, want)
			}
			if mtu := linkOf(t, a, "flannel.1").Attrs().MTU; mtu != 1450 {
				return fmt.Errorf("MTU %d", mtu)
			}
			return nil
		})
	}
	c := ba.RepairCounts()
	// Setting the device down also flushes its neighbours and routes.
	if c.Route < 3 || c.Neighbour < 2 || c.FDB != 1 || c.Device < 2 || c.Address != 1 {
		t.Errorf("RepairCounts = %+v", c)
	}
}

func TestRunLeavesKernelAloneBeforeFirstApply(t *testing.T) {
	hs := cluster(t, 1)
	a := hs[0]
	ba := a.start(t, plainConfig, Options{ReconcilePeriod: 20 * time.Millisecond})
	nstest.Exec(t, a.NS, "ip", "neigh", "replace", "10.244.9.0", "lladdr", "0e:00:00:00:00:09", "dev", "flannel.1", "nud", "permanent")
	nstest.Exec(t, a.NS, "ip", "route", "replace", "10.244.9.0/24", "via", "10.244.9.0", "dev", "flannel.1", "onlink")
	backendtest.Run(t, ba.Run)
	// Wake the watches and let the timer fire many times.
	nstest.Exec(t, a.NS, "ip", "neigh", "replace", "10.244.8.0", "lladdr", "0e:00:00:00:00:08", "dev", "flannel.1", "nud", "permanent")
	nstest.Exec(t, a.NS, "ip", "neigh", "del", "10.244.8.0", "dev", "flannel.1")
	deadline := time.Now().Add(300 * time.Millisecond)
	nstest.Eventually(t, time.Second, func() error {
		if len(neighs(t, a.NS)) != 1 || len(weftRoutes(t, a.NS)) != 0 || len(lines(t, a.NS, false, "ip", "route", "show", "dev", "flannel.1")) != 1 {
			t.Fatal("Run changed the kernel before any Apply")
		}
		if time.Now().Before(deadline) {
			return errors.New("still watching")
		}
		return nil
	})
	if err := ba.Apply(t.Context(), []lease.Lease{a.lease(ba)}); err != nil {
		t.Fatal(err)
	}
	if len(neighs(t, a.NS)) != 0 || len(lines(t, a.NS, false, "ip", "route", "show", "dev", "flannel.1")) != 0 {
		t.Error("Apply left the stale entries")
	}
	if ba.Repairs() != 0 {
		t.Errorf("Repairs = %d, want 0", ba.Repairs())
	}
}

func TestConcurrentApplyAndRun(t *testing.T) {
	hs := cluster(t, 3)
	a := hs[0]
	ba := a.start(t, plainConfig, Options{ReconcilePeriod: 5 * time.Millisecond})
	ls := []lease.Lease{a.lease(ba)}
	for _, hg := range hs[1:] {
		b, err := hg.build(t, plainConfig, Options{})
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, hg.lease(b))
	}
	if err := ba.Apply(t.Context(), ls); err != nil {
		t.Fatal(err)
	}
	backendtest.Run(t, ba.Run)
	for i := range 50 {
		cur := ls
		if i%2 == 1 {
			cur = ls[:2]
		}
		if err := ba.Apply(t.Context(), cur); err != nil {
			t.Fatal(err)
		}
	}
	backendtest.WantLines(t, "routes after the last Apply(A, B)", weftRoutes(t, a.NS), []string{"10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink"})
	if ba.Repairs() != 0 {
		t.Errorf("Repairs = %d: Run fought Apply", ba.Repairs())
	}
}

func TestRestartKeepsMACAndDevice(t *testing.T) {
	hs := cluster(t, 2)
	a := hs[0]
	bs, ls := startAll(t, hs, plainConfig)
	mac := bs[0].VtepMAC()
	index := linkOf(t, a, "flannel.1").Attrs().Index
	want := state(t, a.NS)

	// A restarted agent: a new backend with the same state directory.
	logStart := len(a.logBuf.String())
	b2 := a.start(t, plainConfig, Options{})
	if err := b2.Apply(t.Context(), ls); err != nil {
		t.Fatal(err)
	}
	if b2.VtepMAC() != mac {
		t.Errorf("MAC after restart %s, want %s", b2.VtepMAC(), mac)
	}
	if got := linkOf(t, a, "flannel.1").Attrs().Index; got != index {
		t.Errorf("the device was re-created on restart (index %d, was %d)", got, index)
	}
	if got := state(t, a.NS); got != want {
		t.Errorf("state after restart:\n%s\nwant:\n%s", got, want)
	}
	if logs := a.logBuf.String()[logStart:]; strings.Contains(logs, "peer ") || strings.Contains(logs, "device updated") {
		t.Errorf("a restart with nothing to do changed the kernel:\n%s", logs)
	}

	// A reboot: the device is gone, the state directory is not.
	nstest.Exec(t, a.NS, "ip", "link", "del", "flannel.1")
	b3 := a.start(t, plainConfig, Options{})
	if b3.VtepMAC() != mac || linkOf(t, a, "flannel.1").Attrs().HardwareAddr.String() != mac.String() {
		t.Errorf("after a reboot the MAC is %s and the device has %s, want %s", b3.VtepMAC(), linkOf(t, a, "flannel.1").Attrs().HardwareAddr, mac)
	}
}

func TestAdoptsFlannelDeviceMAC(t *testing.T) {
	hs := cluster(t, 1)
	a := hs[0]
	// flannel's device, and no state file yet (an upgrade).
	nstest.Exec(t, a.NS, "ip", "link", "add", "flannel.1", "address", "0e:42:42:42:42:42", "mtu", "1450",
		"type", "vxlan", "id", "1", "dev", "eth0", "local", "192.168.70.1", "dstport", "8472", "nolearning")
	index := linkOf(t, a, "flannel.1").Attrs().Index
	b := a.start(t, plainConfig, Options{})
	if b.VtepMAC().String() != "0e:42:42:42:42:42" {
		t.Errorf("MAC %s, want flannel's 0e:42:42:42:42:42", b.VtepMAC())
	}
	if got := linkOf(t, a, "flannel.1").Attrs().Index; got != index {
		t.Error("a compatible flannel device was re-created")
	}
	raw, _ := os.ReadFile(filepath.Join(a.stateDir, MACFileName(1)))
	if string(raw) != "0e:42:42:42:42:42\n" {
		t.Errorf("state file %q", raw)
	}
}

func TestRecreatesIncompatibleDevice(t *testing.T) {
	hs := cluster(t, 1)
	a := hs[0]
	if err := writeMACFile(filepath.Join(a.stateDir, MACFileName(1)), mustMAC("0e:51:51:51:51:51")); err != nil {
		t.Fatal(err)
	}
	nstest.Exec(t, a.NS, "ip", "link", "add", "flannel.1", "address", "0e:42:42:42:42:42",
		"type", "vxlan", "id", "1", "dev", "eth0", "local", "192.168.70.1", "dstport", "4789", "learning")
	index := linkOf(t, a, "flannel.1").Attrs().Index
	b := a.start(t, plainConfig, Options{})
	l := linkOf(t, a, "flannel.1").(*netlink.Vxlan)
	if l.Index == index || l.Port != 8472 || l.Learning || l.HardwareAddr.String() != "0e:51:51:51:51:51" || b.VtepMAC() != mustMAC("0e:51:51:51:51:51") {
		t.Errorf("device index %d (was %d), port %d, learning %v, MAC %s; VtepMAC %s",
			l.Index, index, l.Port, l.Learning, l.HardwareAddr, b.VtepMAC())
	}
	if backendtest.LogLines(a.logBuf.String(), `msg="device updated"`, "deleted incompatible device (dstport 4789, want 8472; learning true, want false)") != 1 {
		t.Errorf("re-creation not logged with its reason:\n%s", a.logBuf.String())
	}
	// A device with the right MAC set later by someone else is put back.
	nstest.Exec(t, a.NS, "ip", "link", "set", "flannel.1", "address", "0e:99:99:99:99:99")
	if err := b.Apply(t.Context(), []lease.Lease{a.lease(b)}); err != nil {
		t.Fatal(err)
	}
	if got := linkOf(t, a, "flannel.1").Attrs().HardwareAddr.String(); got != "0e:51:51:51:51:51" {
		t.Errorf("MAC after Apply %s", got)
	}
}

// dial connects to target from from's pod address and checks the echo.
func dial(from *host, target string) error {
	return netns.Do(from.NS, func() error {
		d := net.Dialer{Timeout: time.Second, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(from.PodIP, 0))}
		c, err := d.Dial("tcp4", target)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		msg := []byte("weft over " + from.NS)
		if _, err := c.Write(msg); err != nil {
			return err
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(c, buf); err != nil {
			return err
		}
		if !bytes.Equal(buf, msg) {
			return fmt.Errorf("echo = %q", buf)
		}
		return nil
	})
}

func txPackets(t *testing.T, hg *host) uint64 {
	return linkOf(t, hg, "flannel.1").Attrs().Statistics.TxPackets
}

// TestPodTrafficThroughVXLAN checks the data plane end to end: an address
// in A's pod subnet reaches one in B's over TCP, through flannel.1, once
// both hosts applied.
func TestPodTrafficThroughVXLAN(t *testing.T) {
	hs := cluster(t, 2)
	a, b := hs[0], hs[1]
	target := b.EchoServer(t)
	if err := dial(a, target); err == nil {
		t.Fatal("pod-to-pod connection worked before anything was programmed")
	}
	startAll(t, hs, plainConfig)
	txBefore := txPackets(t, a)
	if err := dial(a, target); err != nil {
		t.Fatalf("%s -> %s: %v", a.PodIP, target, err)
	}
	if tx := txPackets(t, a); tx <= txBefore {
		t.Errorf("flannel.1 on A sent no packets (%d before, %d after)", txBefore, tx)
	}
}

// TestDirectRouting: on two segments joined by a router, A and B share a
// segment and route to each other directly, C is behind the router and is
// reached through VXLAN; every pair of pods connects.
func TestDirectRouting(t *testing.T) {
	hs := cluster(t, 2, 1)
	a, b, c := hs[0], hs[1], hs[2]
	bs, _ := startAll(t, hs, `{"Type":"vxlan","DirectRouting":true}`)
	macC := bs[2].VtepMAC().String()

	backendtest.WantLines(t, "A's routes", weftRoutes(t, a.NS), []string{
		"10.244.2.0/24 via 192.168.70.2 dev eth0",
		"10.244.3.0/24 via 10.244.3.0 dev flannel.1 onlink",
	})
	backendtest.WantLines(t, "A's neighbours", neighs(t, a.NS), []string{"10.244.3.0 lladdr " + macC + " PERMANENT"})
	backendtest.WantLines(t, "A's fdb", fdb(t, a.NS), []string{macC + " dst 192.168.71.3 self permanent"})
	backendtest.WantLines(t, "C's routes", weftRoutes(t, c.NS), []string{
		"10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink",
		"10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink",
	})
	if backendtest.LogLines(a.logBuf.String(), `msg="peer added"`, "subnet=10.244.2.0/24", "mode=direct") != 1 {
		t.Errorf("B not logged as direct:\n%s", a.logBuf.String())
	}

	for _, to := range hs {
		target := to.EchoServer(t)
		for _, from := range hs {
			if from != to {
				if err := dial(from, target); err != nil {
					t.Errorf("%s -> %s: %v", from.PodIP, to.PodIP, err)
				}
			}
		}
	}

	// B moves behind the router: the next reconcile sends it through VXLAN.
	nstest.Exec(t, a.NS, "ip", "route", "add", "192.168.70.2/32", "via", "192.168.70.254")
	if err := bs[0].Apply(t.Context(), []lease.Lease{a.lease(bs[0]), b.lease(bs[1]), c.lease(bs[2])}); err != nil {
		t.Fatal(err)
	}
	backendtest.WantLines(t, "A's routes with B behind a gateway", weftRoutes(t, a.NS), []string{
		"10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink",
		"10.244.3.0/24 via 10.244.3.0 dev flannel.1 onlink",
	})
	if backendtest.LogLines(a.logBuf.String(), `msg="peer changed"`, "subnet=10.244.2.0/24", "mode=vxlan") != 1 {
		t.Errorf("B's switch to vxlan not logged:\n%s", a.logBuf.String())
	}
}
