package hostfacts

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/sysctl"
	"github.com/weftnet/weft/internal/sysctl/sysctltest"
)

// fakeProc writes files below a temporary /proc-like root and returns a
// Reader on it; tests never touch the host's values.
func fakeProc(t *testing.T, files map[string]string) Reader {
	t.Helper()
	root := sysctltest.Tree(t, files)
	r := FromProcRoot(root)
	r.NetDir = filepath.Join(root, "class-net")
	return r
}

// healthy is a host on which every fact is right.
func healthy() map[string]string {
	return map[string]string{
		"sys/net/ipv4/ip_forward":                 "1",
		"sys/net/ipv6/conf/all/forwarding":        "1",
		"sys/net/bridge/bridge-nf-call-iptables":  "1",
		"sys/net/bridge/bridge-nf-call-ip6tables": "1",
		"sys/net/ipv4/conf/all/rp_filter":         "0",
		"sys/net/ipv4/conf/eth0/rp_filter":        "2",
		"sys/net/ipv4/conf/flannel.1/rp_filter":   "0",
		"sys/net/ipv4/neigh/default/gc_thresh1":   "128",
		"sys/net/ipv4/neigh/default/gc_thresh2":   "512",
		"sys/net/ipv4/neigh/default/gc_thresh3":   "1024",
		"net/stat/arp_cache":                      "entries table_fulls\n0000000c 00000000",
		"class-net/eth0/mtu":                      "1500",
		"sys/net/ipv4/conf/default/rp_filter":     "1", // conf.default applies to new devices only, never to traffic
		"sys/net/bridge/bridge-nf-call-arptables": "0",
	}
}

var everything = Host{
	IPv6:         true,
	Kube:         true,
	RPFilterDevs: []string{"flannel.1", "eth0"},
	Underlay:     "eth0", UnderlayMTU: 1500, PodMTU: 1450, Overhead: 50,
}

func TestCheckHealthyHostHasNoFindings(t *testing.T) {
	r := fakeProc(t, healthy())
	fs, errs := r.Check(everything)
	if len(fs) != 0 || len(errs) != 0 {
		t.Fatalf("Check on a healthy host = %+v, errors %v; want nothing", fs, errs)
	}
}

// An IPv6-only network needs nothing of IPv4: its forwarding and the
// bridge's iptables hook are not judged, IPv6's are.
func TestCheckIPv6OnlyJudgesIPv6Alone(t *testing.T) {
	files := healthy()
	files["sys/net/ipv4/ip_forward"] = "0"
	files["sys/net/bridge/bridge-nf-call-iptables"] = "0"
	r := fakeProc(t, files)
	if fs, errs := r.Check(Host{IPv6: true, NoIPv4: true, Kube: true}); len(fs) != 0 || len(errs) != 0 {
		t.Errorf("IPv6-only host with IPv4 forwarding off: %+v, %v; want nothing", fs, errs)
	}
	files["sys/net/ipv6/conf/all/forwarding"] = "0"
	r = fakeProc(t, files)
	if fs, _ := r.Check(Host{IPv6: true, NoIPv4: true, Kube: true}); len(fs) != 1 || fs[0].Sysctl != "net.ipv6.conf.all.forwarding" {
		t.Errorf("IPv6-only host with IPv6 forwarding off: %+v; want that one finding", fs)
	}
}

func TestCheckFindsEachWrongFact(t *testing.T) {
	for _, tc := range []struct {
		name    string
		change  map[string]string // "" deletes the file
		host    Host
		code    string
		sev     Severity
		sysctl  string
		current string
		fix     string
	}{
		{
			name: "ip forwarding off", change: map[string]string{"sys/net/ipv4/ip_forward": "0"}, host: Host{},
			code: CodeIPForward, sev: Error, sysctl: "net.ipv4.ip_forward", current: "0", fix: "sysctl -w net.ipv4.ip_forward=1",
		},
		{
			name: "IPv6 forwarding off with IPv6 on", change: map[string]string{"sys/net/ipv6/conf/all/forwarding": "0"}, host: Host{IPv6: true},
			code: CodeIPForward, sev: Error, sysctl: "net.ipv6.conf.all.forwarding", current: "0", fix: "sysctl -w net.ipv6.conf.all.forwarding=1",
		},
		{
			name: "bridge netfilter off in Kubernetes mode", change: map[string]string{"sys/net/bridge/bridge-nf-call-iptables": "0"}, host: Host{Kube: true},
			code: CodeBridgeNF, sev: Warn, sysctl: "net.bridge.bridge-nf-call-iptables", current: "0", fix: "sysctl -w net.bridge.bridge-nf-call-iptables=1",
		},
		{
			name: "br_netfilter not loaded in Kubernetes mode",
			change: map[string]string{"sys/net/bridge/bridge-nf-call-iptables": "", "sys/net/bridge/bridge-nf-call-ip6tables": "",
				"sys/net/bridge/bridge-nf-call-arptables": ""},
			host: Host{Kube: true},
			code: CodeBrNetfilter, sev: Warn, sysctl: "net.bridge.bridge-nf-call-iptables", current: "", fix: "modprobe br_netfilter",
		},
		{
			name: "strict rp_filter on the vxlan device", change: map[string]string{"sys/net/ipv4/conf/flannel.1/rp_filter": "1"}, host: Host{RPFilterDevs: []string{"flannel.1"}},
			code: CodeRPFilter, sev: Warn, sysctl: "net/ipv4/conf/flannel.1/rp_filter", current: "1", fix: "sysctl -w net/ipv4/conf/flannel.1/rp_filter=2",
		},
		{
			name: "strict rp_filter from conf.all", change: map[string]string{"sys/net/ipv4/conf/all/rp_filter": "1", "sys/net/ipv4/conf/eth0/rp_filter": "0"}, host: Host{RPFilterDevs: []string{"eth0"}},
			code: CodeRPFilter, sev: Warn, sysctl: "net.ipv4.conf.eth0.rp_filter", current: "0 (net.ipv4.conf.all.rp_filter=1 applies", fix: "sysctl -w net.ipv4.conf.eth0.rp_filter=2",
		},
		{
			name: "underlay MTU lowered after start", host: Host{Underlay: "eth0", UnderlayMTU: 1400, PodMTU: 1450, Overhead: 50},
			code: CodeUnderlayMTU, sev: Error, current: "pod MTU 1450 + 50 bytes of encapsulation, eth0's MTU 1400", fix: "MTU 1350",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := healthy()
			for k, v := range tc.change {
				if v == "" {
					delete(files, k)
				} else {
					files[k] = v
				}
			}
			r := fakeProc(t, files)
			fs, errs := r.Check(tc.host)
			if len(errs) != 0 {
				t.Fatalf("errors: %v", errs)
			}
			if len(fs) != 1 {
				t.Fatalf("findings = %+v, want one %s", fs, tc.code)
			}
			f := fs[0]
			if f.Code != tc.code || f.Severity != tc.sev || f.Sysctl != tc.sysctl || !strings.HasPrefix(f.Current, tc.current) || !strings.Contains(f.Fix, tc.fix) || f.Message == "" {
				t.Errorf("finding = %+v\nwant code %s, severity %s, sysctl %q, current %q…, fix containing %q", f, tc.code, tc.sev, tc.sysctl, tc.current, tc.fix)
			}
		})
	}
}

// rp_filter is only a problem where paths can be asymmetric: vxlan with
// DirectRouting. A device that does not exist yet is passed over.
func TestRPFilterDevices(t *testing.T) {
	if d := RPFilterDevices(false, []string{"flannel.1"}, "eth0"); d != nil {
		t.Errorf("without DirectRouting: %q, want none", d)
	}
	if d := RPFilterDevices(true, []string{"flannel.1"}, "eth0"); !slices.Equal(d, []string{"flannel.1", "eth0"}) {
		t.Errorf("with DirectRouting: %q", d)
	}
	files := healthy()
	files["sys/net/ipv4/conf/all/rp_filter"] = "1"
	delete(files, "sys/net/ipv4/conf/flannel.1/rp_filter")
	files["sys/net/ipv4/conf/eth0/rp_filter"] = "2"
	fs, errs := fakeProc(t, files).Check(Host{RPFilterDevs: []string{"flannel.1", "eth0"}})
	if len(fs) != 0 || len(errs) != 0 {
		t.Errorf("missing device and loose eth0: %+v %v; want nothing", fs, errs)
	}
}

// A container without /proc/sys, or a kernel without the parameter: one
// error per fact, naming it, and no finding.
func TestCheckUnreadableFactsAreErrorsNotFindings(t *testing.T) {
	r := fakeProc(t, nil)
	fs, errs := r.Check(Host{RPFilterDevs: []string{"eth0"}})
	if len(fs) != 0 {
		t.Errorf("findings on an empty tree: %+v", fs)
	}
	if len(errs) != 2 {
		t.Fatalf("errors = %v, want ip_forward and rp_filter", errs)
	}
	for _, err := range errs {
		if !errors.Is(err, sysctl.ErrMissing) {
			t.Errorf("%v does not wrap ErrMissing", err)
		}
	}
	if !strings.Contains(errs[0].Error(), "net.ipv4.ip_forward") {
		t.Errorf("error %q does not name the sysctl", errs[0])
	}
}

func TestMTUFindingOnlyWhenTooLarge(t *testing.T) {
	for _, h := range []Host{
		{Underlay: "eth0", UnderlayMTU: 1500, PodMTU: 1450, Overhead: 50},
		{Underlay: "eth0", UnderlayMTU: 9000, PodMTU: 1450, Overhead: 50}, // grew: fine
		{Underlay: "eth0", UnderlayMTU: 0, PodMTU: 1450, Overhead: 50},    // unknown
		{Underlay: "eth0", UnderlayMTU: 1400},                             // no pod MTU
	} {
		if f := MTUFinding(h); f != nil {
			t.Errorf("%+v: %+v, want none", h, f)
		}
	}
	f := MTUFinding(Host{Underlay: "eth0", UnderlayMTU: 1400, PodMTU: 1500})
	if f == nil || f.Suggested != "pod MTU 1400" || strings.Contains(f.Current, "encapsulation") {
		t.Errorf("host-gw with a lowered underlay: %+v", f)
	}
}

func TestReaderMTU(t *testing.T) {
	r := fakeProc(t, healthy())
	if n, err := r.MTU("eth0"); err != nil || n != 1500 {
		t.Errorf("MTU(eth0) = %d, %v", n, err)
	}
	if _, err := r.MTU("nope0"); err == nil {
		t.Error("MTU of a missing device: no error")
	}
}

func TestFromProcRoot(t *testing.T) {
	if r := FromProcRoot(""); r != (Reader{}) {
		t.Errorf("FromProcRoot(\"\") = %+v, want the host's", r)
	}
	if r := FromProcRoot("/proc/"); r != (Reader{}) {
		t.Errorf("FromProcRoot(/proc/) = %+v, want the host's", r)
	}
	// Only /proc/sys/net mounted there: statistics from this /proc.
	root := t.TempDir()
	r := FromProcRoot(root)
	if r.Sysctl.Root != filepath.Join(root, "sys") || r.StatDir != "" {
		t.Errorf("FromProcRoot without net/stat = %+v", r)
	}
	if err := os.MkdirAll(filepath.Join(root, "net", "stat"), 0o755); err != nil {
		t.Fatal(err)
	}
	if r := FromProcRoot(root); r.StatDir != filepath.Join(root, "net", "stat") {
		t.Errorf("FromProcRoot with net/stat = %+v", r)
	}
}
