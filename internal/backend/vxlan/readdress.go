package vxlan

import (
	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/lease"
)

var _ backend.Readdresser = (*Backend)(nil)

// Address is the VTEP MAC this host publishes.
func (b *Backend) Address() string { return b.VtepMAC().String() }

// LeaseAddress is the VtepMAC a vxlan lease publishes, "" for any other.
func (b *Backend) LeaseAddress(l lease.Lease) string {
	if l.Attrs.BackendType != BackendType {
		return ""
	}
	mac, err := parsePeerData(l.Attrs.BackendData)
	if err != nil {
		return ""
	}
	return mac.String()
}
