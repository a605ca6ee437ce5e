package etcdstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
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
// fn with the full set after each change. Watch responses that are already
// queued when one has been applied are applied too before fn is called, so
// a burst of changes (hundreds of hosts joining, or churn faster than fn's
// consumer) costs one call, not one per change. After a disconnect it
// resumes from the last revision it applied; when etcd compacted that
// revision away it lists again and delivers a fresh snapshot. Keys that are
// not valid leases are left out, with one warning each. It returns only
// ctx.Err().
//
// A lease's Expiration is estimated as freshly granted with the store's
// TTL (zero for a reservation). With Options.WatchExpirations they are
// looked up in the background (one TimeToLive call per
// etcd lease, when first seen and again once the remembered expiration has
// passed), so that a snapshot of thousands of leases is delivered without
// waiting for thousands of round trips; until a lease's lookup is done its
// Expiration is estimated as freshly granted with the store's TTL. When a
// batch of lookups has finished, fn is called again with the same leases
// and their looked-up expirations.
func (s *Store) Watch(ctx context.Context, fn func([]lease.Lease)) error {
	w := &watcher{
		s:      s,
		fn:     fn,
		leases: make(map[string]*watched),
		ids:    make(map[clientv3.LeaseID]int),
		exp:    newExpiries(),
		warned: make(map[string]int64),
		looked: make(chan struct{}, 1),
	}
	defer w.lookups.Wait()
	go s.watchConnection(ctx)
	backoff := minWatchBackoff
	troubled := false // an error was reported and no success since
	w.working = func() {
		if troubled {
			troubled = false
			s.report("watch", nil)
		}
	}
	wait := func(what string, err error) error {
		s.metrics.WatchRestarted()
		if s.report != nil {
			// The agent logs it with its other store trouble, once.
			troubled = true
			s.report("watch", fmt.Errorf("%s (prefix %s, revision %d): %w", what, s.subnets, w.rev, err))
			s.log.Debug(what+"; retrying", "prefix", s.subnets, "revision", w.rev, "in", backoff, "err", err)
		} else {
			s.metrics.StoreError("watch")
			s.log.Warn(what+"; retrying", "prefix", s.subnets, "revision", w.rev, "in", backoff, "err", err)
		}
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
			w.working()
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

// watched is a lease as the watcher holds it, with its key and the etcd
// lease the key is attached to.
type watched struct {
	key   string
	lease lease.Lease // without Expiration
	id    clientv3.LeaseID
}

// watcher is the state of one Watch call; its fields are used by that
// call's goroutine only, except exp (which has its own lock) and the
// lookups it starts.
type watcher struct {
	s      *Store
	fn     func([]lease.Lease)
	leases map[string]*watched // by etcd key
	// order holds the leases sorted as snapshots are delivered (cmpLease,
	// then key), kept up to date key by key so that a delivery is one pass
	// rather than a sort.
	order []*watched
	// ids counts the keys attached to each etcd lease, so that a lease's
	// remembered expiration is dropped with its last key.
	ids map[clientv3.LeaseID]int
	exp *expiries
	// warned remembers the ModRevision of each garbage key already
	// reported, so that a re-list does not repeat the warning.
	warned map[string]int64
	// rev is the revision that leases reflects: every event up to it is
	// applied.
	rev int64

	// delivered is when fn was last called.
	delivered time.Time
	// working is called when a list or watch has succeeded.
	working func()

	// looking is set while a batch of expiration lookups runs; looked
	// receives a value when it has finished.
	looking bool
	looked  chan struct{}
	lookups sync.WaitGroup
}

// snapshot replaces the watcher's state with a fresh listing and delivers it.
func (w *watcher) snapshot(ctx context.Context) error {
	resp, err := w.s.cli.Get(ctx, w.s.subnets, clientv3.WithPrefix())
	if err != nil {
		return err
	}
	clear(w.leases)
	clear(w.ids)
	w.order = w.order[:0]
	seen := make(map[string]bool, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		key := string(kv.Key)
		seen[key] = true
		if l, ok := w.decode(kv); ok {
			w.leases[key] = l
			w.ids[l.id]++
			w.order = append(w.order, l)
		}
	}
	slices.SortFunc(w.order, cmpWatched)
	for k := range w.warned {
		if !seen[k] {
			delete(w.warned, k)
		}
	}
	keep := make(map[clientv3.LeaseID]struct{}, len(w.ids))
	for id := range w.ids {
		keep[id] = struct{}{}
	}
	w.exp.retain(keep)
	w.rev = resp.Header.Revision
	w.deliver(ctx)
	return nil
}

// follow watches from w.rev+1 until the watch ends. It reports whether it
// applied anything, and why it ended: rpctypes.ErrCompacted when w.rev is
// no longer available.
//
// Deliveries are spaced at least w.gap() apart: a change arriving sooner
// after the last delivery waits out the rest of the gap together with
// whatever else arrives meanwhile. Every delivery is a pass over all
// leases here and in fn's consumer, so with thousands of leases and
// hundreds of changes a second this keeps the work per change bounded; a
// single change after a quiet spell is delivered at once.
func (w *watcher) follow(ctx context.Context) (progressed bool, err error) {
	// Without a leader a member serves stale data; WithRequireLeader makes
	// the watch end instead so that we reconnect, possibly elsewhere.
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	// WithCreatedNotify: etcd's answer that the watch is in place ends
	// a reported trouble without waiting for the next change.
	ch := w.s.cli.Watch(wctx, w.s.subnets,
		clientv3.WithPrefix(), clientv3.WithRev(w.rev+1), clientv3.WithProgressNotify(), clientv3.WithCreatedNotify())

	pending := false // changes applied but not delivered yet
	var timer *time.Timer
	var due <-chan time.Time
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	flush := func() {
		pending, due = false, nil
		w.deliver(ctx)
	}
	for {
		var (
			resp clientv3.WatchResponse
			ok   bool
		)
		select {
		case <-w.looked:
			// Expirations were looked up: deliver them with whatever is
			// pending (and look up what has become due meanwhile).
			w.looking = false
			flush()
			continue
		case <-due:
			flush()
			continue
		case resp, ok = <-ch:
		}
		for ok {
			if resp.Created {
				w.working()
			}
			changed, err := w.apply(resp)
			if changed {
				pending, progressed = true, true
			}
			if err != nil {
				if pending {
					flush()
				}
				return progressed, err
			}
			// Take what is queued already: one delivery for a burst.
			var queued bool
			if resp, ok, queued = receiveQueued(ch); queued {
				// Closed (!ok): what was applied is delivered below.
				continue
			}
			break
		}
		if !ok {
			if pending {
				flush()
			}
			break
		}
		if pending && due == nil {
			if wait := w.gap() - time.Since(w.delivered); wait > 0 {
				if timer == nil {
					timer = time.NewTimer(wait)
				} else {
					timer.Reset(wait)
				}
				due = timer.C
			} else {
				flush()
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return progressed, err
	}
	return progressed, errors.New("watch channel closed")
}

// receiveQueued takes a watch response that is already queued, without
// waiting for one. The client hands its queue over one response at a time
// from a goroutine that must loop back to its send after each hand-over;
// yielding once gives it that chance, so a burst the client already holds
// is drained in one pass rather than found "empty" between two of its
// sends. queued is false when nothing was there; ok is false when the
// channel is closed.
func receiveQueued(ch clientv3.WatchChan) (resp clientv3.WatchResponse, ok, queued bool) {
	for try := 0; try < 2; try++ {
		select {
		case resp, ok = <-ch:
			return resp, ok, true
		default:
		}
		if try == 0 {
			runtime.Gosched()
		}
	}
	return resp, true, false
}

// gap is the least time between two deliveries: 10 µs per lease, so 50 ms
// at 5000 leases and nothing worth noticing for a small cluster, never
// more than 100 ms. A delivery costs the agent a pass over every lease
// (about 10 ms of CPU at 5000 with vxlan), so this caps that cost near a
// fifth of a core however fast leases change, for a few tens of
// milliseconds of added latency under churn (docs/benchmarks.md).
func (w *watcher) gap() time.Duration {
	return min(time.Duration(len(w.order))*10*time.Microsecond, 100*time.Millisecond)
}

// apply applies one watch response and reports whether it changed the
// lease set (or may have).
func (w *watcher) apply(resp clientv3.WatchResponse) (bool, error) {
	if resp.CompactRevision != 0 {
		return false, rpctypes.ErrCompacted
	}
	if err := resp.Err(); err != nil {
		return false, err
	}
	if resp.IsProgressNotify() {
		// Progress notifications go only to watchers that have caught
		// up, so the header revision is safe to resume from.
		w.rev = max(w.rev, resp.Header.Revision)
		return false, nil
	}
	for _, ev := range resp.Events {
		switch ev.Type {
		case clientv3.EventTypePut:
			w.put(ev.Kv)
		case clientv3.EventTypeDelete:
			w.remove(string(ev.Kv.Key))
		}
		// A catching-up watcher gets responses whose header revision
		// is ahead of the events in them, so only the events say how
		// far we got.
		w.rev = max(w.rev, ev.Kv.ModRevision)
	}
	return len(resp.Events) > 0, nil
}

// decode turns a key into a watched lease, warning once per revision of a
// key that is not a valid lease.
func (w *watcher) decode(kv *mvccpb.KeyValue) (*watched, bool) {
	key := string(kv.Key)
	l, err := w.s.decode(kv)
	if err != nil {
		if w.warned[key] != kv.ModRevision {
			w.warned[key] = kv.ModRevision
			w.s.log.Warn("skipping a key under the subnets prefix that is not a valid lease", "key", key, "err", err)
		}
		return nil, false
	}
	delete(w.warned, key)
	return &watched{key: key, lease: l, id: clientv3.LeaseID(kv.Lease)}, true
}

func (w *watcher) put(kv *mvccpb.KeyValue) {
	key := string(kv.Key)
	l, ok := w.decode(kv)
	if !ok {
		w.drop(key)
		return
	}
	old, had := w.leases[key]
	if had {
		// The key names the subnet, so its place in order stays.
		w.release(old.id)
		*old = *l
	} else {
		w.leases[key] = l
		i, _ := slices.BinarySearchFunc(w.order, l, cmpWatched)
		w.order = slices.Insert(w.order, i, l)
	}
	w.ids[l.id]++
}

// remove forgets a deleted key.
func (w *watcher) remove(key string) {
	delete(w.warned, key)
	w.drop(key)
}

// drop forgets the lease of a key (deleted, or no longer a valid lease).
func (w *watcher) drop(key string) {
	old, had := w.leases[key]
	if !had {
		return
	}
	delete(w.leases, key)
	if i, found := slices.BinarySearchFunc(w.order, old, cmpWatched); found {
		w.order = slices.Delete(w.order, i, i+1)
	}
	w.release(old.id)
}

// release drops one key's hold on an etcd lease, and the lease's
// remembered expiration with the last one.
func (w *watcher) release(id clientv3.LeaseID) {
	if w.ids[id]--; w.ids[id] <= 0 {
		delete(w.ids, id)
		w.exp.forget(id)
	}
}

// cmpWatched orders leases as snapshots list them, then by key (two keys
// may spell one subnet differently).
func cmpWatched(a, b *watched) int {
	return cmp.Or(cmpLease(a.lease, b.lease), strings.Compare(a.key, b.key))
}

// deliver calls fn with every lease, Expiration set (estimated where not
// looked up yet), ordered by subnet, and starts the lookups that are due;
// their answers come with a later call.
func (w *watcher) deliver(ctx context.Context) {
	out := make([]lease.Lease, 0, len(w.order))
	now := time.Now()
	w.exp.mu.Lock()
	for _, l := range w.order {
		le := l.lease
		le.Expiration = w.exp.expirationLocked(w.s, l.id, now)
		out = append(out, le)
	}
	w.exp.mu.Unlock()
	if !w.looking && w.s.watchExpirations {
		if todo := w.exp.due(w.ids); len(todo) > 0 {
			w.looking = true
			w.lookups.Go(func() {
				w.exp.lookup(ctx, w.s, todo)
				select {
				case w.looked <- struct{}{}:
				default:
				}
			})
		}
	}
	if ctx.Err() != nil {
		return
	}
	w.delivered = time.Now()
	w.fn(out)
}
