package agent

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"strings"
	"time"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/backend/backends"
	"github.com/weftnet/weft/internal/kernel"
	"github.com/weftnet/weft/internal/kernel/hostfacts"
	"github.com/weftnet/weft/internal/kernel/neightable"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/metrics"
	"github.com/weftnet/weft/internal/netconf"
	"github.com/weftnet/weft/internal/sysctl"
)

// kernelWatch says out loud, before traffic drops, when the kernel under
// this host cannot carry its share of the fabric: neighbour-table
// thresholds below what the peers and pods need, the kernel refusing
// neighbour entries, forwarding off, strict rp_filter under DirectRouting,
// an underlay MTU lowered under the pods'. Nothing else would: the kernel
// drops the packets with one rate-limited line in its own log, and the
// fabric keeps working for most peers, so readiness stays true.
//
// It counts what the host needs when the peer set changes, reads the
// kernel every few seconds, and logs each finding once when it appears (at
// its severity, with the sysctl, its value and the fix) and once when it
// goes away. A fact it cannot read (a child network namespace has no
// neighbour thresholds, a container may lack /proc/sys) is one warning at
// start and never stops the agent. With --raise-neigh-gc-thresh it raises
// the thresholds that are short, never lowering one.
type kernelWatch struct {
	log      *slog.Logger
	metrics  *metrics.Metrics
	read     hostfacts.Reader
	raise    bool
	every    time.Duration
	now      func() time.Time
	routes   func() ([]kernel.Route, error)
	host     hostfacts.Host // UnderlayMTU is read on every check
	families []neightable.Family
	// needIn holds, per family watched, what the count depends on besides
	// the leases: the own subnet and PublicIP, the backend's lease types,
	// the network.
	needIn map[neightable.Family]hostfacts.NeedInput
	// peers carries the newest lease set from the watch loop; a newer one
	// replaces one not yet taken.
	peers chan []lease.Lease

	// The fields below belong to run's goroutine.
	need    map[neightable.Family]hostfacts.Need
	peerSum uint64 // fingerprint of the leases need was counted from
	counted bool
	active  map[string]hostfacts.Finding // by Finding.Key
	warned  map[string]bool              // unreadable facts already reported
	fulls   map[neightable.Family]uint64 // table_fulls at the last check
}

// newKernelWatch prepares the watch for a host whose backend has started
// with its own lease.
func (a *Agent) newKernelWatch(cfg *netconf.Config, ext backend.ExternalInterface, own lease.Lease, be backend.Backend) *kernelWatch {
	read := hostfacts.FromProcRoot(a.opts.ProcRoot)
	if a.deps.KernelFacts != nil {
		read = *a.deps.KernelFacts
	}
	every := a.deps.KernelEvery
	if every <= 0 {
		every = 5 * time.Second
	}
	routes := a.deps.Routes
	if routes == nil {
		routes = hostRoutes
	}
	w := &kernelWatch{
		log:      a.log.With("subnet", own.Key()),
		metrics:  a.deps.Metrics,
		read:     read,
		raise:    a.opts.RaiseNeighGCThresh,
		every:    every,
		now:      a.now,
		routes:   routes,
		families: []neightable.Family{neightable.IPv4},
		host: hostfacts.Host{
			IPv6:        cfg.EnableIPv6,
			NoIPv4:      !cfg.EnableIPv4,
			Kube:        a.opts.KubeSubnetMgr,
			Underlay:    ext.Name,
			PodMTU:      be.MTU(),
			Overhead:    max(ext.MTU-be.MTU(), 0),
			UnderlayMTU: ext.MTU,
		},
		needIn: map[neightable.Family]hostfacts.NeedInput{neightable.IPv4: {
			Own:         own.Subnet,
			OwnPublicIP: own.Attrs.PublicIP,
			Network:     cfg.Network,
		}},
		need:   map[neightable.Family]hostfacts.Need{},
		peers:  make(chan []lease.Lease, 1),
		active: map[string]hostfacts.Finding{},
		warned: map[string]bool{},
		fulls:  map[neightable.Family]uint64{},
	}
	d, known := backends.Lookup(cfg.BackendType)
	if cfg.EnableIPv6 {
		w.families = append(w.families, neightable.IPv6)
		in6 := hostfacts.NeedInput{
			Family:      neightable.IPv6,
			Own:         own.IPv6Subnet,
			OwnPublicIP: own.Attrs.PublicIPv6,
			Network:     cfg.IPv6Network,
		}
		if known && !d.IPv6 {
			// The pods still get IPv6 addresses on cni0, but no traffic
			// goes to the peers' PublicIPv6s: count no peer.
			in6.LeaseTypes = []string{}
		}
		w.needIn[neightable.IPv6] = in6
	}
	if known {
		for f, in := range w.needIn {
			if in.LeaseTypes == nil {
				in.LeaseTypes = d.LeaseTypes
				w.needIn[f] = in
			}
		}
		if exp, err := d.Expect(cfg, ext); err == nil {
			w.host.RPFilterDevs = hostfacts.RPFilterDevices(exp.DirectRouting, exp.Overlays, ext.Name)
		}
	}
	for f, in := range w.needIn {
		w.need[f] = hostfacts.NeedFor(in) // the own pods, until the first peers arrive
	}
	return w
}

// setPeers hands the watch the newest lease set without waiting. Only the
// watch loop calls it.
func (w *kernelWatch) setPeers(ls []lease.Lease) {
	select {
	case <-w.peers:
	default:
	}
	w.peers <- ls
}

// run checks at start, on every new peer set and every w.every, until ctx
// is done. It never fails: a kernel it cannot read is reported, not fatal.
//
// Peer sets are counted at most once per w.every; one that arrives sooner
// waits for the tick. An agent joining a large cluster, or a lab starting
// hundreds of hosts on one machine, sees a burst of peer sets, and each
// count lists the routing table.
func (w *kernelWatch) run(ctx context.Context) error {
	tick := time.NewTicker(w.every)
	defer tick.Stop()
	w.check(ctx)
	var pending []lease.Lease // a peer set not counted yet; nil when none
	var last time.Time        // when a peer set was last counted
	for {
		select {
		case <-ctx.Done():
			return nil
		case pending = <-w.peers:
			if w.now().Sub(last) < w.every {
				continue
			}
			last = w.now()
			changed := w.count(pending)
			pending = nil
			if changed {
				w.check(ctx)
			}
		case <-tick.C:
			if pending != nil {
				last = w.now()
				w.count(pending)
				pending = nil
			}
			w.check(ctx)
		}
	}
}

// count recounts the entries needed when the peers' PublicIPs or types
// changed, which renewals do not; it reports whether they did. The routing
// table is listed only then: a change of the underlay's routes alone
// (another gateway) is seen with the next change of peers.
func (w *kernelWatch) count(ls []lease.Lease) bool {
	var sum uint64
	for _, l := range ls {
		h := fnv.New64a()
		fmt.Fprintf(h, "%s|%s|%s|%s|%s", l.Subnet, l.IPv6Subnet, l.Attrs.PublicIP, l.Attrs.PublicIPv6, l.Attrs.BackendType)
		sum += h.Sum64() // a sum, so that the order of the leases does not matter
	}
	if w.counted && sum == w.peerSum {
		return false
	}
	w.counted, w.peerSum = true, sum
	rs, err := w.routes()
	if err != nil {
		w.unreadable("routes", fmt.Errorf("list the routing table (every peer is counted as its own next hop): %w", err))
	}
	for f, in := range w.needIn {
		in.Leases = ls
		in.Routes, in.RoutesKnown = rs, err == nil
		w.need[f] = hostfacts.NeedFor(in)
		w.log.Debug("neighbour entries needed", "family", f.String(), "need", w.need[f].Total(), "parts", w.need[f].Parts(), "peers", len(ls)-1)
	}
	return true
}

// needOf is what one family's table must hold.
func (w *kernelWatch) needOf(f neightable.Family) hostfacts.Need {
	return w.need[f]
}

// check reads the kernel, raises thresholds if asked to, and reports what
// changed since the last check.
func (w *kernelWatch) check(ctx context.Context) {
	var found []hostfacts.Finding
	var unread []error
	for _, f := range w.families {
		label := metrics.FamilyIPv4
		if f == neightable.IPv6 {
			label = metrics.FamilyIPv6
		}
		need := w.needOf(f)
		w.metrics.NeighbourNeeded(label, need.Total())

		t, terr := w.read.Thresholds(f)
		if terr != nil {
			unread = append(unread, terr)
		} else {
			if w.raise {
				t = w.tune(f, t, need)
			}
			w.metrics.NeighbourThresholds(label, t.GC1, t.GC2, t.GC3)
			found = append(found, hostfacts.NeighFindings(f, need, t)...)
		}

		s, serr := w.read.Stats(f)
		if serr != nil {
			unread = append(unread, serr)
			continue
		}
		w.metrics.NeighbourTableFulls(label, s.TableFulls)
		prev, seen := w.fulls[f]
		w.fulls[f] = s.TableFulls
		if !seen || s.TableFulls <= prev {
			continue
		}
		// An event, not a state: reported on every check where it rose.
		if terr != nil {
			w.log.Error("the kernel dropped neighbour entries", "family", f.String(), "table-fulls", s.TableFulls-prev, "entries", s.Entries)
			continue
		}
		fd := hostfacts.TableFullFinding(f, s.TableFulls-prev, t, need.Total(), s)
		w.logFinding(ctx, fd)
	}

	host := w.host
	if mtu, err := w.read.MTU(host.Underlay); err == nil {
		host.UnderlayMTU = mtu
	} else {
		host.UnderlayMTU = 0 // unknown: no finding
	}
	facts, errs := w.read.Check(host)
	found = append(found, facts...)
	unread = append(unread, errs...)

	w.reportUnreadable(unread)
	w.report(ctx, found)
}

// tune raises the thresholds that are short of need, never lowering one,
// and returns the thresholds now in force. A table with room is left
// alone: the kernel is the operator's, and weft changes it only when the
// host would otherwise lose entries.
func (w *kernelWatch) tune(f neightable.Family, cur neightable.Thresholds, need hostfacts.Need) neightable.Thresholds {
	if need.Total() <= cur.GC2 {
		return cur
	}
	fit := neightable.Fit(cur, need.Total())
	if fit == cur {
		return cur
	}
	if err := w.read.Raise(f, cur, fit); err != nil {
		if !w.warned["raise"] {
			w.warned["raise"] = true
			w.log.Warn("cannot raise the neighbour table's thresholds (--raise-neigh-gc-thresh); set them by hand",
				"fix", hostfacts.FitCommand(f, cur, fit), "err", err.Error())
		}
		return cur
	}
	args := []any{"family", f.String(), "need", need.Total(), "parts", need.Parts()}
	for i, p := range [][2]int64{{cur.GC1, fit.GC1}, {cur.GC2, fit.GC2}, {cur.GC3, fit.GC3}} {
		if p[0] != p[1] {
			args = append(args, f.Sysctl(i+1), fmt.Sprintf("%d -> %d", p[0], p[1]))
		}
	}
	w.log.Info("raised the neighbour table's thresholds to fit this host", args...)
	return fit
}

// report logs the findings that are new or changed, and those that went
// away.
func (w *kernelWatch) report(ctx context.Context, found []hostfacts.Finding) {
	now := make(map[string]hostfacts.Finding, len(found))
	for _, f := range found {
		now[f.Key()] = f
		if old, ok := w.active[f.Key()]; ok && old.Code == f.Code && old.Current == f.Current {
			continue
		}
		w.logFinding(ctx, f)
	}
	for k, f := range w.active {
		if _, ok := now[k]; !ok {
			w.log.Info("kernel setting no longer a problem", "code", f.Code, "sysctl", f.Sysctl)
		}
	}
	w.active = now
}

func (w *kernelWatch) logFinding(ctx context.Context, f hostfacts.Finding) {
	lvl := slog.LevelWarn
	if f.Severity == hostfacts.Error {
		lvl = slog.LevelError
	}
	fix := f.Fix
	if isNeigh(f.Code) && !w.raise && fix != "" {
		fix += " (or run weft with --raise-neigh-gc-thresh)"
	}
	args := []any{"code", f.Code}
	if f.Sysctl != "" {
		args = append(args, "sysctl", f.Sysctl)
	}
	args = append(args, "current", f.Current)
	if f.Suggested != "" {
		args = append(args, "suggested", f.Suggested)
	}
	w.log.Log(ctx, lvl, f.Message, append(args, "fix", fix)...)
}

func isNeigh(code string) bool {
	return code == hostfacts.CodeNeighThresh2 || code == hostfacts.CodeNeighThresh3 || code == hostfacts.CodeNeighTableFull
}

// reportUnreadable warns once about every fact that could not be read,
// in one line for all those found together.
func (w *kernelWatch) reportUnreadable(errs []error) {
	var fresh []string
	missingNeigh := false
	for _, err := range errs {
		if w.warned[err.Error()] {
			continue
		}
		w.warned[err.Error()] = true
		fresh = append(fresh, err.Error())
		if (errors.Is(err, sysctl.ErrMissing) || errors.Is(err, fs.ErrNotExist)) && strings.Contains(err.Error(), "neighbour table") {
			missingNeigh = true
		}
	}
	if len(fresh) == 0 {
		return
	}
	args := []any{"unreadable", strings.Join(fresh, "; ")}
	if missingNeigh {
		args = append(args, "hint", "the neighbour table's thresholds and statistics exist only in the host's initial network namespace; in a container, mount the host's /proc and pass --proc-root")
	}
	w.log.Warn("cannot read some kernel settings weft watches; carrying on without them, so weft cannot warn about those", args...)
}

// unreadable reports one fact that could not be read, once.
func (w *kernelWatch) unreadable(key string, err error) {
	if w.warned[key] {
		return
	}
	w.warned[key] = true
	w.log.Warn("cannot read a kernel fact weft watches; carrying on without it", "err", err.Error())
}
