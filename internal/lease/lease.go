// Package lease holds the subnet lease model shared by every store and
// backend, in flannel's wire formats, and the pure decisions about leases:
// which subnet a host gets and how a new snapshot of peers differs from the
// last one. It never imports netlink, etcd or Kubernetes, so every decision
// is testable without root.
package lease

import (
	"encoding/json"
	"net/netip"
	"strings"
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
	// HostID is weft's identity of the host (see docs/formats.md), so that
	// two hosts with one PublicIP are told apart; "" for flannel hosts and
	// older weft. It is weft's own field, WeftHostID, after flannel's.
	HostID string
}

// Lease is one host's claim on a subnet of the cluster network.
type Lease struct {
	Subnet     netip.Prefix // IPv4 subnet, e.g. 172.7.21.0/24
	IPv6Subnet netip.Prefix // zero unless dual-stack
	Attrs      Attrs
	// Expiration is when the store drops the lease. The zero time means the
	// lease never expires: an administrator's reservation.
	Expiration time.Time
	// Created orders leases by age, for the rule that when two leases
	// conflict the one that was there first wins: etcd's CreateRevision of
	// the key, or with the Kubernetes store the Node's creationTimestamp
	// in Unix nanoseconds. Smaller is older; 0 means unknown, which counts
	// as oldest. It is not part of the lease's data: a key deleted and
	// written again with the same value is no change to the data plane.
	Created int64
}

// Key is the subnet that names l among the leases, as flannel's etcd key
// does: its IPv4 subnet, or in an IPv6-only network (EnableIPv4 false),
// where leases have none, its IPv6 subnet. Everything that tells the own
// lease from peers, or keys peers in a map, uses it.
func (l Lease) Key() netip.Prefix {
	if l.Subnet.IsValid() {
		return l.Subnet
	}
	return l.IPv6Subnet
}

// PublicAddr is the address that names l's host among the leases, as Key
// names its subnet: its PublicIP, or in an IPv6-only network its
// PublicIPv6.
func (l Lease) PublicAddr() netip.Addr {
	if l.Subnet.IsValid() || l.Attrs.PublicIP.IsValid() {
		return l.Attrs.PublicIP
	}
	return l.Attrs.PublicIPv6
}

// Reservation reports whether l never expires (a key without TTL).
func (l Lease) Reservation() bool { return l.Expiration.IsZero() }

// String renders l for logs, e.g.
// "172.7.21.0/24 PublicIP=10.4.7.21 host-gw expires=2025-01-02T03:04:05Z"
// or "... reservation".
func (l Lease) String() string {
	var b strings.Builder
	b.WriteString(l.Subnet.String())
	if l.IPv6Subnet.IsValid() {
		b.WriteString("&" + l.IPv6Subnet.String())
	}
	b.WriteString(" PublicIP=")
	if l.Attrs.PublicIP.IsValid() {
		b.WriteString(l.Attrs.PublicIP.String())
	} else {
		b.WriteString("none")
	}
	if l.Attrs.PublicIPv6.IsValid() {
		b.WriteString(" PublicIPv6=" + l.Attrs.PublicIPv6.String())
	}
	if l.Attrs.BackendType != "" {
		b.WriteString(" " + l.Attrs.BackendType)
	}
	if l.Reservation() {
		b.WriteString(" reservation")
	} else {
		b.WriteString(" expires=" + l.Expiration.UTC().Format(time.RFC3339))
	}
	return b.String()
}

// RenewAt is when a lease expiring at exp should be renewed, given the
// renew margin: exp-margin, but never before now. A reservation (zero exp)
// is never renewed: RenewAt returns the zero time, and callers must check
// for it rather than arm a timer.
func RenewAt(exp time.Time, margin time.Duration, now time.Time) time.Time {
	if exp.IsZero() {
		return time.Time{}
	}
	if at := exp.Add(-margin); at.After(now) {
		return at
	}
	return now
}
