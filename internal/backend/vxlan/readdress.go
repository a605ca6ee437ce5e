package vxlan

import (
	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/lease"
)

var _ backend.Readdresser = (*Backend)(nil)

// Address is the VTEP MAC this host publishes: flannel.<VNI>'s, or on an
// IPv6-only network flannel-v6.<VNI>'s.
func (b *Backend) Address() string {
	if b.noIPv4 {
		return b.v6.VtepMAC().String()
	}
	return b.VtepMAC().String()
}

// LeaseAddress is the VtepMAC a vxlan lease publishes (its BackendV6Data's
// on an IPv6-only network), "" for any other.
func (b *Backend) LeaseAddress(l lease.Lease) string {
	if l.Attrs.BackendType != BackendType {
		return ""
	}
	data := l.Attrs.BackendData
	if b.noIPv4 {
		data = l.Attrs.BackendV6Data
	}
	mac, err := parsePeerData(data)
	if err != nil {
		return ""
	}
	return mac.String()
}
