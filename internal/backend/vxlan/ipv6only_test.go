package vxlan

import (
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/netconf"
)

func v6onlyConfig(t *testing.T, backendJSON string) *netconf.Config {
	t.Helper()
	return mustConfig(t, `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":`+backendJSON+`}`)
}

// v6onlyLease is an IPv6-only lease as a Node's podCIDR gives it: an IPv6
// subnet, PublicIPv6 and BackendV6Data naming mac6, nothing of IPv4.
func v6onlyLease(subnet6, publicIPv6, mac6 string) lease.Lease {
	l := dualLease("10.244.1.0/24", "192.168.1.1", "0e:00:00:00:00:01", subnet6, publicIPv6, mac6)
	l.Subnet, l.Attrs.PublicIP, l.Attrs.BackendData = netip.Prefix{}, netip.Addr{}, nil
	return l
}

// TestLeaseCheckIPv6Only: on an IPv6-only network a lease's VtepMAC, its
// identity for admission, is its BackendV6Data's, held to BackendData's
// rules; a lease without one is refused.
func TestLeaseCheckIPv6Only(t *testing.T) {
	check, err := leaseCheck(v6onlyConfig(t, `{"Type":"vxlan"}`))
	if err != nil {
		t.Fatal(err)
	}
	ok := v6onlyLease("fd00:10:244:2::/64", "fd70::2", "0e:00:00:00:06:02")
	if id, err := check(ok); err != nil || id != "VtepMAC 0e:00:00:00:06:02" {
		t.Errorf("check = %q, %v", id, err)
	}
	for raw, want := range map[string]string{
		``: "BackendV6Data: it has no BackendData",
		`{"VNI":2,"VtepMAC":"0e:00:00:00:06:02"}`: "BackendV6Data: it publishes VNI 2 but this network uses VNI 1",
	} {
		l := ok
		l.Attrs.BackendV6Data = json.RawMessage(raw)
		if _, err := check(l); err == nil || err.Error() != want {
			t.Errorf("check(%q) = %v, want %s", raw, err, want)
		}
	}
	d := Descriptor()
	if mac, found := d.LeaseMAC(ok); !found || mac.String() != "0e:00:00:00:06:02" {
		t.Errorf("LeaseMAC of an IPv6-only lease = %s, %v", mac, found)
	}
}

// TestExpectIPv6Only: status expects flannel-v6.1 alone on an IPv6-only
// network, pods at the MTU of VXLAN over IPv6, and each peer's three
// IPv6 entries under its IPv6 subnet, the lease's key.
func TestExpectIPv6Only(t *testing.T) {
	exp, err := expect(v6onlyConfig(t, `{"Type":"vxlan"}`), backend.ExternalInterface{Name: "eth0", MTU: 1500})
	if err != nil {
		t.Fatal(err)
	}
	if exp.PodMTU != 1430 || !slices.Equal(exp.Overlays, []string{"flannel-v6.1"}) || exp.MTUBasis != "eth0's MTU 1500 minus 70 for VXLAN over IPv6" || exp.Port != KernelDefaultPort {
		t.Errorf("PodMTU %d, Overlays %v, MTUBasis %q, Port %d", exp.PodMTU, exp.Overlays, exp.MTUBasis, exp.Port)
	}
	own := v6onlyLease("fd00:10:244:1::/64", "fd70::1", "0e:00:00:00:06:01")
	peer := v6onlyLease("fd00:10:244:2::/64", "fd70::2", "0e:00:00:00:06:02")
	w := exp.Wants(own, netip.Addr{}, []lease.Lease{own, peer}, nil)
	var got []string
	for _, e := range w.Host {
		got = append(got, e.String())
	}
	for _, e := range w.Peers[peer.Key()].Entries {
		got = append(got, e.String())
	}
	want := []string{
		"flannel-v6.1 mtu 1430 lladdr 0e:00:00:00:06:01 up",
		"fd00:10:244:1::/128 dev flannel-v6.1",
		"fd00:10:244:2:: dev flannel-v6.1 lladdr 0e:00:00:00:06:02 PERMANENT",
		"0e:00:00:00:06:02 dev flannel-v6.1 dst fd70::2 self permanent",
		"fd00:10:244:2::/64 via fd00:10:244:2:: dev flannel-v6.1 onlink",
	}
	if !slices.Equal(got, want) || len(w.Peers) != 1 {
		t.Errorf("wants (%d peers):\n%s\nwant:\n%s", len(w.Peers), strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
