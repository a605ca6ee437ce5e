package status

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/kernel"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/netconf"
	"github.com/weftnet/weft/internal/subnetenv"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (run with -update to accept):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func mustConfig(t *testing.T, raw string) *netconf.Config {
	t.Helper()
	c, err := netconf.Parse([]byte(raw))
	if err != nil {
		t.Fatalf("parse %s: %v", raw, err)
	}
	return c
}

func eth0() backend.ExternalInterface {
	return backend.ExternalInterface{Name: "eth0", Index: 2, MTU: 1500, Addr: ip("192.168.1.1"), PublicIP: ip("192.168.1.1")}
}

func subnetEnvFor(subnet string, mtu int) subnetenv.Env {
	return subnetenv.Env{Networks: []netip.Prefix{pfx("10.244.0.0/16")}, Subnet: pfx(subnet), MTU: mtu}
}

// hostgwKernel holds h1's eth0 and cni0 and the given routes via eth0.
func hostgwKernel(routes ...kernel.Route) Kernel {
	return Kernel{
		Links: []Link{
			{Name: "lo", Index: 1, MTU: 65536, Up: true},
			{Name: "eth0", Index: 2, MTU: 1500, Up: true, Addrs: []netip.Prefix{pfx("192.168.1.1/24")}},
			{Name: "cni0", Index: 6, MTU: 1500, Up: true, Addrs: []netip.Prefix{pfx("10.244.1.1/24")}},
		},
		Routes: routes,
	}
}

func via(dst, gw string) kernel.Route {
	return kernel.Route{Dst: pfx(dst), Gw: ip(gw), LinkIndex: 2, Proto: kernel.ProtoWeft}
}

const hostgwConfig = `{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}`

func hostgwHealthy(t *testing.T) Inputs {
	return Inputs{
		Now:    t0,
		Config: mustConfig(t, hostgwConfig),
		Leases: []lease.Lease{
			hostgwLease("10.244.1.0/24", "192.168.1.1", 24*time.Hour),
			hostgwLease("10.244.2.0/24", "192.168.1.2", 23*time.Hour+59*time.Minute),
			hostgwLease("10.244.3.0/24", "192.168.1.3", 0),
		},
		Store:       "etcd http://192.168.1.100:2379 /coreos.com/network",
		SubnetFile:  "/run/flannel/subnet.env",
		SubnetEnv:   subnetEnvFor("10.244.1.0/24", 1500),
		Ext:         eth0(),
		PublicIP:    ip("192.168.1.1"),
		Kernel:      hostgwKernel(via("10.244.2.0/24", "192.168.1.2"), via("10.244.3.0/24", "192.168.1.3")),
		RenewMargin: time.Hour,
	}
}

func hostgwBroken(t *testing.T) Inputs {
	in := hostgwHealthy(t)
	in.Leases = []lease.Lease{
		hostgwLease("10.244.1.0/24", "192.168.1.1", 24*time.Hour),
		hostgwLease("10.244.2.0/24", "192.168.1.2", 20*time.Hour),   // route deleted
		hostgwLease("10.244.3.0/24", "192.168.1.3", 20*time.Hour),   // route via the wrong host
		hostgwLease("10.244.4.0/24", "192.168.1.4", -5*time.Minute), // expired
		hostgwLease("10.244.5.0/24", "192.168.1.5", 30*time.Minute), // not renewed
		vxlanLease("10.244.6.0/24", "192.168.1.6", "aa:bb:cc:dd:ee:06", 1, 20*time.Hour),
		hostgwLease("10.244.7.0/24", "192.168.1.2", 0), // a second lease for .2
	}
	in.SubnetEnv.MTU = 1450
	in.Kernel = hostgwKernel(
		via("10.244.3.0/24", "192.168.1.5"),
		via("10.244.4.0/24", "192.168.1.4"),
		via("10.244.5.0/24", "192.168.1.5"),
	)
	return in
}

const vxlanConfig = `{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`

func vxlanBroken(t *testing.T) Inputs {
	k := testKernel()
	// flannel.1 came back after a reboot with a MAC and MTU of its own,
	// and cni0 still has the address of an earlier subnet.
	k.Links[2].MAC = mac("aa:bb:cc:dd:ee:10")
	k.Links[2].MTU = 1500
	k.Links[3].Addrs = []netip.Prefix{pfx("10.244.9.1/24")}
	k.Routes = append(k.Routes,
		kernel.Route{Dst: pfx("10.244.3.0/24"), Gw: ip("10.244.3.0"), LinkIndex: 5, OnLink: true, Proto: kernel.ProtoWeft})
	k.Routes = slices.DeleteFunc(k.Routes, func(r kernel.Route) bool { return r.Dst == pfx("10.244.3.0/24") && !r.OnLink })
	return Inputs{
		Now:    t0,
		Config: mustConfig(t, vxlanConfig),
		Leases: []lease.Lease{
			vxlanLease("10.244.1.0/24", "192.168.1.1", "aa:bb:cc:dd:ee:01", 1, 24*time.Hour),
			vxlanLease("10.244.2.0/24", "192.168.1.2", "aa:bb:cc:dd:ee:02", 1, 24*time.Hour), // fine
			vxlanLease("10.244.3.0/24", "192.168.1.3", "aa:bb:cc:dd:ee:03", 1, 24*time.Hour), // rebooted: new VtepMAC
			vxlanLease("10.244.4.0/24", "192.168.1.4", "aa:bb:cc:dd:ee:04", 1, 24*time.Hour), // moved to another IP
			vxlanLease("10.244.5.0/24", "192.168.1.5", "aa:bb:cc:dd:ee:05", 2, 24*time.Hour), // other VNI
			vxlanLease("10.244.6.0/24", "192.168.1.6", "aa:bb:cc:dd:ee:06", 1, 24*time.Hour), // never programmed
		},
		Store:       "etcd http://192.168.1.100:2379 /coreos.com/network",
		SubnetFile:  "/run/flannel/subnet.env",
		SubnetEnv:   subnetEnvFor("10.244.1.0/24", 1450),
		Ext:         eth0(),
		PublicIP:    ip("192.168.1.1"),
		Kernel:      k,
		RenewMargin: time.Hour,
	}
}

func noLease(t *testing.T) Inputs {
	in := hostgwHealthy(t)
	in.Leases = in.Leases[1:]
	in.SubnetEnv = subnetenv.Env{}
	in.SubnetErr = fmt.Errorf("read subnet file: open /run/flannel/subnet.env: %w", fs.ErrNotExist)
	return in
}

func staleSubnetFile(t *testing.T) Inputs {
	in := hostgwHealthy(t)
	in.SubnetEnv = subnetenv.Env{Networks: []netip.Prefix{pfx("10.5.0.0/16")}, Subnet: pfx("10.244.8.0/24"), MTU: 1500}
	return in
}

// kubeHealthy is hostgwHealthy in Kubernetes mode: the leases are Nodes,
// without expiry.
func kubeHealthy(t *testing.T) Inputs {
	in := hostgwHealthy(t)
	in.Kubernetes = true
	in.Store = "kubernetes https://10.0.0.1:6443 (config /etc/kube-flannel/net-conf.json)"
	for i := range in.Leases {
		in.Leases[i].Expiration = time.Time{}
	}
	return in
}

func TestBuildGolden(t *testing.T) {
	for _, c := range []struct {
		name   string
		in     func(*testing.T) Inputs
		ok     bool
		codes  []string
		asJSON bool
	}{
		{"hostgw-ok", hostgwHealthy, true, nil, true},
		{"kube-ok", kubeHealthy, true, nil, true},
		{"hostgw-broken", hostgwBroken, false, []string{CodeMTU, CodeNoRoute, CodeDuplicateIP, CodeWrongRoute, CodeLeaseExpired,
			CodeLeaseNotRenewed, CodeBackendMismatch, CodeNoRoute, CodeDuplicateIP}, true},
		{"vxlan-broken", vxlanBroken, false, []string{CodeOwnVtepMAC, CodeMTU, CodeCNIBridge,
			CodeWrongVtepMAC, CodeWrongVtepMAC, CodeMissingNeigh, CodeWrongFDB, CodeWrongRoute, CodeBadLease, CodeMissingNeigh, CodeMissingFDB, CodeNoRoute}, true},
		{"no-lease", noLease, false, []string{CodeSubnetFile, CodeNoLease}, false},
		{"stale-subnet-file", staleSubnetFile, false, []string{CodeSubnetFile, CodeSubnetFile}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := Build(c.in(t))
			if r.OK != c.ok {
				t.Errorf("OK = %v, want %v", r.OK, c.ok)
			}
			if got := allCodes(r); !slices.Equal(got, c.codes) {
				t.Errorf("problem codes = %v, want %v", got, c.codes)
			}
			if r.ProblemCount != len(c.codes) {
				t.Errorf("ProblemCount = %d, want %d", r.ProblemCount, len(c.codes))
			}
			var b bytes.Buffer
			if err := WriteTable(&b, r); err != nil {
				t.Fatal(err)
			}
			golden(t, c.name+".txt", b.Bytes())
			if c.asJSON {
				b.Reset()
				if err := WriteJSON(&b, r); err != nil {
					t.Fatal(err)
				}
				golden(t, c.name+".json", b.Bytes())
			}
		})
	}
}

// allCodes lists the host's problem codes, then each lease's in order.
func allCodes(r Report) []string {
	var out []string
	for _, p := range r.Problems {
		out = append(out, p.Code)
	}
	for _, row := range r.Leases {
		for _, p := range row.Problems {
			out = append(out, p.Code)
		}
	}
	return out
}

func TestOwnLeaseAndSelfRow(t *testing.T) {
	r := Build(hostgwHealthy(t))
	if r.Host.Subnet != "10.244.1.0/24" {
		t.Errorf("own subnet = %q", r.Host.Subnet)
	}
	for _, row := range r.Leases {
		if row.Self != (row.Subnet == "10.244.1.0/24") {
			t.Errorf("row %s: Self = %v", row.Subnet, row.Self)
		}
		if row.Self && (len(row.Entries) != 0 || len(row.targets) != 0) {
			t.Errorf("the own lease must get neither entries nor probes: %+v", row)
		}
	}

	// Without subnet.env the lease carrying our PublicIP is ours; a host
	// problem marks the self row.
	in := hostgwHealthy(t)
	in.SubnetErr = errors.New("read subnet file: boom")
	in.SubnetEnv = subnetenv.Env{}
	r = Build(in)
	if r.Host.Subnet != "10.244.1.0/24" || r.OK {
		t.Fatalf("subnet %q ok %v; want own lease found by PublicIP and a problem", r.Host.Subnet, r.OK)
	}
	for _, row := range r.Leases {
		if row.Self && row.Status != "problem" {
			t.Errorf("self row status %q with a host problem, want problem", row.Status)
		}
	}
}

// fakeProber answers from tables and records what was asked.
type fakeProber struct {
	paths map[netip.Addr]Path          // absent: no route
	rtt   map[netip.Addr]time.Duration // absent: no reply
	small map[netip.Addr]bool          // only small echoes are answered
	shut  map[netip.AddrPort]bool      // port unreachable

	mu    sync.Mutex
	calls []string
}

func (f *fakeProber) record(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
}

func (f *fakeProber) Lookup(dst netip.Addr) (Path, error) {
	f.record("lookup " + dst.String())
	if p, ok := f.paths[dst]; ok {
		return p, nil
	}
	return Path{}, fmt.Errorf("ip route get %s: %w", dst, ErrNoRoute)
}

func (f *fakeProber) Echo(_ context.Context, dst netip.Addr, size int) (time.Duration, error) {
	f.record(fmt.Sprintf("echo %s %d", dst, size))
	d, ok := f.rtt[dst]
	if !ok || (size > 0 && f.small[dst]) {
		return 0, fmt.Errorf("no echo reply from %s within 1s", dst)
	}
	return d, nil
}

func (f *fakeProber) PortUnreachable(_ context.Context, dst netip.AddrPort) (bool, error) {
	f.record("port " + dst.String())
	return f.shut[dst], nil
}

func (f *fakeProber) sortedCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := slices.Clone(f.calls)
	slices.Sort(c)
	return c
}

func pathVia(dst, gw, dev string) Path {
	return Path{Dst: ip(dst), Gw: ip(gw), Dev: dev, Src: ip("192.168.1.1")}
}

// --check on a host-gw host whose peers fail in every way a probe can
// tell apart, rendered as the operator sees it.
func TestProbeGolden(t *testing.T) {
	in := hostgwHealthy(t)
	in.Leases = []lease.Lease{
		hostgwLease("10.244.1.0/24", "192.168.1.1", 24*time.Hour),
		hostgwLease("10.244.2.0/24", "192.168.1.2", 24*time.Hour), // fine
		hostgwLease("10.244.3.0/24", "192.168.1.3", 24*time.Hour), // small packets only
		hostgwLease("10.244.4.0/24", "192.168.1.4", 24*time.Hour), // route gone, default route taken
		hostgwLease("10.244.5.0/24", "192.168.1.5", 24*time.Hour), // host down
		hostgwLease("10.244.6.0/24", "192.168.1.6", 24*time.Hour), // host up, no pod gateway
		hostgwLease("10.244.7.0/24", "192.168.1.7", 24*time.Hour), // no route at all
	}
	in.Kernel = hostgwKernel(
		via("10.244.2.0/24", "192.168.1.2"), via("10.244.3.0/24", "192.168.1.3"),
		via("10.244.5.0/24", "192.168.1.5"), via("10.244.6.0/24", "192.168.1.6"))
	r := Build(in)
	f := &fakeProber{
		paths: map[netip.Addr]Path{
			ip("10.244.2.1"): pathVia("10.244.2.1", "192.168.1.2", "eth0"),
			ip("10.244.3.1"): pathVia("10.244.3.1", "192.168.1.3", "eth0"),
			ip("10.244.4.1"): pathVia("10.244.4.1", "192.168.1.254", "eth0"),
			ip("10.244.5.1"): pathVia("10.244.5.1", "192.168.1.5", "eth0"),
			ip("10.244.6.1"): pathVia("10.244.6.1", "192.168.1.6", "eth0"),
		},
		rtt: map[netip.Addr]time.Duration{
			ip("10.244.2.1"): 250 * time.Microsecond, ip("10.244.3.1"): 310 * time.Microsecond,
			ip("192.168.1.6"): 120 * time.Microsecond, ip("192.168.1.7"): 100 * time.Microsecond,
		},
		small: map[netip.Addr]bool{ip("10.244.3.1"): true},
	}
	Probe(context.Background(), &r, f)
	if !r.Checked || r.OK {
		t.Errorf("Checked %v OK %v; want checked with problems", r.Checked, r.OK)
	}
	wantCodes := []string{CodeMTU, CodeNoRoute, CodePublicIPDown, CodePublicIPDown, CodeGatewayNoAnswer, CodeNoRoute}
	if got := allCodes(r); !slices.Equal(got, wantCodes) {
		t.Errorf("codes = %v, want %v", got, wantCodes)
	}
	var b bytes.Buffer
	if err := WriteTable(&b, r); err != nil {
		t.Fatal(err)
	}
	golden(t, "hostgw-check.txt", b.Bytes())

	// Each probe runs only when the earlier ones leave its question open.
	wantCalls := []string{
		"echo 10.244.2.1 0", "echo 10.244.2.1 1500", "echo 10.244.3.1 0", "echo 10.244.3.1 1500",
		"echo 10.244.4.1 0", "echo 10.244.5.1 0", "echo 10.244.6.1 0", "echo 10.244.7.1 0",
		"echo 192.168.1.4 0", "echo 192.168.1.5 0", "echo 192.168.1.6 0", "echo 192.168.1.7 0",
		"lookup 10.244.2.1", "lookup 10.244.3.1", "lookup 10.244.4.1", "lookup 10.244.5.1", "lookup 10.244.6.1", "lookup 10.244.7.1",
	}
	if got := f.sortedCalls(); !slices.Equal(got, wantCalls) {
		t.Errorf("probes:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantCalls, "\n"))
	}
}

// The explanations of probe results, case by case.
func TestExplain(t *testing.T) {
	target := probeTarget{
		subnet:      pfx("10.244.3.0/24"),
		addr:        ip("10.244.3.1"),
		path:        Want{Kind: KindRoute, Dst: pfx("10.244.3.0/24"), Gw: ip("10.244.3.0"), Dev: "flannel.1", OnLink: true},
		publicIP:    ip("192.168.1.3"),
		port:        8472,
		mtu:         1450,
		portUser:    "VXLAN device",
		gatewayHint: "; also check there that its VXLAN device's MAC is the VtepMAC its lease publishes",
	}
	good := pathVia("10.244.3.1", "10.244.3.0", "flannel.1")
	silent := errors.New("no echo reply from 10.244.3.1 within 1s")
	cases := []struct {
		name    string
		prior   []string
		res     probeResult
		codes   []string
		contain string
		check   func(*Check) error
	}{
		{name: "all fine", res: probeResult{path: good, rtt: time.Millisecond, fullTried: true},
			check: func(c *Check) error {
				if !c.Reply || c.RTTms == nil || *c.RTTms != 1 || c.FullSizeReply == nil || !*c.FullSizeReply || c.FullSizeMTU != 1450 {
					return fmt.Errorf("check %+v", c)
				}
				return nil
			}},
		{name: "no route", res: probeResult{pathErr: ErrNoRoute, echoErr: silent, pubTried: true, portTried: true},
			codes: []string{CodeNoRoute}, contain: "no route to 10.244.3.0/24: the agent has not programmed it; is weft running? (see `journalctl -u weft`)",
			check: func(c *Check) error {
				if !c.NoRoute || c.Reply || c.PublicIPReply == nil || !*c.PublicIPReply {
					return fmt.Errorf("check %+v", c)
				}
				return nil
			}},
		{name: "no route already found in the kernel is not repeated", prior: []string{CodeNoRoute},
			res: probeResult{pathErr: ErrNoRoute, echoErr: silent, pubTried: true}, codes: []string{CodeNoRoute}},
		{name: "traffic takes another route", res: probeResult{path: pathVia("10.244.3.1", "192.168.1.254", "eth0"), rtt: time.Millisecond},
			codes: []string{CodeWrongRoute}, contain: "leaves by `10.244.3.1 via 192.168.1.254 dev eth0 src 192.168.1.1`"},
		{name: "route lookup fails", res: probeResult{pathErr: errors.New("netlink: permission denied"), rtt: time.Millisecond},
			codes: []string{CodeProbeFailed}},
		{name: "full-size echo lost", res: probeResult{path: good, rtt: time.Millisecond, fullTried: true, fullErr: errors.New("fragmentation needed")},
			codes: []string{CodeMTU}, contain: "1450 bytes, the pods' MTU"},
		{name: "peer host down", res: probeResult{path: good, echoErr: silent, pubTried: true, pubErr: silent},
			codes: []string{CodePublicIPDown}, contain: "192.168.1.3, the peer's PublicIP, does not answer"},
		{name: "VXLAN port closed", res: probeResult{path: good, echoErr: silent, pubTried: true, portTried: true, portClosed: true},
			codes: []string{CodeUDPPortClosed}, contain: "refuses UDP port 8472",
			check: func(c *Check) error {
				if c.PortUnreachable == nil || !*c.PortUnreachable || c.Port != 8472 {
					return fmt.Errorf("check %+v", c)
				}
				return nil
			}},
		{name: "host answers, pod gateway silent", res: probeResult{path: good, echoErr: silent, pubTried: true, portTried: true},
			codes: []string{CodeGatewayNoAnswer}, contain: "its VXLAN device's MAC is the VtepMAC"},
		{name: "silence explained by the kernel entries", prior: []string{CodeWrongVtepMAC},
			res: probeResult{path: good, echoErr: silent, pubTried: true, portTried: true}, codes: []string{CodeWrongVtepMAC}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tg := target
			row := Row{Subnet: "10.244.3.0/24"}
			for i, code := range c.prior {
				row.Problems = append(row.Problems, Problem{Code: code, Message: "found in the kernel"})
				tg.own = append(tg.own, i)
			}
			row.targets = []probeTarget{tg}
			explain(&row, 0, c.res)
			var codes []string
			var msgs []string
			for _, p := range row.Problems {
				codes = append(codes, p.Code)
				msgs = append(msgs, p.Message)
			}
			if !slices.Equal(codes, c.codes) {
				t.Errorf("codes = %v, want %v (%q)", codes, c.codes, msgs)
			}
			if c.contain != "" && !strings.Contains(strings.Join(msgs, "\n"), c.contain) {
				t.Errorf("messages %q lack %q", msgs, c.contain)
			}
			if row.Check == nil || row.Check.Target != "10.244.3.1" {
				t.Fatalf("Check = %+v", row.Check)
			}
			if c.check != nil {
				if err := c.check(row.Check); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

func TestFormatDurationAndWrap(t *testing.T) {
	for d, want := range map[time.Duration]string{
		23*time.Hour + 59*time.Minute + 30*time.Second: "23h59m",
		-5 * time.Minute: "5m",
		42 * time.Second: "42s",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
	lines := wrap("aaa bbb `journalctl -u weft` ccc", 12)
	if !slices.Equal(lines, []string{"aaa bbb", "`journalctl -u weft`", "ccc"}) {
		t.Errorf("wrap split a quoted command: %q", lines)
	}
}
