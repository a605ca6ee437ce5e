// Package lease holds the subnet lease model shared by every store and
// backend, in flannel's wire formats, and the pure decisions about leases:
// which subnet a host gets and how a new snapshot of peers differs from the
// last one. It never imports netlink, etcd or Kubernetes, so every decision
// is testable without root.
package lease

import (
	"encoding/json"
	"net/netip"
	"time"
)

// Attrs is what a host publishes about itself with its lease. Its JSON form
// is byte-for-byte flannel's:
//
//	{"PublicIP":"10.4.7.21","PublicIPv6":null,"BackendType":"host-gw"}
//	{"PublicIP":"10.4.7.21","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}}
//
// PublicIP is always present ("0.0.0.0" when unset), PublicIPv6 is a string
// or null, the rest are omitted when empty.
type Attrs struct {
	PublicIP      netip.Addr
	PublicIPv6    netip.Addr // zero Addr encodes as null
	BackendType   string
	BackendData   json.RawMessage // compact JSON; nil when the backend has none
	BackendV6Data json.RawMessage
}

// Lease is one host's claim on a subnet of the cluster network.
type Lease struct {
	Subnet     netip.Prefix // IPv4 subnet, e.g. 172.7.21.0/24
	IPv6Subnet netip.Prefix // zero unless dual-stack
	Attrs      Attrs
	// Expiration is when the store drops the lease. The zero time means the
	// lease never expires: an administrator's reservation.
	Expiration time.Time
}
