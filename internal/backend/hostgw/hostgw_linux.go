package hostgw

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/kernel"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/metrics"
)

// supported reports whether this platform can run the backend.
func supported() error { return nil }

// Apply makes the main table hold one route per host-gw peer in leases and
// none for peers that are gone. A peer the kernel refuses (its PublicIP is
// not on the external interface's network) or whose lease is unusable gets
// an error in the joined result; the other peers are programmed regardless.
func (b *Backend) Apply(ctx context.Context, leases []lease.Lease) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.started {
		return errors.New("host-gw: Apply before Start")
	}
	st := desire(b.network, b.network6, b.own, b.ext, leases)
	backend.NoteIgnored(b.log, BackendType, b.ignored, st.ignored)
	b.ignored = st.ignored
	b.noteNoV6(st.noV6)
	b.desired, b.peerOf, b.applied = st.routes, st.peerOf, true
	b.plan = make(map[netip.Prefix]kernel.Route, len(st.routes))
	for _, r := range st.routes {
		b.plan[r.Dst] = r
	}

	errs := st.errs
	res, err := b.sync(true)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("host-gw: %w", err))...)
	}
	b.logDone(res.Done, "apply")
	b.failing = make(map[netip.Prefix]string, len(res.Failed))
	for _, f := range res.Failed {
		e := b.opError(f)
		b.failing[f.Op.Route.Dst] = e.Error()
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

// Run repairs the routing table until ctx is done: every ReconcilePeriod,
// and as soon as the kernel reports that a route the last Apply asked for
// was deleted (`ip route del`) or changed (`ip route replace` with another
// gateway). Before the first Apply it changes nothing, because only a
// complete set of leases says which routes are stale. It returns nil when
// ctx is done.
func (b *Backend) Run(ctx context.Context) error {
	var watches []backend.Watch
	if !b.opts.NoSubscribe {
		watches = append(watches, backend.NewWatch("routes", b.opts.Netns, kernel.WatchRoutes, b.routeTrigger))
	}
	return backend.RunRepairLoop(ctx, backend.RepairConfig{
		Period:  b.opts.ReconcilePeriod,
		Watches: watches,
		Repair:  b.repair,
		Log:     b.log,
		Metrics: b.metrics,
	})
}

// sync makes the table hold b.desired. With cached, and when the last sync
// left the table complete, it plans against what that sync installed: a
// change of one peer among thousands then costs its own netlink request,
// not a dump of every route. Otherwise it reads the table. Callers hold mu.
func (b *Backend) sync(cached bool) (kernel.Result, error) {
	var (
		res kernel.Result
		err error
	)
	if cached && b.installed != nil {
		res = kernel.ApplyOps(b.opts.Handle, kernel.PlanRoutes(b.desired, b.installed, b.owns))
	} else {
		res, err = kernel.Sync(b.opts.Handle, b.desired, b.owns)
	}
	b.installed = nil
	if err == nil && len(res.Failed) == 0 {
		// Never nil once valid: no peers is an empty table, not an unknown one.
		b.installed = append(make([]kernel.Route, 0, len(b.desired)), b.desired...)
	}
	return res, err
}

// routeTrigger says why a route event calls for a repair, "" when it
// does not: only a route at a destination the last Apply asked for that
// is deleted or differs from the plan (kernel.RouteDrift). The kernel
// echoes every route Apply writes; those equal the plan and call for
// nothing, so programming many peers does not cause as many repairs.
func (b *Backend) routeTrigger(e kernel.RouteEvent) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	drift := kernel.RouteDrift(b.plan, e, b.owns, b.names)
	if drift == "" {
		return ""
	}
	b.log.Debug("route drifted from the plan", "drift", drift)
	return kernel.RouteTrigger(e)
}

// repair re-applies the last desired state and returns what it had to
// change.
func (b *Backend) repair(trigger string) backend.Counts {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reconciles.Add(1)
	if !b.applied {
		return nil
	}
	res, err := b.sync(false)
	if err != nil {
		b.log.Warn("route repair failed", "trigger", trigger, "err", err)
		return nil
	}
	b.repairs.Add(uint64(len(res.Done)))
	b.logDone(res.Done, trigger)
	failing := make(map[netip.Prefix]string, len(res.Failed))
	for _, f := range res.Failed {
		dst := f.Op.Route.Dst
		msg := b.opError(f).Error()
		failing[dst] = msg
		if b.failing[dst] != msg {
			b.log.Warn("route repair failed", "trigger", trigger, "subnet", dst, "peer", b.peerOf[dst], "err", msg)
		}
	}
	b.failing = failing
	return backend.Counts{metrics.KindRoute: len(res.Done)}
}

// logDone logs one line per route change; more than backend.BulkChanges
// of them get one summary line at info and their own lines at debug.
// Callers hold mu.
func (b *Backend) logDone(ops []kernel.Op, trigger string) {
	lvl := slog.LevelInfo
	if len(ops) > backend.BulkChanges {
		lvl = slog.LevelDebug
		var added, replaced, removed int
		for _, op := range ops {
			switch {
			case op.Kind == kernel.Delete:
				removed++
			case op.Prev != (kernel.Route{}):
				replaced++
			default:
				added++
			}
		}
		b.log.Info("routes changed in bulk; one line per route at debug level", "added", added, "replaced", replaced, "removed", removed, "trigger", trigger)
	}
	ctx := context.Background()
	for _, op := range ops {
		r := op.Route
		switch {
		case op.Kind == kernel.Delete:
			b.log.Log(ctx, lvl, "route removed", "subnet", r.Dst, "peer", r.Gw, "route", r.Format(b.names), "trigger", trigger)
		case op.Prev != (kernel.Route{}):
			b.log.Log(ctx, lvl, "route replaced", "subnet", r.Dst, "peer", r.Gw, "route", r.Format(b.names),
				"was", op.Prev.Format(b.names), "wrong", kernel.RouteChange(r, op.Prev, b.names), "trigger", trigger)
		default:
			b.log.Log(ctx, lvl, "route added", "subnet", r.Dst, "peer", r.Gw, "route", r.Format(b.names), "trigger", trigger)
		}
	}
}

// noteNoV6 says once per peer that it gets no IPv6 route because its
// lease has none: the mixed cluster of a migration to dual-stack, where
// IPv4 keeps working and this host's pods cannot reach that host's over
// IPv6 until its agent restarts on the dual-stack config. Callers hold mu.
func (b *Backend) noteNoV6(now map[netip.Prefix]netip.Addr) {
	for subnet, pub := range now {
		if _, had := b.noV6[subnet]; !had {
			b.log.Warn("peer's lease has no IPv6 subnet: it gets an IPv4 route only, and pods here cannot reach its pods over IPv6. Its agent runs with an IPv4-only network config (restart it on the dual-stack one), or its IPv6 half was refused",
				"subnet", subnet, "peer", pub)
		}
	}
	for subnet, pub := range b.noV6 {
		if _, still := now[subnet]; !still {
			b.log.Debug("peer no longer without an IPv6 subnet", "subnet", subnet, "peer", pub)
		}
	}
	b.noV6 = now
}

// opError names the peer a refused change was for and, when the kernel
// says the gateway is unreachable, why that is fatal for host-gw.
func (b *Backend) opError(f *kernel.OpError) error {
	r := f.Op.Route
	if f.Op.Kind == kernel.Delete {
		return fmt.Errorf("stale route of peer %s (subnet %s): delete route %s: %w", r.Gw, r.Dst, r.Format(b.names), f.Err)
	}
	// The kernel refuses a gateway it has no connected route to: ENETUNREACH
	// for IPv4, EHOSTUNREACH for IPv6.
	if r.Dst.Addr().Is4() && errors.Is(f.Err, unix.ENETUNREACH) {
		return fmt.Errorf("peer %s (subnet %s): replace route %s: %w: %s is not on a network of %s, and host-gw can only route to hosts on the same L2 segment",
			r.Gw, r.Dst, r.Format(b.names), f.Err, r.Gw, b.ext.Name)
	}
	if !r.Dst.Addr().Is4() && (errors.Is(f.Err, unix.EHOSTUNREACH) || errors.Is(f.Err, unix.ENETUNREACH)) {
		return fmt.Errorf("peer %s (IPv6 subnet %s): replace route %s: %w: the peer's PublicIPv6 %s is not on an IPv6 network of %s, and host-gw can only route to hosts on the same L2 segment for each family (its IPv4 route is programmed on its own); give %s an address in that IPv6 network, or run the peer with --public-ipv6 on this one",
			r.Gw, r.Dst, r.Format(b.names), f.Err, r.Gw, b.ext.Name, b.ext.Name)
	}
	return fmt.Errorf("peer %s (subnet %s): replace route %s: %w", r.Gw, r.Dst, r.Format(b.names), f.Err)
}
