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
// six subnet.env lines, and says at ERROR that IPv6 is not programmed.
func TestDualStackLeasesPublishesAndWarns(t *testing.T) {
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
		if !strings.Contains(logs, "level=ERROR") || !strings.Contains(logs, "this version programs IPv4 only") {
			return fmt.Errorf("no ERROR saying IPv6 is not programmed:\n%s", logs)
		}
		return nil
	})
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
