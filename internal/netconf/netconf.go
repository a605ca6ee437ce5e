// Package netconf parses and validates the network configuration that
// flannel users keep in etcd under <prefix>/config or in net-conf.json:
//
//	{"Network": "172.7.0.0/16", "SubnetLen": 24, "Backend": {"Type": "host-gw"}}
//
// Parsing follows Go encoding/json semantics on purpose (keys match
// case-insensitively, unknown keys are ignored) because that is what flannel
// does, and existing configs depend on it. The package is pure: no I/O.
package netconf

import (
	"encoding/json"
	"net/netip"
)

// Config is a parsed and validated network configuration.
type Config struct {
	EnableIPv4 bool
	EnableIPv6 bool
	Network    netip.Prefix // the cluster network; valid when EnableIPv4
	SubnetLen  int          // prefix length of one host's subnet
	SubnetMin  netip.Addr   // first subnet that may be leased (network address)
	SubnetMax  netip.Addr   // last subnet that may be leased (network address)

	// IPv6 fields, valid when EnableIPv6. Stores lease and publish IPv6
	// subnets from them (docs/formats.md); an IPv6-only config
	// (EnableIPv4 false) is for the Kubernetes store only (CheckEtcd).
	IPv6Network   netip.Prefix
	IPv6SubnetLen int
	IPv6SubnetMin netip.Addr
	IPv6SubnetMax netip.Addr

	EnableNFTables bool

	// BackendType is Backend.Type lower-cased ("host-gw", "vxlan", "udp");
	// Parse does not check that such a backend exists (backends.CheckOptions
	// does).
	BackendType string
	// Backend is the raw Backend object, for the backend to decode its own
	// options from (again with encoding/json semantics).
	Backend json.RawMessage
}
