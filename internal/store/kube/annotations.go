package kubestore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/weftnet/weft/internal/lease"
)

// DefaultAnnotationPrefix is flanneld's --kube-annotation-prefix default.
const DefaultAnnotationPrefix = "flannel.alpha.coreos.com"

// Annotation names after the prefix, as flannel spells them.
const (
	keySubnetManager     = "kube-subnet-manager"
	keyBackendType       = "backend-type"
	keyBackendData       = "backend-data"
	keyBackendV6Data     = "backend-v6-data"
	keyPublicIP          = "public-ip"
	keyPublicIPv6        = "public-ipv6"
	keyPublicIPOverwrite = "public-ip-overwrite"
	keyPublicIPv6Over    = "public-ipv6-overwrite"
	keyNodePublicIP      = "node-public-ip"
	keyNodePublicIPv6    = "node-public-ipv6"
)

// prefixPattern is what flannel accepts as an annotation prefix once a
// missing slash has been appended: a DNS subdomain, a slash, and the start
// of an annotation name (which may end in "-", since names are appended).
var prefixPattern = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/[a-z0-9_-]*$`)

// keys are the full annotation names for one prefix.
type keys struct {
	subnetManager, backendType, backendData, backendV6Data  string
	publicIP, publicIPv6, publicIPOverwrite, publicIPv6Over string
	nodePublicIP, nodePublicIPv6                            string
}

// newKeys validates prefix the way flanneld does (a prefix without a slash
// gets one appended, so "flannel.alpha.coreos.com" yields
// "flannel.alpha.coreos.com/backend-data") and returns the annotation names.
func newKeys(prefix string) (keys, error) {
	if prefix == "" {
		prefix = DefaultAnnotationPrefix
	}
	if !strings.Contains(prefix, "/") {
		prefix += "/"
	}
	if !prefixPattern.MatchString(prefix) {
		return keys{}, fmt.Errorf("annotation prefix %q: want a DNS subdomain, optionally followed by a slash and [a-z0-9_-]*, e.g. %q", prefix, DefaultAnnotationPrefix)
	}
	return keys{
		subnetManager:     prefix + keySubnetManager,
		backendType:       prefix + keyBackendType,
		backendData:       prefix + keyBackendData,
		backendV6Data:     prefix + keyBackendV6Data,
		publicIP:          prefix + keyPublicIP,
		publicIPv6:        prefix + keyPublicIPv6,
		publicIPOverwrite: prefix + keyPublicIPOverwrite,
		publicIPv6Over:    prefix + keyPublicIPv6Over,
		nodePublicIP:      prefix + keyNodePublicIP,
		nodePublicIPv6:    prefix + keyNodePublicIPv6,
	}, nil
}

// podCIDRs returns the node's first IPv4 and first IPv6 pod CIDR (each
// zero when absent). spec.podCIDRs wins over the older spec.podCIDR, as in
// the controller-manager, which fills both.
func podCIDRs(n *corev1.Node) (v4, v6 netip.Prefix, err error) {
	list := n.Spec.PodCIDRs
	if len(list) == 0 && n.Spec.PodCIDR != "" {
		list = []string{n.Spec.PodCIDR}
	}
	for _, s := range list {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, netip.Prefix{}, fmt.Errorf("node %q: podCIDR %q: %w", n.Name, s, err)
		}
		p = p.Masked()
		switch {
		case p.Addr().Is4() && !v4.IsValid():
			v4 = p
		case p.Addr().Is6() && !v6.IsValid():
			v6 = p
		}
	}
	return v4, v6, nil
}

// contains reports whether subnet lies entirely inside network.
func contains(network, subnet netip.Prefix) bool {
	return network.IsValid() && subnet.IsValid() &&
		network.Bits() <= subnet.Bits() && network.Contains(subnet.Addr())
}

// backendDataValue renders backend data as flannel stores it in the
// annotation: compact JSON, and the four characters "null" when there is
// none (host-gw). flannel's own reader of the vxlan MAC splits this string
// on `:"`, so the compact form with VNI before VtepMAC is load-bearing; the
// backend's encoder owns the field order, and compacting keeps it.
func backendDataValue(data json.RawMessage) (string, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return "null", nil
	}
	var b bytes.Buffer
	if err := json.Compact(&b, data); err != nil {
		return "", fmt.Errorf("backend data %q is not valid JSON: %w", data, err)
	}
	return b.String(), nil
}

// desired is what this host publishes on its Node.
type desired struct {
	attrs  lease.Attrs // as requested by the agent
	withV6 bool        // the network config enables IPv6
	// v6only: the config disables IPv4 (EnableIPv4 false), so no IPv4
	// keys (public-ip, backend-data) are written and PublicIPv6 is the
	// one address required.
	v6only bool
}

// annotations computes the annotations the own node must carry, given its
// current ones (for the administrator's public-ip-overwrite), and the
// attributes they amount to. They are flannel's four keys (six with IPv6).
func (k keys) annotations(current map[string]string, d desired) (map[string]string, lease.Attrs, error) {
	attrs := d.attrs
	out := map[string]string{
		k.subnetManager: "true",
		k.backendType:   attrs.BackendType,
	}
	if d.v6only {
		attrs.PublicIP, attrs.BackendData = netip.Addr{}, nil
	} else {
		if s := strings.TrimSpace(current[k.publicIPOverwrite]); s != "" {
			ip, err := netip.ParseAddr(s)
			if err != nil || !ip.Unmap().Is4() {
				return nil, lease.Attrs{}, fmt.Errorf("annotation %s=%q is not an IPv4 address", k.publicIPOverwrite, s)
			}
			attrs.PublicIP = ip.Unmap()
		}
		if !attrs.PublicIP.IsValid() {
			return nil, lease.Attrs{}, errors.New("no public IP to publish")
		}
		data, err := backendDataValue(attrs.BackendData)
		if err != nil {
			return nil, lease.Attrs{}, err
		}
		out[k.backendData] = data
		out[k.publicIP] = attrs.PublicIP.Unmap().String()
	}
	if d.withV6 || d.v6only {
		if s := strings.TrimSpace(current[k.publicIPv6Over]); s != "" {
			ip, err := netip.ParseAddr(s)
			if err != nil || !ip.Is6() || ip.Is4In6() || ip.Zone() != "" {
				return nil, lease.Attrs{}, fmt.Errorf("annotation %s=%q is not an IPv6 address", k.publicIPv6Over, s)
			}
			attrs.PublicIPv6 = ip
		}
		if attrs.PublicIPv6.IsValid() {
			v6data, err := backendDataValue(attrs.BackendV6Data)
			if err != nil {
				return nil, lease.Attrs{}, err
			}
			out[k.backendV6Data] = v6data
			out[k.publicIPv6] = attrs.PublicIPv6.String()
		} else if d.v6only {
			return nil, lease.Attrs{}, errors.New("no public IPv6 address to publish on an IPv6-only network: the interface has no global IPv6 address; set --public-ipv6 or the node-public-ipv6 annotation")
		}
	}
	if string(bytes.TrimSpace(attrs.BackendV6Data)) == "null" {
		attrs.BackendV6Data = nil
	}
	if string(bytes.TrimSpace(attrs.BackendData)) == "null" {
		attrs.BackendData = nil
	}
	return out, attrs, nil
}

// changed returns the entries of want that current lacks or holds with a
// different value: the body of a two-way merge patch from current to want.
func changed(current, want map[string]string) map[string]string {
	var out map[string]string
	for k, v := range want {
		if cur, ok := current[k]; !ok || cur != v {
			if out == nil {
				out = make(map[string]string)
			}
			out[k] = v
		}
	}
	return out
}

// errNotManaged says a node is not a flannel/weft node at all; such nodes
// are left out of the peer set silently.
var errNotManaged = errors.New("not managed by a kube subnet manager")

// errNoPodCIDR says a managed node has no IPv4 podCIDR yet: normal for a
// moment after a node registers, so it is no reason to warn.
var errNoPodCIDR = errors.New("no IPv4 podCIDR yet")

// errIPv6Only says a managed node is IPv6-only (an IPv6 podCIDR and no
// public-ip): it is a peer only for IPv6-only hosts (leaseOf6).
var errIPv6Only = errors.New("IPv6-only node")

// leaseOf turns a Node into the lease its annotations describe, as flannel
// reads peers: only nodes marked kube-subnet-manager="true" count, and they
// need an IPv4 podCIDR, a backend type, backend data that is JSON and an
// IPv4 public-ip. IPv6 fields are filled when the node has them all. A
// node with no annotations at all is simply not managed.
func (k keys) leaseOf(n *corev1.Node) (lease.Lease, error) {
	a := n.Annotations
	if a[k.subnetManager] != "true" {
		return lease.Lease{}, errNotManaged
	}
	v4, v6, err := podCIDRs(n)
	if err != nil {
		return lease.Lease{}, err
	}
	if !v4.IsValid() {
		if v6.IsValid() {
			if _, ok := a[k.publicIP]; !ok {
				return lease.Lease{}, fmt.Errorf("node %q: %w", n.Name, errIPv6Only)
			}
		}
		return lease.Lease{}, fmt.Errorf("node %q: %w", n.Name, errNoPodCIDR)
	}
	bt := a[k.backendType]
	if bt == "" {
		return lease.Lease{}, fmt.Errorf("node %q: annotation %s is missing or empty", n.Name, k.backendType)
	}
	data, err := annotationJSON(n, k.backendData)
	if err != nil {
		return lease.Lease{}, err
	}
	ipStr, ok := a[k.publicIP]
	if !ok {
		return lease.Lease{}, fmt.Errorf("node %q: annotation %s is missing", n.Name, k.publicIP)
	}
	ip, err := netip.ParseAddr(ipStr)
	if err != nil || !ip.Unmap().Is4() {
		return lease.Lease{}, fmt.Errorf("node %q: annotation %s=%q is not an IPv4 address", n.Name, k.publicIP, ipStr)
	}
	if ip = ip.Unmap(); ip.IsUnspecified() {
		// "0.0.0.0" is no address, as in the lease's JSON form (which
		// decodes it so): the backends then say the peer has none
		// (found by FuzzLeaseOf).
		ip = netip.Addr{}
	}
	l := lease.Lease{
		Subnet: v4,
		Attrs:  lease.Attrs{PublicIP: ip, BackendType: bt, BackendData: data},
	}
	// The older Node wins a conflict; the timestamp has whole seconds, and
	// snapshot's order (subnet, then node name) settles a tie.
	if !n.CreationTimestamp.IsZero() {
		l.Created = n.CreationTimestamp.UnixNano()
	}
	if v6.IsValid() {
		// A zone would not survive the lease's JSON form (found by
		// FuzzLeaseOf), and a public address has none.
		if ip6, err := netip.ParseAddr(a[k.publicIPv6]); err == nil && ip6.Is6() && !ip6.Is4In6() && ip6.Zone() == "" {
			if d6, err := annotationJSON(n, k.backendV6Data); err == nil {
				l.IPv6Subnet = v6
				l.Attrs.PublicIPv6 = ip6
				l.Attrs.BackendV6Data = d6
			}
		}
	}
	return l, nil
}

// annotationJSON reads a backend-data style annotation: it must be present
// and valid JSON; "null" yields nil.
func annotationJSON(n *corev1.Node, key string) (json.RawMessage, error) {
	s, ok := n.Annotations[key]
	if !ok {
		return nil, fmt.Errorf("node %q: annotation %s is missing", n.Name, key)
	}
	s = strings.TrimSpace(s)
	if !json.Valid([]byte(s)) {
		return nil, fmt.Errorf("node %q: annotation %s=%q is not JSON", n.Name, key, truncate(s))
	}
	if s == "null" {
		return nil, nil
	}
	var b bytes.Buffer
	_ = json.Compact(&b, []byte(s))
	return json.RawMessage(b.Bytes()), nil
}

func truncate(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}

// leaseOf6 turns a Node into its lease for an IPv6-only host, which
// peers over IPv6 alone: it needs an IPv6 podCIDR, a backend type,
// backend-v6-data that is JSON and an IPv6 public-ipv6. The lease has no
// IPv4 subnet. Dual-stack nodes are peers of IPv6-only ones too, by their
// IPv6 half.
func (k keys) leaseOf6(n *corev1.Node) (lease.Lease, error) {
	a := n.Annotations
	if a[k.subnetManager] != "true" {
		return lease.Lease{}, errNotManaged
	}
	_, v6, err := podCIDRs(n)
	if err != nil {
		return lease.Lease{}, err
	}
	if !v6.IsValid() {
		return lease.Lease{}, fmt.Errorf("node %q: %w", n.Name, errNoPodCIDR6)
	}
	bt := a[k.backendType]
	if bt == "" {
		return lease.Lease{}, fmt.Errorf("node %q: annotation %s is missing or empty", n.Name, k.backendType)
	}
	data, err := annotationJSON(n, k.backendV6Data)
	if err != nil {
		return lease.Lease{}, err
	}
	s, ok := a[k.publicIPv6]
	if !ok {
		return lease.Lease{}, fmt.Errorf("node %q: annotation %s is missing", n.Name, k.publicIPv6)
	}
	ip, err := netip.ParseAddr(s)
	if err != nil || !ip.Is6() || ip.Is4In6() || ip.Zone() != "" {
		return lease.Lease{}, fmt.Errorf("node %q: annotation %s=%q is not an IPv6 address", n.Name, k.publicIPv6, s)
	}
	l := lease.Lease{IPv6Subnet: v6, Attrs: lease.Attrs{PublicIPv6: ip, BackendType: bt, BackendV6Data: data}}
	if !n.CreationTimestamp.IsZero() {
		l.Created = n.CreationTimestamp.UnixNano()
	}
	return l, nil
}

// errNoPodCIDR6 is errNoPodCIDR for IPv6-only hosts.
var errNoPodCIDR6 = errors.New("no IPv6 podCIDR yet")
