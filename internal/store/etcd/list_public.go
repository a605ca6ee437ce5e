package etcdstore

import (
	"cmp"
	"context"
	"slices"

	"github.com/weftnet/weft/internal/lease"
)

// List reads every lease under <prefix>/subnets/ once, with its expiration
// (the zero time for a reservation), ordered by subnet: the same set the
// first snapshot of Watch delivers, for tools that look rather than follow
// (weft status). Keys that are not valid leases are left out with a warning
// each. An expiration etcd could not be asked for is estimated as a freshly
// granted lease.
func (s *Store) List(ctx context.Context) ([]lease.Lease, error) {
	l, err := s.list(ctx, newExpiries())
	if err != nil {
		return nil, err
	}
	out := make([]lease.Lease, 0, len(l.entries))
	for _, e := range l.entries {
		if e.bad != nil {
			s.log.Warn("skipping a key under the subnets prefix that is not a valid lease", "key", e.key, "err", e.bad)
			continue
		}
		out = append(out, e.lease)
	}
	slices.SortFunc(out, cmpLease)
	return out, nil
}

// cmpLease orders leases by subnet, then IPv6 subnet: the order of List
// and of Watch's snapshots.
func cmpLease(a, b lease.Lease) int {
	return cmp.Or(
		a.Subnet.Addr().Compare(b.Subnet.Addr()),
		cmp.Compare(a.Subnet.Bits(), b.Subnet.Bits()),
		a.IPv6Subnet.Addr().Compare(b.IPv6Subnet.Addr()),
	)
}
