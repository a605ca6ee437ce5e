package lease

// THIS FILE HOLDS THE AGREED SIGNATURES; the lease helper replaces the bodies
// (and may move them to other files of this package) without changing them.

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/weftnet/weft/internal/netconf"
)

// ErrPoolExhausted is wrapped by PickSubnet when no subnet is free.
var ErrPoolExhausted = errors.New("no free subnet left in the pool")

// MarshalJSON renders flannel's exact field names and order.
func (a Attrs) MarshalJSON() ([]byte, error) { panic("TODO") }

// UnmarshalJSON accepts flannel's JSON (and tolerates a missing BackendType).
func (a *Attrs) UnmarshalJSON(b []byte) error { panic("TODO") }

// KeyName renders a lease key's last element: "10.5.1.0-24", or
// "10.5.1.0-24&fc00::-64" when v6 is valid.
func KeyName(v4, v6 netip.Prefix) string { panic("TODO") }

// ParseKeyName is the inverse of KeyName; it rejects anything else.
func ParseKeyName(name string) (v4, v6 netip.Prefix, err error) { panic("TODO") }

// PickInput is everything PickSubnet decides from.
type PickInput struct {
	Config   *netconf.Config
	Existing []Lease // every lease and reservation in the store
	PublicIP netip.Addr
	Previous netip.Prefix // from subnet.env; zero if none
	Rand     *rand.Rand   // nil: a random source seeded from crypto/rand
}

// Pick is PickSubnet's decision.
type Pick struct {
	Subnet netip.Prefix
	// Existing is the store's lease that already carries our PublicIP and is
	// being reused (nil when the subnet is new to us). Reservation() on it
	// tells the store to keep it without a TTL.
	Existing *Lease
	// Stale are leases carrying our PublicIP that no longer fit the config
	// (outside SubnetMin..SubnetMax, wrong length); the store deletes them.
	// Reservations are never stale.
	Stale []Lease
	// Reason says in words why this subnet was chosen, for the log.
	Reason string
}

// PickSubnet chooses this host's subnet in flannel's order. It fails with an
// error wrapping ErrPoolExhausted, saying how many subnets are leased and
// how many the pool has, when nothing is free.
func PickSubnet(in PickInput) (Pick, error) { panic("TODO") }

// Reservation reports whether l never expires (a key without TTL).
func (l Lease) Reservation() bool { return l.Expiration.IsZero() }

// Changes is how one snapshot of leases differs from the previous one.
type Changes struct {
	Added, Removed, Changed []Lease
}

// Diff compares two snapshots keyed by subnet. Changed holds leases whose
// Attrs differ (not just the expiration).
func Diff(prev, next []Lease) Changes { panic("TODO") }

// RenewAt is when a lease expiring at exp should be renewed, given the
// renew margin: exp-margin, but never before now.
func RenewAt(exp time.Time, margin time.Duration, now time.Time) time.Time { panic("TODO") }
