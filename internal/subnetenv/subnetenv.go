// Package subnetenv reads and writes subnet.env, the file through which
// flannel (and weft) tell the CNI plugin and Docker what this host's subnet
// is:
//
//	FLANNEL_NETWORK=172.7.0.0/16
//	FLANNEL_SUBNET=172.7.21.1/24
//	FLANNEL_MTU=1500
//	FLANNEL_IPMASQ=false
//
// The lines, their order and their format are flannel's, because existing
// tooling (mk-docker-opts.sh, flannel's CNI plugin, docker drop-ins) parses
// them.
package subnetenv

import "net/netip"

// DefaultPath is flannel's default --subnet-file.
const DefaultPath = "/run/flannel/subnet.env"

// Env is the content of subnet.env.
type Env struct {
	Networks    []netip.Prefix // FLANNEL_NETWORK (the writer writes one; readers accept a comma list)
	Subnet      netip.Prefix   // the lease subnet, masked (172.7.21.0/24); written as its first host address (172.7.21.1/24)
	IPv6Network []netip.Prefix // FLANNEL_IPV6_NETWORK, when dual-stack
	IPv6Subnet  netip.Prefix   // masked; written +1 like Subnet
	MTU         int
	IPMasq      bool
}
