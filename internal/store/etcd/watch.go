package etcdstore

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/lease"
)

// Backoff between attempts to list or watch after an error.
const (
	minWatchBackoff = 100 * time.Millisecond
	maxWatchBackoff = 5 * time.Second
)

// Watch implements store.Store: it lists <prefix>/subnets/, calls fn with
// that snapshot, then follows etcd's watch from the next revision and calls
// fn with the full set once per watch response. After a disconnect it
// resumes from the last revision it applied; when etcd compacted that
// revision away it lists again and delivers a fresh snapshot. Keys that are
// not valid leases are left out, with one warning each. It returns only
// ctx.Err().
func (s *Store) Watch(ctx context.Context, fn func([]lease.Lease)) error {
	w := &watcher{
		s:      s,
		fn:     fn,
		leases: make(map[string]watched),
		exp:    newExpiries(),
		warned: make(map[string]int64),
	}
	backoff := minWatchBackoff
	wait := func(what string, err error) error {
		s.metrics.StoreError("watch")
		s.metrics.WatchRestarted()
		s.log.Warn(what+"; retrying", "prefix", s.subnets, "revision", w.rev, "in", backoff, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxWatchBackoff)
		return nil
	}

	listed := false
	for {
		if !listed {
			if err := w.snapshot(ctx); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if err := wait("list leases to watch", err); err != nil {
					return err
				}
				continue
			}
			listed = true
			backoff = minWatchBackoff
		}
		progressed, err := w.follow(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if progressed {
			backoff = minWatchBackoff
		}
		if errors.Is(err, rpctypes.ErrCompacted) {
			s.log.Info("watch revision was compacted away; listing leases again", "prefix", s.subnets, "revision", w.rev)
			s.metrics.WatchRestarted()
			listed = false
			continue
		}
		if err := wait("watch leases", err); err != nil {
			return err
		}
	}
}

// watched is a lease as the watcher holds it, with the etcd lease its key is
// attached to.
type watched struct {
	lease lease.Lease // without Expiration
	id    clientv3.LeaseID
}

// watcher is the state of one Watch call; it is used by that call's
// goroutine only.
type watcher struct {
	s      *Store
	fn     func([]lease.Lease)
	leases map[string]watched // by etcd key
	exp    *expiries
	// warned remembers the ModRevision of each garbage key already
	// reported, so that a re-list does not repeat the warning.
	warned map[string]int64
	// rev is the revision that leases reflects: every event up to it is
	// applied.
	rev int64
}

// snapshot replaces the watcher's state with a fresh listing and delivers it.
func (w *watcher) snapshot(ctx context.Context) error {
	resp, err := w.s.cli.Get(ctx, w.s.subnets, clientv3.WithPrefix())
	if err != nil {
		return err
	}
	clear(w.leases)
	seen := make(map[string]bool, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		w.put(kv)
		seen[string(kv.Key)] = true
	}
	for k := range w.warned {
		if !seen[k] {
			delete(w.warned, k)
		}
	}
	w.rev = resp.Header.Revision
	w.deliver(ctx)
	return nil
}

// follow watches from w.rev+1 until the watch ends. It reports whether it
// applied anything, and why it ended: rpctypes.ErrCompacted when w.rev is
// no longer available.
func (w *watcher) follow(ctx context.Context) (progressed bool, err error) {
	// Without a leader a member serves stale data; WithRequireLeader makes
	// the watch end instead so that we reconnect, possibly elsewhere.
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	ch := w.s.cli.Watch(wctx, w.s.subnets,
		clientv3.WithPrefix(), clientv3.WithRev(w.rev+1), clientv3.WithProgressNotify())
	for resp := range ch {
		if resp.CompactRevision != 0 {
			return progressed, rpctypes.ErrCompacted
		}
		if err := resp.Err(); err != nil {
			return progressed, err
		}
		if resp.IsProgressNotify() {
			// Progress notifications go only to watchers that have caught
			// up, so the header revision is safe to resume from.
			w.rev = max(w.rev, resp.Header.Revision)
			continue
		}
		if len(resp.Events) == 0 {
			continue
		}
		for _, ev := range resp.Events {
			switch ev.Type {
			case clientv3.EventTypePut:
				w.put(ev.Kv)
			case clientv3.EventTypeDelete:
				w.remove(ev.Kv)
			}
			// A catching-up watcher gets responses whose header revision
			// is ahead of the events in them, so only the events say how
			// far we got.
			w.rev = max(w.rev, ev.Kv.ModRevision)
		}
		progressed = true
		w.deliver(ctx)
	}
	if err := ctx.Err(); err != nil {
		return progressed, err
	}
	return progressed, errors.New("watch channel closed")
}

func (w *watcher) put(kv *mvccpb.KeyValue) {
	key := string(kv.Key)
	l, err := w.s.decode(kv)
	if err != nil {
		delete(w.leases, key)
		if w.warned[key] != kv.ModRevision {
			w.warned[key] = kv.ModRevision
			w.s.log.Warn("skipping a key under the subnets prefix that is not a valid lease", "key", key, "err", err)
		}
		return
	}
	delete(w.warned, key)
	w.leases[key] = watched{lease: l, id: clientv3.LeaseID(kv.Lease)}
}

func (w *watcher) remove(kv *mvccpb.KeyValue) {
	key := string(kv.Key)
	delete(w.leases, key)
	delete(w.warned, key)
}

// deliver calls fn with every lease, Expiration set, ordered by subnet.
func (w *watcher) deliver(ctx context.Context) {
	ids := make(map[clientv3.LeaseID]struct{}, len(w.leases))
	for _, l := range w.leases {
		ids[l.id] = struct{}{}
	}
	w.exp.retain(ids)
	w.exp.refresh(ctx, w.s, ids)
	if ctx.Err() != nil {
		return
	}
	out := make([]lease.Lease, 0, len(w.leases))
	for _, l := range w.leases {
		l.lease.Expiration = w.exp.expiration(w.s, l.id)
		out = append(out, l.lease)
	}
	slices.SortFunc(out, func(a, b lease.Lease) int {
		if c := a.Subnet.Addr().Compare(b.Subnet.Addr()); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Subnet.Bits(), b.Subnet.Bits()); c != 0 {
			return c
		}
		return a.IPv6Subnet.Addr().Compare(b.IPv6Subnet.Addr())
	})
	w.fn(out)
}
