package lab

import (
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestPlanDefaultsMirrorSeedDeployment(t *testing.T) {
	topo, err := Plan(Spec{Pods: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := topo.Etcd.Config, `{"Network": "172.7.0.0/16", "Backend": {"Type": "host-gw"}}`; got != want {
		t.Errorf("network config = %s, want %s", got, want)
	}
	if got, want := topo.Etcd.ConfigKey, "/coreos.com/network/config"; got != want {
		t.Errorf("config key = %s, want %s", got, want)
	}
	if got, want := topo.Etcd.ClientURL, "http://10.4.7.12:2379"; got != want {
		t.Errorf("etcd client URL = %s, want %s", got, want)
	}
	if got, want := topo.Underlay.Addr, netip.MustParsePrefix("10.4.7.12/24"); got != want {
		t.Errorf("underlay address = %s, want %s", got, want)
	}
	if got, want := topo.StateDir, "/run/weft-lab/weft"; got != want {
		t.Errorf("state dir = %s, want %s", got, want)
	}
	var hosts []string
	for _, h := range topo.Hosts {
		hosts = append(hosts, h.NS+"="+h.Addr.String())
	}
	if got, want := strings.Join(hosts, " "), "weft-h1=10.4.7.21/24 weft-h2=10.4.7.22/24 weft-h3=10.4.7.23/24"; got != want {
		t.Errorf("hosts = %s, want %s", got, want)
	}
	var pods []string
	for _, p := range topo.Pods() {
		pods = append(pods, p.NS)
	}
	if got, want := strings.Join(pods, " "), "weft-h1p1 weft-h1p2 weft-h2p1 weft-h2p2 weft-h3p1 weft-h3p2"; got != want {
		t.Errorf("pods = %s, want %s", got, want)
	}
	if got, want := strings.Join(topo.Namespaces(), " "),
		"weft-h1p1 weft-h1p2 weft-h2p1 weft-h2p2 weft-h3p1 weft-h3p2 weft-h1 weft-h2 weft-h3 weft-ul"; got != want {
		t.Errorf("namespaces (teardown order) = %s, want %s", got, want)
	}
}

func TestPlanSpecVariants(t *testing.T) {
	tests := []struct {
		name       string
		spec       Spec
		configKey  string
		config     string
		lastHostIP string
		stateDir   string
	}{
		{
			name:       "atomic.io prefix and vxlan",
			spec:       Spec{Prefix: "a", Hosts: 2, Backend: "vxlan", EtcdPrefix: "/atomic.io/network"},
			configKey:  "/atomic.io/network/config",
			config:     `{"Network": "172.7.0.0/16", "Backend": {"Type": "vxlan"}}`,
			lastHostIP: "10.4.7.22",
			stateDir:   "/run/weft-lab/a",
		},
		{
			name:       "largest lab",
			spec:       Spec{Prefix: "big", Hosts: MaxHosts, Network: netip.MustParsePrefix("10.244.0.0/16"), StateRoot: "/tmp/x"},
			configKey:  "/coreos.com/network/config",
			config:     `{"Network": "10.244.0.0/16", "Backend": {"Type": "host-gw"}}`,
			lastHostIP: "10.4.7.220",
			stateDir:   "/tmp/x/big",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			topo, err := Plan(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			if topo.Etcd.ConfigKey != tc.configKey {
				t.Errorf("config key = %s, want %s", topo.Etcd.ConfigKey, tc.configKey)
			}
			if topo.Etcd.Config != tc.config {
				t.Errorf("config = %s, want %s", topo.Etcd.Config, tc.config)
			}
			if got := topo.Hosts[len(topo.Hosts)-1].Addr.Addr().String(); got != tc.lastHostIP {
				t.Errorf("last host IP = %s, want %s", got, tc.lastHostIP)
			}
			if topo.StateDir != tc.stateDir {
				t.Errorf("state dir = %s, want %s", topo.StateDir, tc.stateDir)
			}
		})
	}
}

func TestPlanNamesFitTheKernelAndAreUnique(t *testing.T) {
	topo, err := Plan(Spec{Prefix: "abcdefghijkl", Hosts: MaxHosts, Pods: MaxPods})
	if err != nil {
		t.Fatal(err)
	}
	seenNS := map[string]bool{}
	seenIP := map[netip.Addr]bool{topo.Underlay.Addr.Addr(): true}
	for _, h := range topo.Hosts {
		for _, ifname := range []string{h.Wire, h.Iface, topo.Underlay.Bridge} {
			if len(ifname) > 15 {
				t.Errorf("%s: interface name %q is longer than IFNAMSIZ-1", h.Name, ifname)
			}
		}
		if !topo.Underlay.Addr.Contains(h.Addr.Addr()) || h.Addr.Bits() != topo.Underlay.Addr.Bits() {
			t.Errorf("%s: address %s not on the underlay %s", h.Name, h.Addr, topo.Underlay.Addr)
		}
		if seenIP[h.Addr.Addr()] {
			t.Errorf("%s: address %s used twice", h.Name, h.Addr)
		}
		seenIP[h.Addr.Addr()] = true
		if h.Addr.Addr() == topo.Underlay.Addr.Masked().Addr() || h.Addr.Addr() == netip.MustParseAddr("10.4.7.255") {
			t.Errorf("%s: address %s is the network or broadcast address", h.Name, h.Addr)
		}
		for _, p := range h.Pods {
			if len(p.IfName) > 15 {
				t.Errorf("%s: interface name %q too long", p.Name, p.IfName)
			}
		}
	}
	for _, ns := range topo.Namespaces() {
		if seenNS[ns] {
			t.Errorf("namespace %s planned twice", ns)
		}
		seenNS[ns] = true
		if !IsLabNS(topo.Spec.Prefix, ns) {
			t.Errorf("planned namespace %s is not recognised as the lab's", ns)
		}
	}
	if want := MaxHosts*(MaxPods+1) + 1; len(seenNS) != want {
		t.Errorf("%d namespaces, want %d", len(seenNS), want)
	}
}

func TestPlanRejectsBadSpecs(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
		want string
	}{
		{"prefix with dash", Spec{Prefix: "we-ft"}, "prefix"},
		{"prefix upper case", Spec{Prefix: "Weft"}, "prefix"},
		{"prefix too long", Spec{Prefix: "abcdefghijklm"}, "prefix"},
		{"prefix with slash", Spec{Prefix: "../etc"}, "prefix"},
		{"negative hosts", Spec{Hosts: -1}, "hosts"},
		{"too many hosts", Spec{Hosts: MaxHosts + 1}, "hosts"},
		{"negative pods", Spec{Pods: -1}, "pods"},
		{"too many pods", Spec{Pods: MaxPods + 1}, "pods"},
		{"backend with quote", Spec{Backend: `host-gw"`}, "backend"},
		{"network too small", Spec{Network: netip.MustParsePrefix("172.7.0.0/24")}, "network"},
		{"network not masked", Spec{Network: netip.MustParsePrefix("172.7.1.0/16")}, "network"},
		{"network ipv6", Spec{Network: netip.MustParsePrefix("fd00::/48")}, "network"},
		{"network overlaps underlay", Spec{Network: netip.MustParsePrefix("10.0.0.0/8")}, "overlaps"},
		{"etcd prefix relative", Spec{EtcdPrefix: "coreos.com/network"}, "etcd prefix"},
		{"etcd prefix trailing slash", Spec{EtcdPrefix: "/coreos.com/network/"}, "etcd prefix"},
		{"state root relative", Spec{StateRoot: "run/lab"}, "state root"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Plan(tc.spec)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Plan(%+v) error = %v, want one mentioning %q", tc.spec, err, tc.want)
			}
		})
	}
}

func TestIsLabNS(t *testing.T) {
	tests := []struct {
		prefix, name string
		want         bool
	}{
		{"weft", "weft-ul", true},
		{"weft", "weft-h1", true},
		{"weft", "weft-h12", true},
		{"weft", "weft-h3p2", true},
		{"weft", "weft-h10p10", true},
		{"weft", "weft", false},
		{"weft", "weft-", false},
		{"weft", "weft-ul2", false},
		{"weft", "weft-h0", false},
		{"weft", "weft-h01", false},
		{"weft", "weft-h1p", false},
		{"weft", "weft-h1x", false},
		{"weft", "weft-a-h1", false},
		{"weft", "wefta-h1", false},
		{"weft", "xweft-h1", false},
		{"a", "a-h1", true},
		{"a", "ab-h1", false},
		{"a", "b-h1", false},
		{"weft", "wtlab1a2b3c", false},
	}
	for _, tc := range tests {
		if got := IsLabNS(tc.prefix, tc.name); got != tc.want {
			t.Errorf("IsLabNS(%q, %q) = %v, want %v", tc.prefix, tc.name, got, tc.want)
		}
	}
}

func TestResolveNS(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"ul", "weft-ul", true},
		{"h1", "weft-h1", true},
		{"h2p1", "weft-h2p1", true},
		{"weft-h2p1", "weft-h2p1", true},
		{"h1;rm", "", false},
		{"root", "", false},
		{"other-h1", "", false},
		{"", "", false},
	}
	for _, tc := range tests {
		got, err := ResolveNS("weft", tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ResolveNS(weft, %q) = %q, %v; want %q, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestAgentAndEtcdArgs(t *testing.T) {
	topo, err := Plan(Spec{Prefix: "b", Hosts: 2, EtcdPrefix: "/atomic.io/network", StateRoot: "/run/weft-lab"})
	if err != nil {
		t.Fatal(err)
	}
	h2, ok := topo.Host("h2")
	if !ok {
		t.Fatal("no host h2")
	}
	want := []string{"agent",
		"--etcd-endpoints=http://10.4.7.12:2379",
		"--etcd-prefix=/atomic.io/network",
		"--iface=eth0",
		"--public-ip=10.4.7.22",
		"--subnet-file=/run/weft-lab/b/h2/subnet.env",
		"--state-dir=/run/weft-lab/b/h2",
		"--healthz-ip=127.0.0.1",
		"--healthz-port=2401",
		"--log-format=text",
	}
	if got := topo.AgentArgs(h2); !slices.Equal(got, want) {
		t.Errorf("agent args:\n got %q\nwant %q", got, want)
	}
	wantEtcd := []string{"lab", "_etcd",
		"--data-dir=/run/weft-lab/b/etcd/data",
		"--listen-client=http://10.4.7.12:2379",
		"--listen-peer=http://10.4.7.12:2380",
	}
	if got := topo.EtcdArgs(); !slices.Equal(got, wantEtcd) {
		t.Errorf("etcd args:\n got %q\nwant %q", got, wantEtcd)
	}
}

func TestConfList(t *testing.T) {
	topo, err := Plan(Spec{Hosts: 1, Pods: 1})
	if err != nil {
		t.Fatal(err)
	}
	b, err := topo.ConfList(topo.Hosts[0])
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "name": "cbr0",
  "cniVersion": "1.0.0",
  "plugins": [
    {
      "type": "flannel",
      "subnetFile": "/run/weft-lab/weft/h1/subnet.env",
      "dataDir": "/run/weft-lab/weft/h1/cni",
      "ipam": {
        "type": "host-local",
        "dataDir": "/run/weft-lab/weft/h1/ipam"
      },
      "delegate": {
        "hairpinMode": true,
        "isDefaultGateway": true,
        "ipMasq": false
      }
    }
  ]
}
`
	if string(b) != want {
		t.Errorf("conflist:\n%s\nwant:\n%s", b, want)
	}
	// The flannel plugin rejects a delegate that carries ipam.
	var parsed struct {
		Plugins []struct {
			Delegate map[string]any `json:"delegate"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(b, &parsed); err != nil {
		t.Fatal(err)
	}
	if _, ok := parsed.Plugins[0].Delegate["ipam"]; ok {
		t.Error("delegate carries ipam, which the flannel plugin refuses")
	}
}
