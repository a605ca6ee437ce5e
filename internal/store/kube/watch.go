package kubestore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/store"
)

// Watch implements store.Store with a shared informer on all Nodes: the
// client-go machinery lists, watches, and re-lists after disconnects by
// itself. After the first full listing fn gets the snapshot, then a new one
// whenever the set of leases changed; node updates that do not touch a
// lease (kubelet status, other annotations) deliver nothing. Bursts are
// coalesced. Nodes marked kube-subnet-manager="true" whose annotations or
// podCIDR are unusable are left out with one warning per node and
// problem; one without a podCIDR yet is left out quietly. It returns only ctx.Err().
func (s *Store) Watch(ctx context.Context, fn func([]lease.Lease)) error {
	var troubled atomic.Bool // an error was reported and no list has worked since
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			l, err := s.cs.ListNodes(ctx, o)
			// The informer lists again after every failed watch, so a
			// list that works is the watch working again.
			if err == nil && s.report != nil && troubled.CompareAndSwap(true, false) {
				s.report("watch", nil)
			}
			return l, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return s.cs.WatchNodes(ctx, o)
		},
	}
	// No periodic resync: snapshots are whole, and the backend repairs the
	// kernel on its own timer.
	inf := cache.NewSharedIndexInformer(lw, &corev1.Node{}, 0, cache.Indexers{})
	// Leases need annotations and spec only; dropping the bulky parts keeps
	// a large cluster's cache small.
	if err := inf.SetTransform(slimNode); err != nil {
		return err
	}
	var lastWatchErr string
	if err := inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
			// A watch the server ended, or one whose resource version
			// is too old: the informer lists again, nothing is wrong.
			s.log.Debug("node watch ended; the informer resumes it", "err", err.Error())
			return
		}
		if s.report != nil {
			// The agent names the cause (a 401 or 403 is the
			// ServiceAccount's RBAC, not the network) and rate-limits.
			troubled.Store(true)
			s.report("watch", fmt.Errorf("watch nodes: %w", err))
			return
		}
		// The informer retries with backoff; say so once per kind of
		// failure rather than once per attempt.
		if msg := err.Error(); msg != lastWatchErr {
			lastWatchErr = msg
			s.log.Warn("watch nodes; retrying", "cause", store.Classify(err), "err", msg)
		}
	}); err != nil {
		return err
	}
	poke := make(chan struct{}, 1)
	signal := func() {
		select {
		case poke <- struct{}{}:
		default:
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { signal() },
		UpdateFunc: func(any, any) { signal() },
		DeleteFunc: func(any) { signal() },
	}); err != nil {
		return err
	}

	ictx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		inf.RunWithContext(ictx)
	}()
	defer func() {
		stop()
		<-done
	}()

	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return ctx.Err()
	}
	w := &peerSet{keys: s.keys, warned: make(map[string]string), s: s}
	var last []lease.Lease
	first := true
	for {
		snap := w.snapshot(inf.GetStore().List())
		if first || !sameLeases(last, snap) {
			fn(snap)
			last, first = snap, false
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-poke:
		}
	}
}

// peerSet turns the informer's nodes into leases and remembers which
// broken nodes it has already warned about.
type peerSet struct {
	s    *Store
	keys keys
	// warned maps a node name to the problem last reported for it.
	warned map[string]string
	// v6only reads Nodes as an IPv6-only network's even before Acquire
	// said so (List for weft status, which never acquires).
	v6only bool
}

func (p *peerSet) snapshot(objs []any) []lease.Lease {
	type named struct {
		node string
		l    lease.Lease
	}
	var out []named
	seen := make(map[string]bool, len(objs))
	v6only := p.v6only || p.s.v6only()
	for _, o := range objs {
		n, ok := o.(*corev1.Node)
		if !ok {
			continue
		}
		seen[n.Name] = true
		var l lease.Lease
		var err error
		if v6only {
			l, err = p.keys.leaseOf6(n)
		} else {
			l, err = p.keys.leaseOf(n)
		}
		switch {
		case errors.Is(err, errNotManaged):
			delete(p.warned, n.Name)
		case errors.Is(err, errIPv6Only):
			// An IPv6-only node has nothing for an IPv4 host to route
			// to; it is not broken.
			delete(p.warned, n.Name)
			p.s.log.Debug("peer node is IPv6-only; not a peer of this host, which has IPv4", "peer-node", n.Name)
		case errors.Is(err, errNoPodCIDR), errors.Is(err, errNoPodCIDR6):
			delete(p.warned, n.Name)
			p.s.log.Debug("peer node has no podCIDR yet", "peer-node", n.Name)
		case err != nil:
			if p.warned[n.Name] != err.Error() {
				p.warned[n.Name] = err.Error()
				p.s.log.Warn("skipping a peer node whose flannel annotations are not usable", "peer-node", n.Name, "err", err.Error())
			}
		default:
			delete(p.warned, n.Name)
			out = append(out, named{n.Name, l})
		}
	}
	for name := range p.warned {
		if !seen[name] {
			delete(p.warned, name)
		}
	}
	slices.SortFunc(out, func(a, b named) int {
		if c := a.l.Subnet.Addr().Compare(b.l.Subnet.Addr()); c != 0 {
			return c
		}
		if c := cmp.Compare(a.l.Subnet.Bits(), b.l.Subnet.Bits()); c != 0 {
			return c
		}
		// IPv6-only leases have no IPv4 subnet to order by.
		if c := a.l.IPv6Subnet.Addr().Compare(b.l.IPv6Subnet.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(a.node, b.node)
	})
	leases := make([]lease.Lease, len(out))
	for i, n := range out {
		leases[i] = n.l
	}
	return leases
}

// sameLeases reports whether two snapshots, sorted alike, hold the same
// leases.
func sameLeases(a, b []lease.Lease) bool {
	return slices.EqualFunc(a, b, func(x, y lease.Lease) bool {
		return x.Subnet == y.Subnet && x.IPv6Subnet == y.IPv6Subnet &&
			x.Expiration.Equal(y.Expiration) && x.Created == y.Created && x.Attrs.Equal(y.Attrs)
	})
}

// slimNode drops what a lease never needs from a cached Node.
func slimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	n.ManagedFields = nil
	n.Status.Images = nil
	return n, nil
}

var _ store.TroubleReporter = (*Store)(nil)

// ReportTrouble implements store.TroubleReporter for Watch's errors. Call
// it before Watch.
func (s *Store) ReportTrouble(report func(op string, err error)) { s.report = report }
