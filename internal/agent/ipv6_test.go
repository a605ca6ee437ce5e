package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/backend/backends"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/netconf"
	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/internal/options"
)

func dualInterface(*options.Options) (backend.ExternalInterface, error) {
	ip, ip6 := netip.MustParseAddr("10.4.7.21"), netip.MustParseAddr("2001:db8::21")
	return backend.ExternalInterface{Name: "eth0", Index: 2, MTU: 1500, Addr: ip, PublicIP: ip, Addr6: ip6, PublicIPv6: ip6}, nil
}

// With EnableIPv6 the agent leases both subnets (reusing subnet.env's),
// publishes PublicIPv6 under flannel's dual-stack key, writes flannel's
// six subnet.env lines, and says that host-gw carries IPv6.
func TestDualStackLeasesAndPublishes(t *testing.T) {
	f := startWith(t, "/coreos.com/network",
		"FLANNEL_NETWORK=172.7.0.0/16\nFLANNEL_SUBNET=172.7.21.1/24\nFLANNEL_IPV6_NETWORK=fd00:10:244::/56\nFLANNEL_IPV6_SUBNET=fd00:10:244:21::1/64\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=false\n",
		func(d *Deps) { d.SelectInterface = dualInterface })
	f.put(t, "/coreos.com/network/config", `{"Network": "172.7.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:10:244::/56", "Backend": {"Type": "host-gw"}}`)
	f.waitReady(t)
	got, err := os.ReadFile(f.opts.SubnetFile)
	if err != nil {
		t.Fatal(err)
	}
	want := "FLANNEL_NETWORK=172.7.0.0/16\nFLANNEL_SUBNET=172.7.21.1/24\nFLANNEL_IPV6_NETWORK=fd00:10:244::/56\nFLANNEL_IPV6_SUBNET=fd00:10:244:21::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n"
	if string(got) != want {
		t.Fatalf("subnet.env:\n%s\nwant:\n%s", got, want)
	}
	r, err := f.cli.Get(context.Background(), "/coreos.com/network/subnets/172.7.21.0-24&fd00:10:244:21::-64")
	if err != nil || len(r.Kvs) != 1 {
		t.Fatalf("dual-stack lease key: %v %v", r, err)
	}
	if v := string(r.Kvs[0].Value); !strings.HasPrefix(v, `{"PublicIP":"10.4.7.21","PublicIPv6":"2001:db8::21","BackendType":"host-gw"`) {
		t.Fatalf("lease value %s", v)
	}
	nstest.Eventually(t, 5*time.Second, func() error {
		logs := f.logs.String()
		if !strings.Contains(logs, "leased IPv6 subnet fd00:10:244:21::/64 and published PublicIPv6 2001:db8::21; the host-gw backend carries pods' IPv6 traffic") {
			return fmt.Errorf("no line saying host-gw carries IPv6:\n%s", logs)
		}
		return nil
	})
	for _, line := range strings.Split(f.logs.String(), "\n") {
		if strings.Contains(line, "level=ERROR") && strings.Contains(line, "IPv6 is enabled") {
			t.Errorf("an ERROR about IPv6 for a dual-stack host-gw host: %s", line)
		}
	}
}

// Each backend answers for its IPv6 side: host-gw and wireguard carry
// it; udp does not, as in flannel, and the agent says so at ERROR naming it; so does a
// host-gw host that leased IPv6 but has no PublicIPv6 to publish.
func TestIPv6NoticePerBackend(t *testing.T) {
	ext, _ := dualInterface(nil)
	own := lease.Lease{Subnet: netip.MustParsePrefix("10.5.1.0/24"), IPv6Subnet: netip.MustParsePrefix("fd00:5:0:1::/64")}
	own.Attrs.PublicIPv6 = ext.PublicIPv6
	for _, tc := range []struct {
		backend string
		own     lease.Lease
		isErr   bool
		want    string
	}{
		{"host-gw", own, false, "the host-gw backend carries pods' IPv6 traffic"},
		{"udp", own, true, "the udp backend programs IPv4 only: no IPv6 routes, devices or rules, so pods' IPv6 traffic does not reach other hosts (flannel's udp backend is IPv4-only, and so is weft's"},
		{"wireguard", own, false, "the wireguard backend carries pods' IPv6 traffic"},
		{"host-gw", lease.Lease{Subnet: own.Subnet, IPv6Subnet: own.IPv6Subnet}, true, "no PublicIPv6 is published and peers cannot route IPv6"},
		{"host-gw", lease.Lease{Subnet: own.Subnet}, true, "no IPv6 subnet was leased"},
	} {
		cfg, err := netconf.Parse([]byte(`{"Network": "10.5.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:5::/56", "Backend": {"Type": "` + tc.backend + `"}}`))
		if err != nil {
			t.Fatal(err)
		}
		d, ok := backends.Lookup(tc.backend)
		if !ok {
			t.Fatalf("no backend %s", tc.backend)
		}
		msg, isErr := ipv6Notice(cfg, d, tc.own, ext)
		if isErr != tc.isErr || !strings.Contains(msg, tc.want) {
			t.Errorf("%s: ipv6Notice = %q, %v; want %v and %q", tc.backend, msg, isErr, tc.isErr, tc.want)
		}
	}
}

// An IPv6-only config stops the agent with an error naming EnableIPv4,
// unless the store leases IPv6 subnets alone (Kubernetes mode, as in
// flannel), where it needs a public IPv6 address instead of an IPv4 one.
func TestIPv6OnlyConfigStopsTheAgent(t *testing.T) {
	cfg, err := netconf.Parse([]byte(`{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00::/56", "Backend": {"Type": "host-gw"}}`))
	if err != nil {
		t.Fatal(err)
	}
	ext, _ := dualInterface(nil)
	if err := checkFamilies(cfg, ext, false); !errors.Is(err, errIPv6Only) || !strings.Contains(err.Error(), `"EnableIPv4": false`) {
		t.Errorf("checkFamilies(IPv6-only) = %v", err)
	}
	v6only := ext
	v6only.Addr, v6only.PublicIP = netip.Addr{}, netip.Addr{}
	if err := checkFamilies(cfg, v6only, true); err != nil {
		t.Errorf("checkFamilies(IPv6-only, Kubernetes store, IPv6-only interface) = %v", err)
	}
	v6only.PublicIPv6 = netip.Addr{}
	if err := checkFamilies(cfg, v6only, true); err == nil || !strings.Contains(err.Error(), "interface eth0 has no global IPv6 address") {
		t.Errorf("checkFamilies(IPv6-only, Kubernetes store, no IPv6 address) = %v", err)
	}
	// An interface with IPv6 only cannot serve an IPv4 network.
	v4, err := netconf.Parse([]byte(`{"Network": "10.5.0.0/16", "Backend": {"Type": "host-gw"}}`))
	if err != nil {
		t.Fatal(err)
	}
	ext.Addr, ext.PublicIP = netip.Addr{}, netip.Addr{}
	if err := checkFamilies(v4, ext, true); err == nil || !strings.Contains(err.Error(), "interface eth0 has no IPv4 address") {
		t.Errorf("checkFamilies(IPv4 config, IPv6-only interface) = %v", err)
	}
}
