package etcdstore

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/store"
)

var (
	_ store.PublishedReader = (*Store)(nil)
	_ store.ConfigHinter    = (*Store)(nil)
	_ store.Lister          = (*Store)(nil)
	_ store.RawConfigReader = (*Store)(nil)
)

// Published returns the backend type and data of the lease that carries
// publicIP, if there is one. It needs no expirations, so unlike List it asks
// etcd for none.
func (s *Store) Published(ctx context.Context, publicIP netip.Addr, hostID string) (lease.Attrs, error) {
	ls, err := s.list(ctx, nil)
	if err != nil {
		return lease.Attrs{}, err
	}
	// Of several leases with that address (stale ones of this host), the
	// one with the lowest subnet, as List orders them.
	var found *lease.Lease
	for _, e := range ls.entries {
		if e.bad != nil || e.lease.Attrs.PublicIP != publicIP {
			continue
		}
		// Another host with the same address must not hand us its VTEP
		// MAC: two devices with one MAC would each get the other's
		// traffic.
		if id := e.lease.Attrs.HostID; id != "" && hostID != "" && id != hostID {
			continue
		}
		if found == nil || cmpLease(e.lease, *found) < 0 {
			found = &e.lease
		}
	}
	if found == nil {
		return lease.Attrs{}, nil
	}
	a := found.Attrs
	return lease.Attrs{BackendType: a.BackendType, BackendData: a.BackendData, BackendV6Data: a.BackendV6Data}, nil
}

// ConfigHint is the etcdctl command that creates a network config.
func (s *Store) ConfigHint() string {
	return fmt.Sprintf(`etcdctl put %s '{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}'  (or: weft config put --etcd-prefix %s '...')`, s.ConfigKey(), s.prefix)
}
