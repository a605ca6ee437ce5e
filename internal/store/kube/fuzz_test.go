package kubestore

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftnet/weft/internal/lease"
)

// FuzzLeaseOf: whatever another node (flannel, weft, a person with
// kubectl annotate) puts in its annotations and pod CIDRs becomes a lease
// or is refused with an error naming the node, never a panic. A lease
// that is read publishes, through this agent's own annotation writer, the
// annotations that read back as the same lease, and its attributes survive
// the etcd JSON form that weft status and the page show.
func FuzzLeaseOf(f *testing.F) {
	f.Add("h1", "10.244.1.0/24", "", "vxlan", `{"VNI":1,"VtepMAC":"d2:0f:6f:22:fd:12"}`, "192.168.77.12", "", "")
	f.Add("h2", "10.244.2.0/24", "fd00:1::/64", "host-gw", "null", "192.168.77.13", "fd00::13", "null")
	f.Add("h3", "10.244.3.7/24", "", "udp", " {\"Port\": 8285} ", "::ffff:192.168.77.14", "", "")
	f.Add("h4", "10.244.4.0", "", "", "{", "not-an-ip", "", "")
	f.Add("h5", "10.244.5.0/24", "fd00:5::/64", "vxlan", `{"VNI":1}`, "192.168.77.15", "fe80::1%eth0", `{"VNI":1}`)
	k, err := newKeys("")
	if err != nil {
		f.Fatal(err)
	}
	node := func(name, cidr, cidr6 string, ann map[string]string) *corev1.Node {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: ann}}
		for _, c := range []string{cidr, cidr6} {
			if c != "" {
				n.Spec.PodCIDRs = append(n.Spec.PodCIDRs, c)
			}
		}
		return n
	}
	f.Fuzz(func(t *testing.T, name, cidr, cidr6, backendType, backendData, publicIP, publicIPv6, backendV6Data string) {
		// Annotations reach the agent as JSON strings, which cannot carry
		// invalid UTF-8.
		for _, s := range []string{name, cidr, cidr6, backendType, backendData, publicIP, publicIPv6, backendV6Data} {
			if !utf8.ValidString(s) {
				return
			}
		}
		ann := map[string]string{
			k.subnetManager: "true",
			k.backendType:   backendType,
			k.backendData:   backendData,
			k.publicIP:      publicIP,
		}
		if publicIPv6 != "" {
			ann[k.publicIPv6] = publicIPv6
			ann[k.backendV6Data] = backendV6Data
		}
		l, err := k.leaseOf(node(name, cidr, cidr6, ann))
		if err != nil {
			if !strings.Contains(err.Error(), fmt.Sprintf("node %q", name)) {
				t.Fatalf("error %q does not name the node %q", err, name)
			}
			if errors.Is(err, errNotManaged) {
				t.Fatalf("a node marked kube-subnet-manager=true reported as not managed: %v", err)
			}
			return
		}
		if !l.Subnet.Addr().Is4() || l.Subnet.Masked() != l.Subnet || !l.Reservation() {
			t.Fatalf("lease %v: subnet not a masked IPv4 prefix, or it expires", l)
		}

		// The etcd/JSON form of the attributes.
		b, err := json.Marshal(l.Attrs)
		if err != nil {
			t.Fatalf("attributes %+v read from annotations do not encode: %v", l.Attrs, err)
		}
		var back lease.Attrs
		if err := json.Unmarshal(b, &back); err != nil || !back.Equal(l.Attrs) {
			t.Fatalf("attributes %+v encode as %s, which read back as %+v (%v)", l.Attrs, b, back, err)
		}

		// What this agent would publish for that lease reads back the same
		// (it publishes nothing without a public IP).
		if !l.Attrs.PublicIP.IsValid() {
			return
		}
		want, attrs, err := k.annotations(nil, desired{attrs: l.Attrs, withV6: l.IPv6Subnet.IsValid()})
		if err != nil {
			t.Fatalf("lease %v read from annotations cannot be published: %v", l, err)
		}
		if !attrs.Equal(l.Attrs) {
			t.Fatalf("publishing changed the attributes: %+v -> %+v", l.Attrs, attrs)
		}
		again, err := k.leaseOf(node(name, cidr, cidr6, want))
		if err != nil {
			t.Fatalf("published annotations %v do not read back: %v", want, err)
		}
		if again.Subnet != l.Subnet || again.IPv6Subnet != l.IPv6Subnet || !again.Attrs.Equal(l.Attrs) {
			t.Fatalf("round trip through the annotations: %v %+v -> %v -> %v %+v", l, l.Attrs, want, again, again.Attrs)
		}
	})
}
