package backend

import "github.com/weftnet/weft/internal/lease"

// Readdresser is a backend whose leases publish an address of the host's
// own that peers must not share, and that can pick a new one: vxlan's VTEP
// MAC. Two hosts with one VTEP MAC (a state directory copied with a cloned
// image) cannot reach each other, since each takes the other's MAC for its
// own; the agent asks the newcomer to readdress (identity_watch.go).
type Readdresser interface {
	// Address is the address this host publishes, in its lease data.
	Address() string
	// LeaseAddress is the address a lease of this backend publishes; ""
	// when it publishes none or is of another backend.
	LeaseAddress(l lease.Lease) string
	// Readdress replaces the own address with a new random one: persisted
	// in the state directory, set on the device, and returned by
	// LeaseAttrs from then on, so that the agent republishes it. Peers
	// programmed before keep working; the next Apply uses the new address.
	Readdress() (old, new string, err error)
}
