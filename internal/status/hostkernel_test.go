package status

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/kernel"
	"github.com/weftnet/weft/internal/kernel/hostfacts"
	"github.com/weftnet/weft/internal/kernel/neightable"
)

// hostgwOnSegment is the healthy host-gw host with its connected route,
// so that each peer is its own next hop: it needs 2 peers + 253 pod
// addresses + 16 = 271 neighbour entries.
func hostgwOnSegment(t *testing.T) Inputs {
	in := hostgwHealthy(t)
	in.Kernel.Routes = append(in.Kernel.Routes, kernel.Route{Dst: pfx("192.168.1.0/24"), LinkIndex: 2})
	return in
}

func sample(gc2, gc3 int64, fulls uint64) []kernelSample {
	return []kernelSample{{
		family:     neightable.IPv4,
		thresholds: neightable.Thresholds{GC1: 128, GC2: gc2, GC3: gc3},
		threshOK:   true,
		stats:      neightable.Stats{Entries: 200, TableFulls: fulls},
		statsOK:    true,
	}}
}

func codes(fs []hostfacts.Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Code)
	}
	return out
}

func TestHostFindings(t *testing.T) {
	in := hostgwOnSegment(t)
	r := Build(in)
	if n := hostNeed(in, r, neightable.IPv4); n.NextHops != 2 || n.Pods != 253 || n.Total() != 271 {
		t.Fatalf("need = %+v (%d)", n, n.Total())
	}
	if n := hostNeed(in, r, neightable.IPv6); n.NextHops != 0 || n.Pods != 0 {
		t.Fatalf("IPv6 need of an IPv4-only host = %+v", n)
	}
	for _, tc := range []struct {
		name          string
		before, after []kernelSample
		want          []string
	}{
		{"room to spare", sample(512, 1024, 0), sample(512, 1024, 0), nil},
		{"past gc_thresh2", sample(270, 1024, 0), sample(270, 1024, 0), []string{hostfacts.CodeNeighThresh2}},
		{"past gc_thresh3", sample(200, 270, 0), sample(200, 270, 0), []string{hostfacts.CodeNeighThresh3}},
		{"the probes overflowed the table", sample(512, 1024, 4), sample(512, 1024, 9), []string{hostfacts.CodeNeighTableFull}},
		{"overflows before status ran are history", sample(512, 1024, 9), sample(512, 1024, 9), nil},
		{"unreadable thresholds", []kernelSample{{family: neightable.IPv4}}, []kernelSample{{family: neightable.IPv4}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := codes(hostFindings(in, r, tc.before, tc.after, nil))
			if !slices.Equal(got, tc.want) {
				t.Errorf("findings %v, want %v", got, tc.want)
			}
		})
	}
}

// A dual-stack host's IPv6 table holds its IPv6 next hops (the peers'
// PublicIPv6s on the segment; a peer without IPv6 is none) and its pods'
// IPv6 addresses, and is judged against net.ipv6's thresholds alone.
func TestHostFindingsIPv6(t *testing.T) {
	in := hostgwOnSegment(t)
	in.Config = mustConfig(t, `{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"host-gw"}}`)
	for i := range in.Leases {
		in.Leases[i].IPv6Subnet = netip.MustParsePrefix("fd00:10:244:" + string(rune('1'+i)) + "::/64")
		in.Leases[i].Attrs.PublicIPv6 = netip.MustParseAddr("2001:db8::" + string(rune('1'+i)))
	}
	in.Leases[2].IPv6Subnet, in.Leases[2].Attrs.PublicIPv6 = netip.Prefix{}, netip.Addr{} // IPv4 only
	in.Ext.PublicIPv6 = netip.MustParseAddr("2001:db8::1")
	in.SubnetEnv.IPv6Subnet = pfx("fd00:10:244:1::/64")
	in.Kernel.Routes = append(in.Kernel.Routes, kernel.Route{Dst: pfx("2001:db8::/64"), LinkIndex: 2})
	r := Build(in)
	n := hostNeed(in, r, neightable.IPv6)
	if n.NextHops != 1 || n.Pods != hostfacts.MaxPods {
		t.Fatalf("IPv6 need = %+v, want 1 next hop and %d pods", n, hostfacts.MaxPods)
	}
	v6 := func(gc2 int64) kernelSample {
		return kernelSample{family: neightable.IPv6, thresholds: neightable.Thresholds{GC1: 128, GC2: gc2, GC3: 4096}, threshOK: true, statsOK: true}
	}
	after := append(sample(512, 1024, 0), v6(n.Total()-1))
	got := hostFindings(in, r, nil, after, nil)
	if len(got) != 1 || got[0].Code != hostfacts.CodeNeighThresh2 || got[0].Sysctl != "net.ipv6.neigh.default.gc_thresh2" {
		t.Errorf("findings %+v, want one gc_thresh2 warning on the IPv6 table", got)
	}
	if got := hostFindings(in, r, nil, append(sample(512, 1024, 0), v6(n.Total())), nil); len(got) != 0 {
		t.Errorf("findings %+v with the IPv6 table just big enough", got)
	}
}

func TestFactsHostChecksRPFilterOnlyWithDirectRouting(t *testing.T) {
	in := hostgwHealthy(t)
	if h := factsHost(in, true); h.RPFilterDevs != nil || !h.Kube {
		t.Errorf("host-gw: %+v", h)
	}
	in.Config = mustConfig(t, `{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","DirectRouting":true}}`)
	if h := factsHost(in, false); !slices.Equal(h.RPFilterDevs, []string{"flannel.1", "eth0"}) {
		t.Errorf("vxlan DirectRouting: %+v", h)
	}
}

// A warning is listed apart with its fix and makes the summary (and the
// exit status) "warnings only"; an error finding is a problem.
func TestFindingsInTheReport(t *testing.T) {
	in := hostgwOnSegment(t)
	r := Build(in)
	r.Checked = true
	warn := hostFindings(in, r, nil, sample(256, 1024, 0), nil)
	addFindings(&r, warn)
	if !r.OK || r.ProblemCount != 0 || r.WarningCount != 1 {
		t.Fatalf("with a warning: ok %v problems %d warnings %d", r.OK, r.ProblemCount, r.WarningCount)
	}
	w := r.Warnings[0]
	if w.Have != "net.ipv4.neigh.default.gc_thresh2 = 256" || w.Want != "net.ipv4.neigh.default.gc_thresh2 = 1024" ||
		!strings.HasSuffix(w.Fix, "(or run weft with --raise-neigh-gc-thresh)") {
		t.Errorf("warning %+v", w)
	}
	var b bytes.Buffer
	if err := WriteTable(&b, r); err != nil {
		t.Fatal(err)
	}
	golden(t, "hostgw-warnings.txt", b.Bytes())

	addFindings(&r, []hostfacts.Finding{{Code: hostfacts.CodeIPForward, Severity: hostfacts.Error, Sysctl: "net.ipv4.ip_forward",
		Current: "0", Suggested: "1", Message: "IPv4 forwarding is off", Fix: "sysctl -w net.ipv4.ip_forward=1"}})
	if r.OK || r.ProblemCount != 1 || r.Problems[0].Code != hostfacts.CodeIPForward || r.Problems[0].Fix == "" {
		t.Errorf("with an error finding: ok %v problems %+v", r.OK, r.Problems)
	}
	b.Reset()
	if err := WriteTable(&b, r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "PROBLEMS: 3 leases, 2 peers, probed, 1 problem, 1 warning") {
		t.Errorf("summary with both:\n%s", b.String())
	}
}

// Without warnings the JSON is as before: no warnings fields at all.
func TestNoWarningsNoJSONFields(t *testing.T) {
	r := Build(hostgwHealthy(t))
	addFindings(&r, nil)
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "warning") {
		t.Errorf("JSON without warnings mentions them: %s", b)
	}
}
