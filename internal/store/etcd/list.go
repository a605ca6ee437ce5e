package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/lease"
)

// decode turns one key under <prefix>/subnets/ into a lease without
// Expiration. Created is the key's CreateRevision, which says which of two
// conflicting leases was there first. The error says what is wrong with
// the key or the value.
func (s *Store) decode(kv *mvccpb.KeyValue) (lease.Lease, error) {
	name := strings.TrimPrefix(string(kv.Key), s.subnets)
	v4, v6, err := lease.ParseKeyName(name)
	if err != nil {
		return lease.Lease{}, err
	}
	var a lease.Attrs
	if err := json.Unmarshal(kv.Value, &a); err != nil {
		return lease.Lease{}, err
	}
	return lease.Lease{Subnet: v4, IPv6Subnet: v6, Attrs: a, Created: kv.CreateRevision}, nil
}

// maxTTLLookups bounds the TimeToLive calls in flight, so that listing
// thousands of leases neither takes thousands of round trips in a row nor
// floods etcd.
const maxTTLLookups = 16

// ttlLookupTimeout bounds one TimeToLive call.
const ttlLookupTimeout = 5 * time.Second

// ttlRetryAfter is how long a lease whose lookup failed is left at its
// estimate before it is looked up again.
const ttlRetryAfter = 30 * time.Second

// expiries remembers when each etcd lease expires, so that listing or
// watching thousands of keys does not cost a TimeToLive call per key and
// per change: a lease is looked up when first seen and again only once its
// remembered expiration has passed (the owner has probably renewed it with
// a keepalive, which the watch does not show).
type expiries struct {
	mu     sync.Mutex
	at     map[clientv3.LeaseID]time.Time // guarded by mu
	failed map[clientv3.LeaseID]time.Time // guarded by mu; lookup failed, retry after
}

func newExpiries() *expiries {
	return &expiries{at: make(map[clientv3.LeaseID]time.Time), failed: make(map[clientv3.LeaseID]time.Time)}
}

// refresh looks up every lease of ids that is unknown or past its
// remembered expiration, and waits for the lookups. Failed lookups are
// left out; expiration then estimates them.
func (e *expiries) refresh(ctx context.Context, s *Store, ids map[clientv3.LeaseID]struct{}) {
	now := time.Now()
	var todo []clientv3.LeaseID
	e.mu.Lock()
	for id := range ids {
		if e.stale(id, now, false) {
			todo = append(todo, id)
		}
	}
	e.mu.Unlock()
	e.lookup(ctx, s, todo)
}

// stale reports whether id needs a lookup: not the NoLease of a
// reservation, and unknown or past its remembered expiration. With
// backoff, a lease whose last lookup failed waits ttlRetryAfter. Callers
// hold mu.
func (e *expiries) stale(id clientv3.LeaseID, now time.Time, backoff bool) bool {
	if id == clientv3.NoLease {
		return false
	}
	if backoff {
		if retry, ok := e.failed[id]; ok && now.Before(retry) {
			return false
		}
	}
	at, ok := e.at[id]
	return !ok || !at.After(now)
}

// due returns the leases of ids that need a lookup, not retrying failed
// ones too soon.
func (e *expiries) due(ids map[clientv3.LeaseID]int) []clientv3.LeaseID {
	now := time.Now()
	var todo []clientv3.LeaseID
	e.mu.Lock()
	defer e.mu.Unlock()
	for id := range ids {
		if e.stale(id, now, true) {
			todo = append(todo, id)
		}
	}
	return todo
}

// lookup asks etcd for the expiration of each lease of ids, a few at a
// time, and remembers the answers.
func (e *expiries) lookup(ctx context.Context, s *Store, ids []clientv3.LeaseID) {
	if len(ids) == 0 {
		return
	}
	work := make(chan clientv3.LeaseID)
	var wg sync.WaitGroup
	for range min(maxTTLLookups, len(ids)) {
		wg.Go(func() {
			for id := range work {
				// Without a timeout a lookup waits for etcd to come back,
				// holding up a snapshot that only needs an estimate.
				lctx, cancel := context.WithTimeout(ctx, ttlLookupTimeout)
				at, err := s.leaseExpiry(lctx, id)
				cancel()
				now := time.Now()
				e.mu.Lock()
				switch {
				case err != nil:
					e.failed[id] = now.Add(ttlRetryAfter)
				case !at.After(now):
					// Gone or expiring: its keys are about to be deleted.
					// Asking again at once would only repeat the answer.
					e.at[id] = at
					e.failed[id] = now.Add(ttlRetryAfter)
				default:
					e.at[id] = at
					delete(e.failed, id)
				}
				e.mu.Unlock()
				if err != nil {
					s.log.Debug("look up etcd lease TTL", "lease", fmt.Sprintf("%x", int64(id)), "err", err)
				}
			}
		})
	}
	for _, id := range ids {
		select {
		case work <- id:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
}

// expiration is when a key attached to etcd lease id expires: zero for no
// lease (a reservation), never zero otherwise. A lease that has not been
// (or could not be) looked up is assumed freshly granted with the store's
// TTL.
func (e *expiries) expiration(s *Store, id clientv3.LeaseID) time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.expirationLocked(s, id, time.Now())
}

// expirationLocked is expiration for a caller that holds mu.
func (e *expiries) expirationLocked(s *Store, id clientv3.LeaseID, now time.Time) time.Time {
	if id == clientv3.NoLease {
		return time.Time{}
	}
	if at, ok := e.at[id]; ok {
		return at
	}
	return now.Add(s.ttl)
}

// retain forgets every lease not in ids.
func (e *expiries) retain(ids map[clientv3.LeaseID]struct{}) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for id := range e.at {
		if _, ok := ids[id]; !ok {
			delete(e.at, id)
		}
	}
	for id := range e.failed {
		if _, ok := ids[id]; !ok {
			delete(e.failed, id)
		}
	}
}

// forget drops what is remembered about one lease.
func (e *expiries) forget(id clientv3.LeaseID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.at, id)
	delete(e.failed, id)
}

// leaseExpiry asks etcd when lease id expires. A lease that no longer
// exists expired now (its keys are about to be deleted).
func (s *Store) leaseExpiry(ctx context.Context, id clientv3.LeaseID) (time.Time, error) {
	resp, err := s.cli.TimeToLive(ctx, id)
	now := time.Now()
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return now, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("time to live of etcd lease %x: %w", int64(id), err)
	}
	if resp.TTL <= 0 {
		return now, nil
	}
	return now.Add(time.Duration(resp.TTL) * time.Second), nil
}

// entry is one key under <prefix>/subnets/ as listed.
type entry struct {
	key   string
	kv    *mvccpb.KeyValue
	lease lease.Lease
	bad   error // why the key or value is not a lease; lease holds only Subnet then
}

// listing is every key under <prefix>/subnets/ at one revision.
type listing struct {
	rev     int64
	entries []entry
}

// list reads all lease keys with their expirations. Keys that are not valid
// leases are kept with bad set: they may still occupy a subnet. With exp
// nil nothing is looked up and every expiration is an estimate (zero for a
// reservation, as always): enough for deciding which subnet to take, which
// only tells reservations from leases.
func (s *Store) list(ctx context.Context, exp *expiries) (listing, error) {
	resp, err := s.cli.Get(ctx, s.subnets, clientv3.WithPrefix())
	if err != nil {
		return listing{}, fmt.Errorf("list %s: %w", s.subnets, err)
	}
	out := listing{rev: resp.Header.Revision, entries: make([]entry, 0, len(resp.Kvs))}
	if exp != nil {
		ids := make(map[clientv3.LeaseID]struct{})
		for _, kv := range resp.Kvs {
			ids[clientv3.LeaseID(kv.Lease)] = struct{}{}
		}
		exp.refresh(ctx, s, ids)
	} else {
		exp = newExpiries()
	}
	for _, kv := range resp.Kvs {
		e := entry{key: string(kv.Key), kv: kv}
		e.lease, e.bad = s.decode(kv)
		if e.bad != nil {
			// A parseable key with a garbage value still holds its subnet
			// in etcd: creating that key would fail.
			v4, v6, err := lease.ParseKeyName(strings.TrimPrefix(e.key, s.subnets))
			if err == nil {
				e.lease = lease.Lease{Subnet: v4, IPv6Subnet: v6}
			}
		}
		e.lease.Expiration = exp.expiration(s, clientv3.LeaseID(kv.Lease))
		out.entries = append(out.entries, e)
	}
	return out, nil
}
