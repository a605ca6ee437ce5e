package netconf

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestParseDefaults(t *testing.T) {
	tests := []struct {
		name                string
		in                  string
		network             string
		subnetLen           int
		min, max            string
		backend             string
		rawBackend          string
		subnets             int
		v6net, v6min, v6max string
		v6len               int
	}{
		{
			name:    "seed host-gw",
			in:      `{"Network": "172.7.0.0/16", "Backend": {"Type": "host-gw"}}`,
			network: "172.7.0.0/16", subnetLen: 24, min: "172.7.1.0", max: "172.7.255.0",
			backend: "host-gw", rawBackend: `{"Type": "host-gw"}`, subnets: 255,
		},
		{
			name:    "case-insensitive keys and backend options kept",
			in:      `{"network": "10.244.0.0/16", "backend": {"type": "VXLAN", "Directrouting": true}}`,
			network: "10.244.0.0/16", subnetLen: 24, min: "10.244.1.0", max: "10.244.255.0",
			backend: "vxlan", rawBackend: `{"type": "VXLAN", "Directrouting": true}`, subnets: 255,
		},
		{
			name:    "backend absent means udp (flannel's code, not its docs)",
			in:      `{"Network": "10.0.0.0/8"}`,
			network: "10.0.0.0/8", subnetLen: 24, min: "10.0.1.0", max: "10.255.255.0",
			backend: "udp", rawBackend: `{"Type":"udp"}`, subnets: 65535,
		},
		{
			name:    "backend null means udp",
			in:      `{"Network": "10.0.0.0/16", "Backend": null}`,
			network: "10.0.0.0/16", subnetLen: 24, min: "10.0.1.0", max: "10.0.255.0",
			backend: "udp", rawBackend: `{"Type":"udp"}`, subnets: 255,
		},
		{
			name:    "/22 still gets /24",
			in:      `{"Network": "10.1.0.0/22", "Backend": {"Type": "vxlan"}}`,
			network: "10.1.0.0/22", subnetLen: 24, min: "10.1.1.0", max: "10.1.3.0",
			backend: "vxlan", rawBackend: `{"Type": "vxlan"}`, subnets: 3,
		},
		{
			name:    "/23 gets prefix+2",
			in:      `{"Network": "10.1.0.0/23", "Backend": {"Type": "vxlan"}}`,
			network: "10.1.0.0/23", subnetLen: 25, min: "10.1.0.128", max: "10.1.1.128",
			backend: "vxlan", rawBackend: `{"Type": "vxlan"}`, subnets: 3,
		},
		{
			name:    "/28 is the smallest default network",
			in:      `{"Network": "10.1.0.0/28", "Backend": {"Type": "host-gw"}}`,
			network: "10.1.0.0/28", subnetLen: 30, min: "10.1.0.4", max: "10.1.0.12",
			backend: "host-gw", rawBackend: `{"Type": "host-gw"}`, subnets: 3,
		},
		{
			name:    "host bits in Network are masked",
			in:      `{"Network": "10.1.2.3/16", "Backend": {"Type": "host-gw"}}`,
			network: "10.1.0.0/16", subnetLen: 24, min: "10.1.1.0", max: "10.1.255.0",
			backend: "host-gw", rawBackend: `{"Type": "host-gw"}`, subnets: 255,
		},
		{
			name:    "explicit SubnetLen, Min and Max",
			in:      `{"Network": "10.5.0.0/16", "SubnetLen": 26, "SubnetMin": "10.5.10.0", "SubnetMax": "10.5.20.192", "Backend": {"Type": "host-gw"}}`,
			network: "10.5.0.0/16", subnetLen: 26, min: "10.5.10.0", max: "10.5.20.192",
			backend: "host-gw", rawBackend: `{"Type": "host-gw"}`, subnets: 44,
		},
		{
			name:    "explicit SubnetLen 30 on a /28",
			in:      `{"Network": "10.1.0.0/28", "SubnetLen": 30, "Backend": {"Type": "host-gw"}}`,
			network: "10.1.0.0/28", subnetLen: 30, min: "10.1.0.4", max: "10.1.0.12",
			backend: "host-gw", rawBackend: `{"Type": "host-gw"}`, subnets: 3,
		},
		{
			name:    "SubnetMin 0.0.0.0 means default, as in flannel",
			in:      `{"Network": "10.5.0.0/16", "SubnetMin": "0.0.0.0", "Backend": {"Type": "host-gw"}}`,
			network: "10.5.0.0/16", subnetLen: 24, min: "10.5.1.0", max: "10.5.255.0",
			backend: "host-gw", rawBackend: `{"Type": "host-gw"}`, subnets: 255,
		},
		{
			name:    "dual stack defaults",
			in:      `{"Network": "10.5.0.0/16", "EnableIPv6": true, "IPv6Network": "fc00::/48", "Backend": {"Type": "vxlan"}}`,
			network: "10.5.0.0/16", subnetLen: 24, min: "10.5.1.0", max: "10.5.255.0",
			backend: "vxlan", rawBackend: `{"Type": "vxlan"}`, subnets: 255,
			v6net: "fc00::/48", v6len: 64, v6min: "fc00:0:0:1::", v6max: "fc00:0:0:ffff::",
		},
		{
			name:    "small IPv6 network gets +2",
			in:      `{"Network": "10.5.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:12:13::/120", "Backend": {"Type": "vxlan"}}`,
			network: "10.5.0.0/16", subnetLen: 24, min: "10.5.1.0", max: "10.5.255.0",
			backend: "vxlan", rawBackend: `{"Type": "vxlan"}`, subnets: 255,
			v6net: "fd00:12:13::/120", v6len: 122, v6min: "fd00:12:13::40", v6max: "fd00:12:13::c0",
		},
		{
			name:    "IPv6 only",
			in:      `{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00::/56", "IPv6SubnetLen": 60, "Backend": {"Type": "vxlan"}}`,
			backend: "vxlan", rawBackend: `{"Type": "vxlan"}`, subnets: 0,
			v6net: "fd00::/56", v6len: 60, v6min: "fd00:0:0:10::", v6max: "fd00:0:0:f0::",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.in))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if tt.network != "" {
				if !c.EnableIPv4 {
					t.Errorf("EnableIPv4 = false, want the default true")
				}
				check(t, "Network", c.Network.String(), tt.network)
				check(t, "SubnetMin", c.SubnetMin.String(), tt.min)
				check(t, "SubnetMax", c.SubnetMax.String(), tt.max)
				if c.SubnetLen != tt.subnetLen {
					t.Errorf("SubnetLen = %d, want %d", c.SubnetLen, tt.subnetLen)
				}
			}
			if tt.v6net != "" {
				check(t, "IPv6Network", c.IPv6Network.String(), tt.v6net)
				check(t, "IPv6SubnetMin", c.IPv6SubnetMin.String(), tt.v6min)
				check(t, "IPv6SubnetMax", c.IPv6SubnetMax.String(), tt.v6max)
				if c.IPv6SubnetLen != tt.v6len {
					t.Errorf("IPv6SubnetLen = %d, want %d", c.IPv6SubnetLen, tt.v6len)
				}
			}
			check(t, "BackendType", c.BackendType, tt.backend)
			check(t, "Backend", string(c.Backend), tt.rawBackend)
			if got := c.Subnets(); got != tt.subnets {
				t.Errorf("Subnets() = %d, want %d", got, tt.subnets)
			}
		})
	}
}

func TestParseFlags(t *testing.T) {
	c, err := Parse([]byte(`{"Network":"10.244.0.0/16","EnableNFTables":true,"Backend":{"Type":"vxlan"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if !c.EnableNFTables || c.EnableIPv6 || !c.EnableIPv4 {
		t.Errorf("flags: EnableNFTables=%v EnableIPv6=%v EnableIPv4=%v, want true false true", c.EnableNFTables, c.EnableIPv6, c.EnableIPv4)
	}
	if c.IPv6Network.IsValid() || c.IPv6SubnetLen != 0 {
		t.Errorf("IPv6 fields filled although IPv6 is off: %v /%d", c.IPv6Network, c.IPv6SubnetLen)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string // substrings of the error
	}{
		{"not JSON", `{"Network": `, []string{"parse network config"}},
		{"Network wrong type", `{"Network": 5}`, []string{"Network"}},
		{"Network missing", `{"Backend": {"Type": "vxlan"}}`, []string{"Network is missing"}},
		{"Network garbage", `{"Network": "xxx", "Backend": {"Type": "vxlan"}}`, []string{"Network", `"xxx"`}},
		{"Network is IPv6", `{"Network": "fc00::/48"}`, []string{"Network", "fc00::/48", "not an IPv4"}},
		{"Network too small", `{"Network": "10.1.0.0/29"}`, []string{"Network 10.1.0.0/29 is too small. Minimum useful network prefix is /28"}},
		{"SubnetLen 31", `{"Network": "10.1.0.0/16", "SubnetLen": 31}`, []string{"SubnetLen 31", "at most 30"}},
		{"SubnetLen too short", `{"Network": "10.1.0.0/16", "SubnetLen": 17}`, []string{"SubnetLen 17", "at least 18"}},
		{"SubnetLen negative", `{"Network": "10.1.0.0/16", "SubnetLen": -1}`, []string{"SubnetLen -1"}},
		{"SubnetMin garbage", `{"Network": "10.1.0.0/16", "SubnetMin": "10.1.x"}`, []string{"SubnetMin", `"10.1.x"`}},
		{"SubnetMin outside", `{"Network": "10.1.0.0/16", "SubnetMin": "10.2.0.0"}`, []string{"SubnetMin 10.2.0.0", "not inside Network 10.1.0.0/16"}},
		{"SubnetMax outside", `{"Network": "10.1.0.0/16", "SubnetMax": "10.2.0.0"}`, []string{"SubnetMax 10.2.0.0", "not inside"}},
		{"SubnetMin unaligned", `{"Network": "10.1.0.0/16", "SubnetMin": "10.1.1.5"}`, []string{"SubnetMin 10.1.1.5", "/24 boundary"}},
		{"SubnetMax unaligned", `{"Network": "10.1.0.0/16", "SubnetLen": 25, "SubnetMax": "10.1.1.64"}`, []string{"SubnetMax 10.1.1.64", "/25 boundary"}},
		{"Min above Max", `{"Network": "10.1.0.0/16", "SubnetMin": "10.1.9.0", "SubnetMax": "10.1.8.0"}`, []string{"SubnetMin 10.1.9.0 is above SubnetMax 10.1.8.0"}},
		{"SubnetMin IPv6", `{"Network": "10.1.0.0/16", "SubnetMin": "fc00::"}`, []string{"SubnetMin", "not an IPv4 address"}},
		{"no family", `{"EnableIPv4": false, "Network": "10.1.0.0/16"}`, []string{"EnableIPv4 and EnableIPv6 are both false"}},
		{"IPv6Network missing", `{"Network": "10.1.0.0/16", "EnableIPv6": true}`, []string{"IPv6Network is missing"}},
		{"IPv6Network is IPv4", `{"Network": "10.1.0.0/16", "EnableIPv6": true, "IPv6Network": "10.2.0.0/16"}`, []string{"IPv6Network", "not an IPv6"}},
		{"IPv6Network too small", `{"Network": "10.1.0.0/16", "EnableIPv6": true, "IPv6Network": "fc00::/125"}`, []string{"IPv6Network fc00::/125 is too small", "/124"}},
		{"IPv6SubnetLen 127", `{"Network": "10.1.0.0/16", "EnableIPv6": true, "IPv6Network": "fc00::/48", "IPv6SubnetLen": 127}`, []string{"IPv6SubnetLen 127", "at most 126"}},
		{"IPv6SubnetLen too short", `{"Network": "10.1.0.0/16", "EnableIPv6": true, "IPv6Network": "fc00::/48", "IPv6SubnetLen": 49}`, []string{"IPv6SubnetLen 49", "at least 50"}},
		{"IPv6SubnetMin unaligned", `{"Network": "10.1.0.0/16", "EnableIPv6": true, "IPv6Network": "fc00::/48", "IPv6SubnetMin": "fc00::1"}`, []string{"IPv6SubnetMin fc00::1", "/64 boundary"}},
		{"IPv6SubnetMax outside", `{"Network": "10.1.0.0/16", "EnableIPv6": true, "IPv6Network": "fc00::/48", "IPv6SubnetMax": "fd00::"}`, []string{"IPv6SubnetMax fd00::", "not inside IPv6Network"}},
		{"Backend not object", `{"Network": "10.1.0.0/16", "Backend": "vxlan"}`, []string{"Backend", `"vxlan"`, "object"}},
		{"Backend Type missing", `{"Network": "10.1.0.0/16", "Backend": {"VNI": 1}}`, []string{"Backend.Type is missing"}},
		{"Backend Type not string", `{"Network": "10.1.0.0/16", "Backend": {"Type": 1}}`, []string{"Backend"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.in))
			if err == nil {
				t.Fatalf("Parse(%s) = %+v, want an error", tt.in, c)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// Parse leaves the backend's name and options to the backend table
// (backends.CheckOptions): any Type passes, lower-cased.
func TestBackendTypeNotChecked(t *testing.T) {
	c, err := Parse([]byte(`{"Network": "10.1.0.0/16", "Backend": {"Type": "WireGuard", "PersistentKeepaliveInterval": 25}}`))
	if err != nil {
		t.Fatal(err)
	}
	check(t, "BackendType", c.BackendType, "wireguard")
	check(t, "Backend", string(c.Backend), `{"Type": "WireGuard", "PersistentKeepaliveInterval": 25}`)
}

// Whatever the input, Parse returns a config that holds what its
// documentation promises, or an error; it never panics.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"Network": "172.7.0.0/16", "Backend": {"Type": "host-gw"}}`,
		`{"Network": "10.1.2.3/16", "SubnetLen": 26, "SubnetMin": "10.1.10.0", "SubnetMax": "10.1.20.192", "Backend": {"type": "VXLAN", "VNI": 4}}`,
		`{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00::/56", "IPv6SubnetLen": 60, "Backend": {"Type": "vxlan"}}`,
		`{"Network": "10.1.0.0/28"}`,
		`{"Network": "10.1.0.0/16", "Backend": null}`,
		`{"Network": "10.1.0.0/16", "Backend": "vxlan"}`,
		`[]`, ``, `{"Network": 1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			return
		}
		if c.BackendType == "" || c.BackendType != strings.ToLower(c.BackendType) || len(c.Backend) == 0 {
			t.Fatalf("Parse(%q): BackendType %q, Backend %s", data, c.BackendType, c.Backend)
		}
		if !c.EnableIPv4 && !c.EnableIPv6 {
			t.Fatalf("Parse(%q): no family enabled", data)
		}
		if c.EnableIPv4 {
			n := c.Network
			if !n.IsValid() || !n.Addr().Is4() || n != n.Masked() || c.SubnetLen < n.Bits()+2 || c.SubnetLen > 30 {
				t.Fatalf("Parse(%q): Network %s, SubnetLen %d", data, n, c.SubnetLen)
			}
			if !n.Contains(c.SubnetMin) || !n.Contains(c.SubnetMax) || c.SubnetMax.Less(c.SubnetMin) {
				t.Fatalf("Parse(%q): SubnetMin %s, SubnetMax %s in %s", data, c.SubnetMin, c.SubnetMax, n)
			}
			if c.Subnets() < 1 {
				t.Fatalf("Parse(%q): an empty pool", data)
			}
		}
		if c.EnableIPv6 {
			n := c.IPv6Network
			if !n.IsValid() || !n.Addr().Is6() || c.IPv6SubnetLen < n.Bits()+2 || c.IPv6SubnetLen > 126 {
				t.Fatalf("Parse(%q): IPv6Network %s, IPv6SubnetLen %d", data, n, c.IPv6SubnetLen)
			}
		}
	})
}

func TestSubnetsZeroForInvalid(t *testing.T) {
	if n := (&Config{}).Subnets(); n != 0 {
		t.Errorf("Subnets() of an empty config = %d, want 0", n)
	}
	c := &Config{EnableIPv4: true, SubnetLen: 24, SubnetMin: netip.MustParseAddr("10.0.5.0"), SubnetMax: netip.MustParseAddr("10.0.4.0")}
	if n := c.Subnets(); n != 0 {
		t.Errorf("Subnets() with Min above Max = %d, want 0", n)
	}
}

func check(t *testing.T, field, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %q, want %q", field, got, want)
	}
}

func TestCheckEtcd(t *testing.T) {
	dual, err := Parse([]byte(`{"Network": "10.5.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:10:244::/56"}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := dual.CheckEtcd(); err != nil || dual.Families() != "IPv4+IPv6" {
		t.Errorf("dual-stack: CheckEtcd = %v, Families = %q", err, dual.Families())
	}
	if dual.IPv6SubnetLen != 64 || dual.IPv6SubnetMin.String() != "fd00:10:244:1::" || dual.IPv6SubnetMax.String() != "fd00:10:244:ff::" {
		t.Errorf("IPv6 defaults: /%d %s..%s, want /64 fd00:10:244:1::..fd00:10:244:ff::", dual.IPv6SubnetLen, dual.IPv6SubnetMin, dual.IPv6SubnetMax)
	}
	v6, err := Parse([]byte(`{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00:10:244::/56"}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := v6.CheckEtcd(); !errors.Is(err, ErrIPv6OnlyNeedsKube) || !strings.Contains(err.Error(), "EnableIPv4 is false") || v6.Families() != "IPv6" {
		t.Errorf("IPv6-only: CheckEtcd = %v, Families = %q; want an error naming EnableIPv4", err, v6.Families())
	}
}
