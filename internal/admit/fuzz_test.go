package admit

import (
	"encoding/json"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/backend/vxlan"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/netconf"
)

// FuzzDecide feeds Decide snapshots made of keys and values as anyone with
// write access to the store may write them, one lease a line:
// "<key name>|<value JSON>|<created>". Whatever they hold, the own lease
// stays admitted, every lease is either admitted or refused with a reason
// naming it, and no two admitted peers share a subnet or a VtepMAC. The
// network is dual-stack: the same holds for the IPv6 halves, whose
// refusal leaves the lease admitted without them.
func FuzzDecide(f *testing.F) {
	f.Add("172.7.138.0-24|{\"PublicIP\":\"10.4.7.22\",\"BackendType\":\"vxlan\",\"BackendData\":{\"VNI\":1,\"VtepMAC\":\"0a:00:00:00:00:0a\"}}|10\n" +
		"172.7.138.0-25|{\"PublicIP\":\"10.4.7.99\",\"BackendType\":\"vxlan\",\"BackendData\":{\"VNI\":1,\"VtepMAC\":\"0a:00:00:00:00:0b\"}}|20")
	f.Add("172.7.100.0-24|{\"PublicIP\":\"10.4.7.99\",\"BackendType\":\"vxlan\",\"BackendData\":{\"VNI\":1,\"VtepMAC\":\"0a:00:00:00:00:0a\"}}|30\n" +
		"172.7.138.0-24|{\"PublicIP\":\"10.4.7.22\",\"BackendType\":\"vxlan\",\"BackendData\":{\"VNI\":1,\"VtepMAC\":\"0a:00:00:00:00:0a\"}}|10")
	f.Add("172.7.0.0-17|{\"PublicIP\":\"10.4.7.99\"}|0\n172.7.1.7-32|{\"PublicIP\":\"10.4.7.98\",\"BackendType\":\"vxlan\",\"BackendData\":null}|1")
	f.Add("172.7.5.0-24|{\"PublicIP\":\"10.4.7.21\",\"BackendType\":\"vxlan\",\"BackendData\":{\"VNI\":9,\"VtepMAC\":\"0a:00:00:00:00:01\"}}|-5")
	f.Add("172.7.138.0-24&fd00:50:0:2::-64|{\"PublicIP\":\"10.4.7.22\",\"PublicIPv6\":\"fd00::22\",\"BackendType\":\"vxlan\",\"BackendData\":{\"VNI\":1,\"VtepMAC\":\"0a:00:00:00:00:0a\"}}|10\n" +
		"172.7.139.0-24&fd00:50:0:2::-64|{\"PublicIP\":\"10.4.7.23\",\"PublicIPv6\":\"fd00::23\",\"BackendType\":\"vxlan\",\"BackendData\":{\"VNI\":1,\"VtepMAC\":\"0a:00:00:00:00:0b\"}}|20\n" +
		"172.7.140.0-24&fd00:50:0:1::-64|{\"PublicIP\":\"10.4.7.24\",\"PublicIPv6\":null,\"BackendType\":\"host-gw\"}|5")
	cfg, err := netconf.Parse([]byte(`{"Network":"172.7.0.0/16","SubnetLen":24,"EnableIPv6":true,"IPv6Network":"fd00:50::/56","IPv6SubnetLen":64,"Backend":{"Type":"vxlan"}}`))
	if err != nil {
		f.Fatal(err)
	}
	own := ownVX
	own.IPv6Subnet, own.Attrs.PublicIPv6 = netip.MustParsePrefix("fd00:50:0:1::/64"), netip.MustParseAddr("fd00::21")
	f.Fuzz(func(t *testing.T, snapshot string) {
		leases := []lease.Lease{own}
		for _, line := range strings.Split(snapshot, "\n") {
			parts := strings.SplitN(line, "|", 3)
			if len(parts) != 3 {
				continue
			}
			v4, v6, err := lease.ParseKeyName(parts[0])
			if err != nil {
				continue
			}
			var a lease.Attrs
			if json.Unmarshal([]byte(parts[1]), &a) != nil {
				continue
			}
			created, _ := strconv.ParseInt(parts[2], 10, 64)
			leases = append(leases, lease.Lease{Subnet: v4, IPv6Subnet: v6, Attrs: a, Created: created})
		}
		res := Decide(Input{Config: cfg, Backend: vxlan.Descriptor(), Own: own, OwnPublicIP: me, Leases: leases})
		if len(res.Admitted)+len(res.Refused) != len(leases) {
			t.Fatalf("admitted %d + refused %d != %d", len(res.Admitted), len(res.Refused), len(leases))
		}
		check, err := vxlan.Descriptor().LeaseCheck(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ownSeen := false
		subnets := map[netip.Prefix]bool{}
		ids := map[string]bool{}
		subnets6 := map[netip.Prefix]bool{}
		for _, l := range res.Admitted {
			if l.Subnet.Masked() == ownVX.Subnet {
				ownSeen = true
				continue
			}
			if l.IPv6Subnet.IsValid() {
				if l.IPv6Subnet.Bits() != cfg.IPv6SubnetLen || l.IPv6Subnet.Masked() != l.IPv6Subnet || !cfg.IPv6Network.Contains(l.IPv6Subnet.Addr()) ||
					l.IPv6Subnet.Overlaps(own.IPv6Subnet) || !l.Attrs.PublicIPv6.Is6() || l.Attrs.PublicIPv6 == own.Attrs.PublicIPv6 {
					t.Errorf("admitted %s with an IPv6 half that is not a peer's", Name(l))
				}
				if subnets6[l.IPv6Subnet] {
					t.Errorf("admitted two leases for %s", l.IPv6Subnet)
				}
				subnets6[l.IPv6Subnet] = true
			}
			if l.Subnet.Bits() != cfg.SubnetLen || !cfg.Network.Contains(l.Subnet.Addr()) || l.Subnet.Overlaps(ownVX.Subnet) {
				t.Errorf("admitted %s: not a /%d of %s apart from the own subnet", Name(l), cfg.SubnetLen, cfg.Network)
			}
			if subnets[l.Subnet.Masked()] {
				t.Errorf("admitted two leases for %s", l.Subnet)
			}
			subnets[l.Subnet.Masked()] = true
			if l.Attrs.BackendType != "vxlan" {
				continue
			}
			id, err := check(l)
			if err != nil {
				t.Errorf("admitted %s whose BackendData vxlan refuses: %v", Name(l), err)
			}
			if ids[id] || id == "VtepMAC 0a:00:00:00:00:01" {
				t.Errorf("admitted %s with a taken %s", Name(l), id)
			}
			ids[id] = true
		}
		if !ownSeen {
			t.Error("the own lease was refused")
		}
		for _, r := range append(res.Refused, res.RefusedV6...) {
			if !strings.HasPrefix(r.Reason, Name(r.Lease)) || r.Kind == "" {
				t.Errorf("refusal %q (%s) does not start with the lease's name %q", r.Reason, r.Kind, Name(r.Lease))
			}
		}
	})
}
