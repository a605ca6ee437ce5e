package kubestore

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftnet/weft/internal/lease"
)

const p = "flannel.alpha.coreos.com/"

func mustKeys(t *testing.T, prefix string) keys {
	t.Helper()
	k, err := newKeys(prefix)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestNewKeys(t *testing.T) {
	for _, tc := range []struct {
		prefix, backendData string
		ok                  bool
	}{
		{"", p + "backend-data", true},
		{"flannel.alpha.coreos.com", p + "backend-data", true},
		{"flannel.alpha.coreos.com/", p + "backend-data", true},
		{"example.com/weft-", "example.com/weft-backend-data", true},
		{"Example.com", "", false},
		{"example.com/a/b", "", false},
		{"-bad.com", "", false},
	} {
		k, err := newKeys(tc.prefix)
		if (err == nil) != tc.ok {
			t.Errorf("newKeys(%q) err = %v, want ok=%v", tc.prefix, err, tc.ok)
			continue
		}
		if tc.ok && k.backendData != tc.backendData {
			t.Errorf("newKeys(%q).backendData = %q, want %q", tc.prefix, k.backendData, tc.backendData)
		}
	}
}

// TestAnnotationPatchIsFlannels pins the body flannel v0.28.9 was observed
// sending to PATCH /api/v1/nodes/<n>/status (flannel.md §5), byte for byte.
func TestAnnotationPatchIsFlannels(t *testing.T) {
	k := mustKeys(t, "")
	want, _, err := k.annotations(nil, desired{attrs: lease.Attrs{
		PublicIP:    netip.MustParseAddr("192.168.77.12"),
		BackendType: "vxlan",
		BackendData: json.RawMessage(`{"VNI": 1, "VtepMAC": "d2:0f:6f:22:fd:12"}`),
	}})
	if err != nil {
		t.Fatal(err)
	}
	body, err := annotationPatch(changed(nil, want))
	if err != nil {
		t.Fatal(err)
	}
	const flannel = `{"metadata":{"annotations":{"flannel.alpha.coreos.com/backend-data":"{\"VNI\":1,\"VtepMAC\":\"d2:0f:6f:22:fd:12\"}","flannel.alpha.coreos.com/backend-type":"vxlan","flannel.alpha.coreos.com/kube-subnet-manager":"true","flannel.alpha.coreos.com/public-ip":"192.168.77.12"}}}`
	if string(body) != flannel {
		t.Errorf("patch body\n got %s\nwant %s", body, flannel)
	}
}

func TestAnnotations(t *testing.T) {
	k := mustKeys(t, "")
	hostgw := lease.Attrs{PublicIP: netip.MustParseAddr("10.0.0.1"), BackendType: "host-gw"}
	t.Run("host-gw data is the string null", func(t *testing.T) {
		got, attrs, err := k.annotations(map[string]string{"other": "x"}, desired{attrs: hostgw})
		if err != nil {
			t.Fatal(err)
		}
		if got[p+"backend-data"] != "null" || got[p+"backend-type"] != "host-gw" ||
			got[p+"kube-subnet-manager"] != "true" || got[p+"public-ip"] != "10.0.0.1" || len(got) != 4 {
			t.Errorf("annotations = %v", got)
		}
		if attrs.BackendData != nil {
			t.Errorf("attrs.BackendData = %q, want nil", attrs.BackendData)
		}
	})
	t.Run("public-ip-overwrite wins", func(t *testing.T) {
		got, attrs, err := k.annotations(map[string]string{p + "public-ip-overwrite": "203.0.113.9"}, desired{attrs: hostgw})
		if err != nil {
			t.Fatal(err)
		}
		if got[p+"public-ip"] != "203.0.113.9" || attrs.PublicIP != netip.MustParseAddr("203.0.113.9") {
			t.Errorf("public-ip = %q, attrs %v", got[p+"public-ip"], attrs.PublicIP)
		}
	})
	t.Run("bad overwrite is an error", func(t *testing.T) {
		if _, _, err := k.annotations(map[string]string{p + "public-ip-overwrite": "nope"}, desired{attrs: hostgw}); err == nil {
			t.Error("no error")
		}
	})
	t.Run("IPv6 keys only with IPv6", func(t *testing.T) {
		a := hostgw
		a.PublicIPv6 = netip.MustParseAddr("fd00::1")
		got, _, err := k.annotations(nil, desired{attrs: a})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := got[p+"public-ipv6"]; ok {
			t.Errorf("IPv6 key without IPv6: %v", got)
		}
		got, _, err = k.annotations(nil, desired{attrs: a, withV6: true})
		if err != nil {
			t.Fatal(err)
		}
		if got[p+"public-ipv6"] != "fd00::1" || got[p+"backend-v6-data"] != "null" {
			t.Errorf("IPv6 keys: %v", got)
		}
	})
	t.Run("unchanged annotations need no patch", func(t *testing.T) {
		want, _, _ := k.annotations(nil, desired{attrs: hostgw})
		cur := map[string]string{"kubeadm.alpha.kubernetes.io/cri-socket": "x"}
		for k, v := range want {
			cur[k] = v
		}
		if d := changed(cur, want); d != nil {
			t.Errorf("changed = %v, want nothing", d)
		}
		cur[p+"public-ip"] = "10.9.9.9"
		if d := changed(cur, want); len(d) != 1 || d[p+"public-ip"] != "10.0.0.1" {
			t.Errorf("changed = %v, want only public-ip", d)
		}
	})
}

func node(name string, cidrs []string, ann map[string]string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: ann}}
	if len(cidrs) > 0 {
		n.Spec.PodCIDR = cidrs[0]
		n.Spec.PodCIDRs = cidrs
	}
	return n
}

// flannelNode is a Node as flannel v0.28.9 leaves it (vxlan).
func flannelNode(name, cidr, ip string) *corev1.Node {
	return node(name, []string{cidr}, map[string]string{
		p + "backend-data":             `{"VNI":1,"VtepMAC":"d2:0f:6f:22:fd:12"}`,
		p + "backend-type":             "vxlan",
		p + "kube-subnet-manager":      "true",
		p + "public-ip":                ip,
		"node.alpha.kubernetes.io/ttl": "0",
	})
}

func TestLeaseOf(t *testing.T) {
	k := mustKeys(t, "")
	good := lease.Lease{
		Subnet: netip.MustParsePrefix("10.244.1.0/24"),
		Attrs: lease.Attrs{
			PublicIP:    netip.MustParseAddr("192.168.77.12"),
			BackendType: "vxlan",
			BackendData: json.RawMessage(`{"VNI":1,"VtepMAC":"d2:0f:6f:22:fd:12"}`),
		},
	}
	mod := func(f func(n *corev1.Node)) *corev1.Node {
		n := flannelNode("h1", "10.244.1.0/24", "192.168.77.12")
		f(n)
		return n
	}
	for _, tc := range []struct {
		name    string
		node    *corev1.Node
		want    lease.Lease
		err     string
		managed bool
	}{
		{name: "flannel's node", node: flannelNode("h1", "10.244.1.0/24", "192.168.77.12"), want: good, managed: true},
		{name: "no annotations at all", node: node("h1", []string{"10.244.1.0/24"}, nil)},
		{name: "not marked", node: mod(func(n *corev1.Node) { delete(n.Annotations, p+"kube-subnet-manager") })},
		{name: "marked false", node: mod(func(n *corev1.Node) { n.Annotations[p+"kube-subnet-manager"] = "false" })},
		{name: "host-gw null data", node: mod(func(n *corev1.Node) {
			n.Annotations[p+"backend-type"] = "host-gw"
			n.Annotations[p+"backend-data"] = "null"
		}), want: lease.Lease{Subnet: good.Subnet, Attrs: lease.Attrs{PublicIP: good.Attrs.PublicIP, BackendType: "host-gw"}}, managed: true},
		{name: "podCIDRs wins over podCIDR", node: mod(func(n *corev1.Node) {
			n.Spec.PodCIDR = "10.244.9.0/24"
			n.Spec.PodCIDRs = []string{"fd00:1::/64", "10.244.1.0/24"}
		}), want: good, managed: true},
		{name: "the Node's age orders it", node: mod(func(n *corev1.Node) {
			n.CreationTimestamp = metav1.NewTime(time.Unix(1700000000, 0))
		}), want: lease.Lease{Subnet: good.Subnet, Attrs: good.Attrs, Created: 1700000000e9}, managed: true},
		{name: "no podCIDR", node: mod(func(n *corev1.Node) { n.Spec = corev1.NodeSpec{} }), err: "no IPv4 podCIDR yet", managed: true},
		{name: "garbage podCIDR", node: mod(func(n *corev1.Node) { n.Spec.PodCIDRs = []string{"10.244.1.0"} }), err: "podCIDR", managed: true},
		{name: "garbage public-ip", node: mod(func(n *corev1.Node) { n.Annotations[p+"public-ip"] = "not-an-ip" }), err: "public-ip", managed: true},
		{name: "IPv6 public-ip", node: mod(func(n *corev1.Node) { n.Annotations[p+"public-ip"] = "fd00::1" }), err: "public-ip", managed: true},
		{name: "missing public-ip", node: mod(func(n *corev1.Node) { delete(n.Annotations, p+"public-ip") }), err: "public-ip", managed: true},
		{name: "garbage backend-data", node: mod(func(n *corev1.Node) { n.Annotations[p+"backend-data"] = "{VNI:1" }), err: "not JSON", managed: true},
		{name: "missing backend-data", node: mod(func(n *corev1.Node) { delete(n.Annotations, p+"backend-data") }), err: "backend-data", managed: true},
		{name: "missing backend-type", node: mod(func(n *corev1.Node) { delete(n.Annotations, p+"backend-type") }), err: "backend-type", managed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := k.leaseOf(tc.node)
			switch {
			case !tc.managed:
				if !errors.Is(err, errNotManaged) {
					t.Errorf("err = %v, want errNotManaged", err)
				}
			case tc.err != "":
				if err == nil || !strings.Contains(err.Error(), tc.err) || errors.Is(err, errNotManaged) {
					t.Errorf("err = %v, want one mentioning %q", err, tc.err)
				}
			case err != nil:
				t.Errorf("err = %v", err)
			case got.Subnet != tc.want.Subnet || !got.Attrs.Equal(tc.want.Attrs) || !got.Reservation() || got.Created != tc.want.Created:
				t.Errorf("lease = %v %s, want %v %s", got, got.Attrs.BackendData, tc.want, tc.want.Attrs.BackendData)
			}
		})
	}
}

func TestConditionPatchIsFlannels(t *testing.T) {
	body, err := conditionPatch(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"status":{"conditions":[{"type":"NetworkUnavailable","status":"False","lastHeartbeatTime":"2026-01-02T03:04:05Z","lastTransitionTime":"2026-01-02T03:04:05Z","reason":"FlannelIsUp","message":"Flannel is running on this node"}]}}`
	if string(body) != want {
		t.Errorf("condition patch\n got %s\nwant %s", body, want)
	}
}

// TestSnapshotWarnsOncePerNode checks that a broken peer costs one log
// line however many times the set is rebuilt, another when its problem
// changes, and never hides the valid peers.
func TestSnapshotWarnsOncePerNode(t *testing.T) {
	var buf bytes.Buffer
	s := &Store{log: slog.New(slog.NewTextHandler(&buf, nil))}
	ps := &peerSet{s: s, keys: mustKeys(t, ""), warned: map[string]string{}}
	bad := flannelNode("bad", "10.244.3.0/24", "garbage")
	nodes := []any{
		flannelNode("h2", "10.244.2.0/24", "10.0.0.2"),
		bad,
		node("plain", nil, nil),
		flannelNode("h1", "10.244.1.0/24", "10.0.0.1"),
	}
	for range 3 {
		got := ps.snapshot(nodes)
		if len(got) != 2 || got[0].Subnet.String() != "10.244.1.0/24" || got[1].Subnet.String() != "10.244.2.0/24" {
			t.Fatalf("snapshot = %v", got)
		}
	}
	if n := strings.Count(buf.String(), "peer-node=bad"); n != 1 {
		t.Errorf("%d warnings for the bad node, want 1:\n%s", n, buf.String())
	}
	bad.Annotations[p+"backend-data"] = "{"
	ps.snapshot(nodes)
	ps.snapshot(nodes)
	if n := strings.Count(buf.String(), "peer-node=bad"); n != 2 {
		t.Errorf("%d warnings after the problem changed, want 2:\n%s", n, buf.String())
	}
	if strings.Contains(buf.String(), "plain") {
		t.Errorf("an unmanaged node was reported:\n%s", buf.String())
	}
}
