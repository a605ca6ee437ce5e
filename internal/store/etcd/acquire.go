package etcdstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/netconf"
	"github.com/weftnet/weft/internal/store"
)

// maxAcquireAttempts is how often Acquire re-lists and tries again after
// another host changed the subnets between our read and our write.
const maxAcquireAttempts = 10

// errLostRace marks a compare-and-swap that failed because the key changed
// since it was listed; the caller re-reads and tries again.
var errLostRace = errors.New("the key changed since it was read")

// Acquire implements store.Store. The returned lease's Attrs are req.Attrs
// as decoded back from the stored JSON.
func (s *Store) Acquire(ctx context.Context, cfg *netconf.Config, req store.AcquireRequest) (lease.Lease, error) {
	val, err := json.Marshal(req.Attrs)
	if err != nil {
		return lease.Lease{}, fmt.Errorf("acquire lease under %s: %w", s.subnets, err)
	}
	var stored lease.Attrs
	if err := json.Unmarshal(val, &stored); err != nil {
		return lease.Lease{}, fmt.Errorf("acquire lease under %s: attributes do not survive encoding: %w", s.subnets, err)
	}

	var lost error
	for attempt := 1; attempt <= maxAcquireAttempts; attempt++ {
		l, err := s.tryAcquire(ctx, cfg, req, val)
		if err == nil {
			l.Attrs = stored
			return l, nil
		}
		if !errors.Is(err, errLostRace) {
			return lease.Lease{}, fmt.Errorf("acquire lease under %s: %w", s.subnets, err)
		}
		lost = err
		s.log.Info("lost a race for a subnet to another host; trying again", "attempt", attempt, "err", err)
		// Hosts that collided would collide again if they retried in
		// lockstep.
		pause := time.Duration(rand.Int64N(int64(20*time.Millisecond) * int64(attempt)))
		select {
		case <-ctx.Done():
			return lease.Lease{}, fmt.Errorf("acquire lease under %s: %w", s.subnets, ctx.Err())
		case <-time.After(pause):
		}
	}
	return lease.Lease{}, fmt.Errorf("acquire lease under %s: gave up after %d attempts: %w", s.subnets, maxAcquireAttempts, lost)
}

// tryAcquire makes one decision from one listing and writes it. It returns
// an error wrapping errLostRace when a key changed under it.
func (s *Store) tryAcquire(ctx context.Context, cfg *netconf.Config, req store.AcquireRequest, val []byte) (lease.Lease, error) {
	// PickSubnet tells reservations from leases but never reads an
	// expiration, so the listing asks etcd for none: with thousands of
	// hosts that is thousands of TimeToLive calls saved on every start.
	ls, err := s.list(ctx, nil)
	if err != nil {
		return lease.Lease{}, err
	}
	existing := make([]lease.Lease, 0, len(ls.entries))
	byPrefix := make(map[[2]netip.Prefix]*entry, len(ls.entries))
	for i := range ls.entries {
		e := &ls.entries[i]
		if e.bad != nil {
			s.log.Warn("ignoring a key under the subnets prefix that is not a valid lease", "key", e.key, "err", e.bad)
			if !e.lease.Subnet.IsValid() {
				continue
			}
		}
		existing = append(existing, e.lease)
		if e.bad == nil {
			byPrefix[[2]netip.Prefix{e.lease.Subnet, e.lease.IPv6Subnet}] = e
		}
	}
	pick, err := lease.PickSubnet(lease.PickInput{
		Config:       cfg,
		Existing:     existing,
		PublicIP:     req.Attrs.PublicIP,
		Previous:     req.Previous,
		PreviousIPv6: req.PreviousIPv6,
		HostID:       req.Attrs.HostID,
		NewHostID:    req.NewHostID,
	})
	if err != nil {
		return lease.Lease{}, err
	}
	if pick.Warning != "" {
		s.log.Warn(pick.Warning, "subnet", pick.Subnet)
	}
	find := func(l lease.Lease) (*entry, error) {
		e, ok := byPrefix[[2]netip.Prefix{l.Subnet, l.IPv6Subnet}]
		if !ok {
			return nil, fmt.Errorf("lease %s chosen by PickSubnet is not in the listing", l.Subnet)
		}
		return e, nil
	}

	for _, st := range pick.Stale {
		e, err := find(st)
		if err != nil {
			return lease.Lease{}, err
		}
		if err := s.deleteIfUnchanged(ctx, e); err != nil {
			return lease.Lease{}, err
		}
		s.log.Info("deleted a stale lease of this host", "key", e.key, "subnet", st.Subnet)
	}

	if ex := pick.Existing; ex != nil {
		e, err := find(*ex)
		if err != nil {
			return lease.Lease{}, err
		}
		l := lease.Lease{Subnet: ex.Subnet, IPv6Subnet: ex.IPv6Subnet}
		if pick.IPv6Subnet != ex.IPv6Subnet && e.kv.Lease != int64(clientv3.NoLease) {
			// The IPv6 part changed (IPv6 enabled or disabled, or its
			// subnet no longer fits): the key names both subnets, so the
			// lease moves to a new key, in one transaction so that the
			// host never holds two keys or none.
			return s.rekey(ctx, e, lease.Lease{Subnet: ex.Subnet, IPv6Subnet: pick.IPv6Subnet}, val, ls.rev, pick.Reason)
		}
		if e.kv.Lease == int64(clientv3.NoLease) {
			// A reservation stays without TTL; only its attributes follow
			// the host.
			if !bytes.Equal(e.kv.Value, val) {
				if err := s.putIfUnchanged(ctx, e, val, clientv3.NoLease); err != nil {
					return lease.Lease{}, err
				}
			}
			s.log.Info("acquired lease", "subnet", l.Subnet, "key", e.key, "reservation", true, "reason", pick.Reason)
			return l, nil
		}
		id, exp, err := s.grant(ctx)
		if err != nil {
			return lease.Lease{}, err
		}
		if err := s.putIfUnchanged(ctx, e, val, id); err != nil {
			s.revoke(id)
			return lease.Lease{}, err
		}
		l.Expiration = exp
		s.log.Info("acquired lease", "subnet", l.Subnet, "key", e.key, "expires", exp, "reason", pick.Reason)
		return l, nil
	}

	l := lease.Lease{Subnet: pick.Subnet, IPv6Subnet: pick.IPv6Subnet}
	key := s.subnets + lease.KeyName(l.Subnet, l.IPv6Subnet)
	exp, err := s.create(ctx, key, val, s.freeGuards(l, ls.rev)...)
	if err != nil {
		return lease.Lease{}, err
	}
	l.Expiration = exp
	s.log.Info("acquired lease", "subnet", l.Subnet, "key", key, "expires", exp, "reason", pick.Reason)
	return l, nil
}

// rekey moves the listed lease e to the key of l (same IPv4 subnet, new
// IPv6 part) with a fresh etcd lease: the old key is deleted and the new
// one created in one transaction, which fails as a lost race when either
// changed since listing.
func (s *Store) rekey(ctx context.Context, e *entry, l lease.Lease, val []byte, rev int64, reason string) (lease.Lease, error) {
	key := s.subnets + lease.KeyName(l.Subnet, l.IPv6Subnet)
	id, exp, err := s.grant(ctx)
	if err != nil {
		return lease.Lease{}, err
	}
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(e.key), "=", e.kv.ModRevision), clientv3.Compare(clientv3.Version(key), "=", 0)}
	if l.IPv6Subnet.IsValid() {
		cmps = append(cmps, s.noNewKeys(rev))
	}
	resp, err := s.cli.Txn(ctx).
		If(cmps...).
		Then(clientv3.OpDelete(e.key), clientv3.OpPut(key, string(val), clientv3.WithLease(id))).
		Commit()
	if err != nil {
		s.revoke(id)
		return lease.Lease{}, fmt.Errorf("move lease %s to %s: %w", e.key, key, err)
	}
	if !resp.Succeeded {
		s.revoke(id)
		return lease.Lease{}, fmt.Errorf("move lease %s to %s: %w", e.key, key, errLostRace)
	}
	l.Expiration = exp
	s.log.Info("acquired lease under a new key: its IPv6 subnet changed", "subnet", l.Subnet, "key", key, "was", e.key, "expires", exp, "reason", reason)
	return l, nil
}

// grant creates an etcd lease with the store's TTL.
func (s *Store) grant(ctx context.Context) (clientv3.LeaseID, time.Time, error) {
	resp, err := s.cli.Grant(ctx, s.ttlGrant)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("grant etcd lease of %v: %w", s.ttl, err)
	}
	return resp.ID, time.Now().Add(time.Duration(resp.TTL) * time.Second), nil
}

// revoke drops an etcd lease we granted but did not attach. Failure only
// leaves it to expire on its own, so it is logged, not returned.
func (s *Store) revoke(id clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.cli.Revoke(ctx, id); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		s.log.Debug("revoke unused etcd lease", "lease", fmt.Sprintf("%x", int64(id)), "err", err)
	}
}

// freeGuards are the conditions under which the subnets of l, chosen from
// a listing at revision rev, are still free when its key is created.
//
// A key names both subnets, so "the key does not exist" is not enough:
// "10.5.1.0-24" and "10.5.1.0-24&fd00::-64" are different keys for one
// IPv4 subnet, and two hosts may pick one IPv6 subnet under different IPv4
// ones. The IPv4 subnet is guarded by its key name as a prefix (every key
// for that subnet starts with "10.5.1.0-24"). An IPv6 subnet sits at the
// end of the key, where no range query finds it, so a dual-stack create
// also requires that no lease key was created since the listing: a host
// that loses that race re-lists and picks again (Acquire's retries). Only
// creations count: renewals (keep-alives, re-puts) do not change a key's
// CreateRevision, so they never make a host retry.
func (s *Store) freeGuards(l lease.Lease, rev int64) []clientv3.Cmp {
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.Version(s.subnets+lease.KeyName(l.Subnet, netip.Prefix{})).WithPrefix(), "=", 0)}
	if l.IPv6Subnet.IsValid() {
		cmps = append(cmps, s.noNewKeys(rev))
	}
	return cmps
}

// noNewKeys holds when no key under the subnets prefix was created after
// revision rev.
func (s *Store) noNewKeys(rev int64) clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(s.subnets).WithPrefix(), "<", rev+1)
}

// create writes key with a new etcd lease if the key does not exist and
// the guards hold.
func (s *Store) create(ctx context.Context, key string, val []byte, guards ...clientv3.Cmp) (time.Time, error) {
	id, exp, err := s.grant(ctx)
	if err != nil {
		return time.Time{}, err
	}
	resp, err := s.cli.Txn(ctx).
		If(append([]clientv3.Cmp{clientv3.Compare(clientv3.Version(key), "=", 0)}, guards...)...).
		Then(clientv3.OpPut(key, string(val), clientv3.WithLease(id))).
		Commit()
	if err != nil {
		s.revoke(id)
		return time.Time{}, fmt.Errorf("create %s: %w", key, err)
	}
	if !resp.Succeeded {
		s.revoke(id)
		return time.Time{}, fmt.Errorf("create %s: another host created it, or a key for one of its subnets, first: %w", key, errLostRace)
	}
	return exp, nil
}

// putIfUnchanged overwrites a listed key, attached to etcd lease id (or to
// none), unless it changed since listing.
func (s *Store) putIfUnchanged(ctx context.Context, e *entry, val []byte, id clientv3.LeaseID) error {
	var opts []clientv3.OpOption
	if id != clientv3.NoLease {
		opts = append(opts, clientv3.WithLease(id))
	}
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(e.key), "=", e.kv.ModRevision)).
		Then(clientv3.OpPut(e.key, string(val), opts...)).
		Commit()
	if err != nil {
		return fmt.Errorf("update %s: %w", e.key, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("update %s: %w", e.key, errLostRace)
	}
	return nil
}

// deleteIfUnchanged deletes a listed key unless it changed since listing.
func (s *Store) deleteIfUnchanged(ctx context.Context, e *entry) error {
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(e.key), "=", e.kv.ModRevision)).
		Then(clientv3.OpDelete(e.key)).
		Commit()
	if err != nil {
		return fmt.Errorf("delete %s: %w", e.key, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("delete %s: %w", e.key, errLostRace)
	}
	return nil
}

// maxRenewAttempts bounds Renew's loop when the key changes between our
// read and our write (e.g. the etcd lease expires in between).
const maxRenewAttempts = 3

// Renew implements store.Store. It keeps the key's etcd lease alive; if the
// key is gone it re-creates it for the same subnet when the subnet is still
// free, and if another host holds the subnet now it fails saying so.
func (s *Store) Renew(ctx context.Context, l lease.Lease) (lease.Lease, error) {
	if l.Reservation() {
		return l, nil
	}
	key := s.subnets + lease.KeyName(l.Subnet, l.IPv6Subnet)
	var lastErr error
	for range maxRenewAttempts {
		out, err := s.tryRenew(ctx, key, l)
		if err == nil {
			return out, nil
		}
		if !errors.Is(err, errLostRace) {
			return lease.Lease{}, fmt.Errorf("renew lease %s: %w", l.Subnet, err)
		}
		lastErr = err
	}
	return lease.Lease{}, fmt.Errorf("renew lease %s: gave up after %d attempts: %w", l.Subnet, maxRenewAttempts, lastErr)
}

func (s *Store) tryRenew(ctx context.Context, key string, l lease.Lease) (lease.Lease, error) {
	resp, err := s.cli.Get(ctx, key)
	if err != nil {
		return lease.Lease{}, fmt.Errorf("read %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		val, err := json.Marshal(l.Attrs)
		if err != nil {
			return lease.Lease{}, err
		}
		// Another key may hold the IPv4 subnet now (a dual-stack key
		// differs from an IPv4-only one): re-creating ours beside it
		// would give one subnet to two hosts.
		v4key := s.subnets + lease.KeyName(l.Subnet, netip.Prefix{})
		others, err := s.cli.Get(ctx, v4key, clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			return lease.Lease{}, fmt.Errorf("read %s*: %w", v4key, err)
		}
		if len(others.Kvs) > 0 {
			return lease.Lease{}, fmt.Errorf("subnet %s was taken by another host (key %s)", l.Subnet, others.Kvs[0].Key)
		}
		exp, err := s.create(ctx, key, val, s.freeGuards(lease.Lease{Subnet: l.Subnet}, 0)...)
		if err != nil {
			return lease.Lease{}, err
		}
		s.log.Warn("lease key had vanished from etcd (expired or deleted); re-created it", "key", key, "subnet", l.Subnet)
		l.Expiration = exp
		return l, nil
	}

	kv := resp.Kvs[0]
	var held lease.Attrs
	if err := json.Unmarshal(kv.Value, &held); err != nil {
		return lease.Lease{}, fmt.Errorf("%s no longer holds a valid lease: %w", key, err)
	}
	if held.PublicIP.Unmap() != l.Attrs.PublicIP.Unmap() {
		return lease.Lease{}, fmt.Errorf("subnet %s was taken by another host (PublicIP %s)", l.Subnet, held.PublicIP)
	}
	if held.HostID != "" && l.Attrs.HostID != "" && held.HostID != l.Attrs.HostID {
		// Keeping it alive would keep the other host's lease alive
		// under our name.
		return lease.Lease{}, fmt.Errorf("subnet %s was taken by another host with the same PublicIP %s (host ID %s, this host is %s): set --public-ip or --iface on one of them",
			l.Subnet, held.PublicIP, held.HostID, l.Attrs.HostID)
	}
	if kv.Lease == int64(clientv3.NoLease) {
		// An administrator turned our lease into a reservation; it no
		// longer expires.
		s.log.Info("lease is now a reservation", "key", key, "subnet", l.Subnet)
		l.Attrs = held
		l.Expiration = time.Time{}
		return l, nil
	}

	id := clientv3.LeaseID(kv.Lease)
	ka, err := s.cli.KeepAliveOnce(ctx, id)
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		// The etcd lease expired after our read; its key goes with it.
		// Attach a new one unless the key changed meanwhile.
		nid, exp, err := s.grant(ctx)
		if err != nil {
			return lease.Lease{}, err
		}
		e := &entry{key: key, kv: kv}
		if err := s.putIfUnchanged(ctx, e, kv.Value, nid); err != nil {
			s.revoke(nid)
			return lease.Lease{}, err
		}
		s.log.Warn("etcd lease had expired; attached a new one", "key", key, "subnet", l.Subnet)
		l.Expiration = exp
		return l, nil
	}
	if err != nil {
		return lease.Lease{}, fmt.Errorf("keep etcd lease %x of %s alive: %w", int64(id), key, err)
	}
	l.Expiration = time.Now().Add(time.Duration(ka.TTL) * time.Second)
	return l, nil
}
