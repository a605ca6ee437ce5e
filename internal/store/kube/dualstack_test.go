package kubestore

import (
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/weftnet/weft/internal/lease"
)

// dualNode is a dual-stack Node as flannel leaves it (vxlan), with its
// podCIDRs in the given order.
func dualNode(name string, cidrs []string) *corev1.Node {
	n := flannelNode(name, cidrs[0], "192.168.77.12")
	n.Spec.PodCIDRs = cidrs
	n.Annotations[p+"public-ipv6"] = "2001:db8::12"
	n.Annotations[p+"backend-v6-data"] = `{"VNI":1,"VtepMAC":"d2:0f:6f:22:fd:13"}`
	return n
}

// spec.podCIDRs in either order (flannel-io/flannel#1629: IPv6 first made
// flannel panic) gives both subnets and the v6 annotations.
func TestLeaseOfDualStackEitherOrder(t *testing.T) {
	k := mustKeys(t, "")
	for _, cidrs := range [][]string{{"10.244.1.0/24", "fd00:10:244:1::/64"}, {"fd00:10:244:1::/64", "10.244.1.0/24"}} {
		l, err := k.leaseOf(dualNode("h1", cidrs))
		if err != nil {
			t.Fatalf("%v: %v", cidrs, err)
		}
		if l.Subnet != netip.MustParsePrefix("10.244.1.0/24") || l.IPv6Subnet != netip.MustParsePrefix("fd00:10:244:1::/64") ||
			l.Attrs.PublicIPv6 != netip.MustParseAddr("2001:db8::12") || string(l.Attrs.BackendV6Data) != `{"VNI":1,"VtepMAC":"d2:0f:6f:22:fd:13"}` {
			t.Errorf("%v: lease %v, v6 data %s", cidrs, l, l.Attrs.BackendV6Data)
		}
	}
	// A dual-stack peer whose v6 annotations are missing or bad stays an
	// IPv4 peer (a host still on an IPv4-only config, in a mixed cluster).
	n := dualNode("h1", []string{"10.244.1.0/24", "fd00:10:244:1::/64"})
	n.Annotations[p+"public-ipv6"] = "fe80::1%eth0"
	l, err := k.leaseOf(n)
	if err != nil || l.Subnet != netip.MustParsePrefix("10.244.1.0/24") || l.IPv6Subnet.IsValid() || l.Attrs.PublicIPv6.IsValid() {
		t.Errorf("bad public-ipv6: lease %v, %v; want the IPv4 half only", l, err)
	}
	// An IPv6-only node is no peer of an IPv4 host, quietly.
	v6 := dualNode("h2", []string{"fd00:10:244:2::/64"})
	delete(v6.Annotations, p+"public-ip")
	delete(v6.Annotations, p+"backend-data")
	if _, err := k.leaseOf(v6); !errors.Is(err, errIPv6Only) {
		t.Errorf("IPv6-only node: err = %v, want errIPv6Only", err)
	}
}

func TestLeaseOf6(t *testing.T) {
	k := mustKeys(t, "")
	v6 := dualNode("h2", []string{"fd00:10:244:2::/64"})
	delete(v6.Annotations, p+"public-ip")
	delete(v6.Annotations, p+"backend-data")
	l, err := k.leaseOf6(v6)
	if err != nil || l.Subnet.IsValid() || l.IPv6Subnet != netip.MustParsePrefix("fd00:10:244:2::/64") || l.Attrs.PublicIPv6 != netip.MustParseAddr("2001:db8::12") {
		t.Fatalf("IPv6-only node: lease %v, %v", l, err)
	}
	// A dual-stack node is an IPv6 peer of an IPv6-only host.
	l, err = k.leaseOf6(dualNode("h1", []string{"10.244.1.0/24", "fd00:10:244:1::/64"}))
	if err != nil || l.Subnet.IsValid() || l.IPv6Subnet != netip.MustParsePrefix("fd00:10:244:1::/64") {
		t.Fatalf("dual-stack node seen by an IPv6-only host: lease %v, %v", l, err)
	}
	for _, tc := range []struct {
		name string
		mod  func(n *corev1.Node)
		want string
	}{
		{"no IPv6 podCIDR", func(n *corev1.Node) { n.Spec.PodCIDRs = []string{"10.244.1.0/24"} }, "no IPv6 podCIDR yet"},
		{"no public-ipv6", func(n *corev1.Node) { delete(n.Annotations, p+"public-ipv6") }, p + "public-ipv6 is missing"},
		{"IPv4 public-ipv6", func(n *corev1.Node) { n.Annotations[p+"public-ipv6"] = "10.1.1.1" }, "is not an IPv6 address"},
		{"bad backend-v6-data", func(n *corev1.Node) { n.Annotations[p+"backend-v6-data"] = "{" }, "not JSON"},
	} {
		n := dualNode("h3", []string{"fd00:10:244:3::/64"})
		tc.mod(n)
		if _, err := k.leaseOf6(n); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}

// The annotations of a dual-stack and of an IPv6-only host are flannel's
// keys: v6 ones beside the v4 ones, or alone.
func TestAnnotationsDualStackAndIPv6Only(t *testing.T) {
	k := mustKeys(t, "")
	a := lease.Attrs{
		PublicIP: netip.MustParseAddr("192.168.77.12"), PublicIPv6: netip.MustParseAddr("2001:db8::12"), BackendType: "vxlan",
		BackendData:   json.RawMessage(`{"VNI":1,"VtepMAC":"d2:0f:6f:22:fd:12"}`),
		BackendV6Data: json.RawMessage(`{"VNI": 1, "VtepMAC": "d2:0f:6f:22:fd:13"}`),
	}
	want, _, err := k.annotations(nil, desired{attrs: a, withV6: true})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := annotationPatch(changed(nil, want))
	const dual = `{"metadata":{"annotations":{"flannel.alpha.coreos.com/backend-data":"{\"VNI\":1,\"VtepMAC\":\"d2:0f:6f:22:fd:12\"}","flannel.alpha.coreos.com/backend-type":"vxlan","flannel.alpha.coreos.com/backend-v6-data":"{\"VNI\":1,\"VtepMAC\":\"d2:0f:6f:22:fd:13\"}","flannel.alpha.coreos.com/kube-subnet-manager":"true","flannel.alpha.coreos.com/public-ip":"192.168.77.12","flannel.alpha.coreos.com/public-ipv6":"2001:db8::12"}}}`
	if string(body) != dual {
		t.Errorf("dual-stack patch\n got %s\nwant %s", body, dual)
	}
	// public-ipv6-overwrite wins, as public-ip-overwrite does.
	got, attrs, err := k.annotations(map[string]string{p + "public-ipv6-overwrite": "2001:db8:ffff::1"}, desired{attrs: a, withV6: true})
	if err != nil || got[p+"public-ipv6"] != "2001:db8:ffff::1" || attrs.PublicIPv6 != netip.MustParseAddr("2001:db8:ffff::1") {
		t.Errorf("public-ipv6-overwrite: %v %v %v", got, attrs.PublicIPv6, err)
	}

	v6 := a
	v6.PublicIP, v6.BackendData = netip.Addr{}, nil
	got, attrs, err = k.annotations(nil, desired{attrs: v6, withV6: true, v6only: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got[p+"public-ip"]; ok || got[p+"public-ipv6"] != "2001:db8::12" || len(got) != 4 || attrs.PublicIP.IsValid() {
		t.Errorf("IPv6-only annotations = %v (attrs %+v)", got, attrs)
	}
	v6.PublicIPv6 = netip.Addr{}
	if _, _, err := k.annotations(nil, desired{attrs: v6, withV6: true, v6only: true}); err == nil || !strings.Contains(err.Error(), "--public-ipv6") {
		t.Errorf("IPv6-only without PublicIPv6: err = %v", err)
	}
}
