package lab

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func ep(name, addr string) Endpoint {
	return Endpoint{Name: name, Addr: netip.MustParseAddr(addr)}
}

func TestCheckVerdicts(t *testing.T) {
	tests := []struct {
		name    string
		check   Check
		ok      bool
		problem string
	}{
		{
			name:  "pod pair, source preserved",
			check: Check{Kind: PodToPod, From: ep("h1p1", "172.7.37.2"), To: ep("h2p1", "172.7.52.2"), RTT: 80 * time.Microsecond, SeenSource: netip.MustParseAddr("172.7.37.2")},
			ok:    true,
		},
		{
			name:    "pod pair, source translated to the host",
			check:   Check{Kind: PodToPod, From: ep("h1p1", "172.7.37.2"), To: ep("h2p1", "172.7.52.2"), SeenSource: netip.MustParseAddr("10.4.7.21")},
			problem: "server saw 10.4.7.21, not 172.7.37.2",
		},
		{
			name:    "pod pair, no echo reply",
			check:   Check{Kind: PodToPod, From: ep("h1p1", "172.7.37.2"), To: ep("h2p1", "172.7.52.2"), ICMPErr: errors.New("no reply within 2s"), SeenSource: netip.MustParseAddr("172.7.37.2")},
			problem: "icmp: no reply within 2s",
		},
		{
			name:    "pod pair, tcp refused",
			check:   Check{Kind: PodToPod, From: ep("h1p1", "172.7.37.2"), To: ep("h2p1", "172.7.52.2"), TCPErr: errors.New("connection refused")},
			problem: "tcp: connection refused",
		},
		{
			name:  "host to pod needs no tcp",
			check: Check{Kind: HostToPod, From: ep("h1", "10.4.7.21"), To: ep("h2p1", "172.7.52.2")},
			ok:    true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.check.OK(); got != tc.ok {
				t.Errorf("OK() = %v, want %v", got, tc.ok)
			}
			if p := tc.check.Problem(); !strings.Contains(p, tc.problem) || (tc.ok && p != "") {
				t.Errorf("Problem() = %q, want it to contain %q", p, tc.problem)
			}
		})
	}
}

func TestResultSummaryAndTable(t *testing.T) {
	good := Check{Kind: PodToPod, From: ep("h1p1", "172.7.37.2"), To: ep("h2p1", "172.7.52.2"), Path: "direct", RTT: 81 * time.Microsecond, SeenSource: netip.MustParseAddr("172.7.37.2")}
	natted := Check{Kind: PodToPod, From: ep("h2p1", "172.7.52.2"), To: ep("h1p1", "172.7.37.2"), Path: "vxlan", RTT: 1500 * time.Microsecond, SeenSource: netip.MustParseAddr("10.4.7.22")}
	host := Check{Kind: HostToPod, From: ep("h1", "10.4.7.21"), To: ep("h2p1", "172.7.52.2"), RTT: 40 * time.Microsecond}

	all := Result{Checks: []Check{good, host}}
	if !all.OK() {
		t.Error("all-good result is not OK")
	}
	if got, want := all.Summary(), "1/1 pod pairs ok, source IPs preserved; 1/1 host→pod ok"; got != want {
		t.Errorf("summary = %q, want %q", got, want)
	}

	bad := Result{Checks: []Check{good, natted, host}}
	if bad.OK() {
		t.Error("result with a translated source is OK")
	}
	if got, want := bad.Summary(), "1/2 pod pairs ok, 1 saw a translated source; 1/1 host→pod ok"; got != want {
		t.Errorf("summary = %q, want %q", got, want)
	}
	if (Result{}).OK() {
		t.Error("a result without checks is OK")
	}

	var b strings.Builder
	if err := WriteTable(&b, bad.Checks); err != nil {
		t.Fatal(err)
	}
	want := `FROM  SOURCE      TO    DESTINATION  PATH    ICMP RTT  TCP SEEN-SOURCE  VERDICT
h1p1  172.7.37.2  h2p1  172.7.52.2   direct  81µs      172.7.37.2       ok
h2p1  172.7.52.2  h1p1  172.7.37.2   vxlan   1.50ms    10.4.7.22        FAIL: tcp: server saw 10.4.7.22, not 172.7.52.2 (source translated)
h1    10.4.7.21   h2p1  172.7.52.2   -       40µs      -                ok
`
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
	if got, want := bad.Paths(), "pod pairs by path: direct 1, vxlan 1"; got != want {
		t.Errorf("paths = %q, want %q", got, want)
	}
}

func TestPathName(t *testing.T) {
	peer := netip.MustParseAddr("10.4.7.22")
	router := netip.MustParseAddr("10.4.7.1")
	tests := []struct {
		name    string
		backend string
		hop     routeHop
		want    string
	}{
		{"host-gw route via the peer", "host-gw", routeHop{Dev: "eth0", DevKind: "veth", Via: peer}, "host-gw"},
		{"DirectRouting route via the peer", "vxlan", routeHop{Dev: "eth0", DevKind: "veth", Via: peer}, "direct"},
		{"onlink route through flannel.1", "vxlan", routeHop{Dev: "flannel.1", DevKind: "vxlan", Via: netip.MustParseAddr("172.7.52.0")}, "vxlan"},
		{"network route through flannel0", "udp", routeHop{Dev: "flannel0", DevKind: "tuntap"}, "udp"},
		{"network route through flannel-wg", "wireguard", routeHop{Dev: "flannel-wg", DevKind: "tuntap"}, "wireguard"},
		{"default route to the router", "host-gw", routeHop{Dev: "eth0", DevKind: "veth", Via: router}, "via 10.4.7.1 dev eth0"},
		{"on-link without gateway", "host-gw", routeHop{Dev: "eth0", DevKind: "veth"}, "dev eth0"},
		{"no route", "vxlan", routeHop{}, "no route"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := pathName(tc.backend, tc.hop, peer); got != tc.want {
				t.Errorf("pathName(%s, %+v) = %q, want %q", tc.backend, tc.hop, got, tc.want)
			}
		})
	}
}

// Hundreds of checks failing for want of neighbour entries are reported
// as that one cause, not row by row.
func TestWriteReportNamesAnOverflowOnce(t *testing.T) {
	ok := Check{Kind: PodToPod, From: ep("h1p1", "172.7.37.2"), To: ep("h2p1", "172.7.52.2"), SeenSource: netip.MustParseAddr("172.7.37.2")}
	res := Result{Checks: []Check{ok}}
	for range 300 {
		res.Checks = append(res.Checks, Check{Kind: PodToPod, From: ep("h1p1", "172.7.37.2"), To: ep("h3p1", "172.7.9.2"),
			ICMPErr: errors.New("no echo reply from 172.7.9.2 within 3s"), TCPErr: errors.New("i/o timeout")})
	}
	res.Overflow = &NeighOverflow{Table: "arp_cache", Sysctl: "net.ipv4.neigh.default.gc_thresh3", Limit: 1024, Suggest: 6144, Refused: 812}
	var b strings.Builder
	if err := WriteReport(&b, res); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if n := strings.Count(out, "no echo reply"); n != 0 {
		t.Errorf("the report lists %d timeouts:\n%s", n, out)
	}
	if n := strings.Count(out, "neighbour table (arp_cache) overflowed"); n != 1 {
		t.Errorf("the report names the overflow %d times, want once:\n%s", n, out)
	}
	for _, want := range []string{
		"300 of 301 checks failed because",
		"it refused 812 new entries",
		"net.ipv4.neigh.default.gc_thresh3 = 1024",
		"sysctl -w net.ipv4.neigh.default.gc_thresh3=6144",
		"1/301 pod pairs ok",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if err := res.Err(); err == nil || !strings.Contains(err.Error(), "300 of 301 checks failed: neighbour table overflow") {
		t.Errorf("Err = %v", err)
	}
}
