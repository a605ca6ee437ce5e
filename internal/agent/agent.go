// Package agent is the lifecycle of one weft host, in the order flanneld
// follows so that the files and signals other tools wait on appear at the
// same moments:
//
//	select interface → store → network config → backend → lease →
//	backend start → subnet.env → ready (/readyz, sd_notify) →
//	{renew lease, watch leases → apply, reconcile} until SIGTERM
//
// Stopping leaves routes, devices, subnet.env and the lease in place, so a
// restarted agent picks up where the old one left off and running pods
// never notice.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/health"
	"github.com/weftnet/weft/internal/kernel"
	"github.com/weftnet/weft/internal/kernel/hostfacts"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/metrics"
	"github.com/weftnet/weft/internal/netconf"
	"github.com/weftnet/weft/internal/options"
	"github.com/weftnet/weft/internal/rules"
	"github.com/weftnet/weft/internal/rules/ruleexec"
	"github.com/weftnet/weft/internal/store"
	"github.com/weftnet/weft/internal/subnetenv"
)

// Deps are the agent's seams: where leases live, which backends exist and
// how the host's interface is found. Run wires the real ones; tests may
// pass their own.
type Deps struct {
	Store    store.Store
	Backends map[string]backend.Factory
	// CheckBackend checks the network config's Backend object for a
	// backend of type typ (backends.CheckOptions, as weft config put
	// does); an error names the field at fault, and the agent waits for a
	// corrected config as it does for any invalid one. Nil checks only
	// that Backends has the type.
	CheckBackend func(typ string, raw json.RawMessage) error
	// SelectInterface finds the external interface from the options.
	SelectInterface func(o *options.Options) (backend.ExternalInterface, error)
	Health          *health.Status
	// Metrics is served on /metrics beside the health endpoints; nil
	// creates a fresh one.
	Metrics *metrics.Metrics
	Log     *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Rules builds the traffic-rule manager for a mode (iptables or
	// nftables, from the config's EnableNFTables); nil installs no rules.
	Rules func(mode rules.Mode) (rules.Manager, error)
	// OutageGrace is how long the store may be unreachable before /readyz
	// turns 503; zero means the lease renew margin. Tests shorten it.
	OutageGrace time.Duration
	// ProbeEvery is how often the store is probed; zero means 5 s.
	ProbeEvery time.Duration
	// Blackhole keeps the --ip-blackhole-route route; nil leaves blackhole
	// routes alone (tests whose kernel is a recorder).
	Blackhole BlackholeRoutes
	// KernelFacts reads the kernel settings the agent watches (sysctls,
	// neighbour-table statistics, device MTUs); nil reads --proc-root.
	// Tests give a fake tree, never the host's values.
	KernelFacts *hostfacts.Reader
	// KernelEvery is how often they are read; zero means 5 s.
	KernelEvery time.Duration
	// Routes lists the main routing table, where the next hop to each
	// peer is found; nil reads the agent's namespace.
	Routes func() ([]kernel.Route, error)
}

// BlackholeRoutes adds and removes weft's blackhole route for a subnet
// (flanneld's --ip-blackhole-route).
type BlackholeRoutes interface {
	// Ensure installs the route unless it is there, and reports whether it
	// had to.
	Ensure(subnet netip.Prefix) (added bool, err error)
	// Remove deletes weft's blackhole route for exactly subnet, if there
	// is one, and reports whether there was.
	Remove(subnet netip.Prefix) (removed bool, err error)
}

// Agent runs one host's share of the network.
type Agent struct {
	opts options.Options
	deps Deps
	log  *slog.Logger
	now  func() time.Time
	kw   *kernelWatch // set in Run before the loops start
	adm  *admitter    // set in Run before the loops start
	page pageView     // what the page at / on the health listener shows
	sh   *storeHealth // the store's trouble (storehealth.go)
	// hostID is this host's identity in its lease (hostid.go); ident
	// watches the leases for hosts claiming it (identity_watch.go).
	hostID    string
	newHostID bool // generated on this start: the state directory held none
	ident     *identityWatch
}

// New returns an agent; Start it with Run.
func New(opts options.Options, deps Deps) *Agent {
	a := &Agent{opts: opts, deps: deps, log: deps.Log, now: deps.Now}
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.deps.Health == nil {
		a.deps.Health = &health.Status{}
	}
	if a.deps.Metrics == nil {
		a.deps.Metrics = metrics.New()
	}
	hint := fmt.Sprintf(`etcdctl put %s/config '{"Network": "10.244.0.0/16", "Backend": {"Type": "host-gw"}}'`, opts.EtcdPrefix)
	if h, ok := deps.Store.(store.ConfigHinter); ok {
		hint = h.ConfigHint()
	}
	a.sh = newStoreHealth(a.log, a.deps.Metrics, a.now, &a.page, hint)
	if r, ok := deps.Store.(store.TroubleReporter); ok {
		r.ReportTrouble(a.sh.report)
	}
	return a
}

// Run brings the host up and keeps it up until ctx is done. It returns nil
// on a clean stop and an error when the host cannot join the network.
func (a *Agent) Run(ctx context.Context) error {
	start := a.now()
	a.deps.Health.SetNotReady("starting")

	if a.opts.HealthzPort > 0 {
		addr := net.JoinHostPort(a.opts.HealthzIP, strconv.Itoa(a.opts.HealthzPort))
		go func() {
			mux := http.NewServeMux()
			mux.Handle("/healthz", a.deps.Health.Handler())
			mux.Handle("/readyz", a.deps.Health.Handler())
			mux.Handle("GET /metrics", a.deps.Metrics.Handler())
			mux.Handle("/", a.pageHandler(start))
			go a.watchRepairs(ctx, 3*time.Second)
			if err := health.Serve(ctx, "health checks", addr, mux, a.log); err != nil {
				a.log.Error("health endpoint failed", "err", err)
			}
		}()
	}
	if a.opts.DebugAddr != "" {
		go func() {
			if err := health.Serve(ctx, "profiling", a.opts.DebugAddr, profilingMux(), a.log); err != nil {
				a.log.Error("profiling endpoint failed", "err", err)
			}
		}()
	}

	if src, ok := a.deps.Store.(store.PublicIPSource); ok {
		ip, set, err := src.PublicIP(ctx)
		if err != nil {
			return fmt.Errorf("read the public IP override from the store: %w", err)
		}
		if set {
			a.log.Info("public IP set by the store overrides --public-ip", "public-ip", ip, "was", a.opts.PublicIP)
			a.opts.PublicIP = ip.String()
		}
	}
	if err := a.publicIPv6Override(ctx); err != nil {
		return err
	}
	ext, err := a.deps.SelectInterface(&a.opts)
	if err != nil {
		return fmt.Errorf("select the interface for traffic between hosts: %w", err)
	}
	a.log.Info("using interface", "iface", ext.Name, "addr", ext.Addr, "public-ip", ext.PublicIP, "mtu", ext.MTU)

	a.loadHostID()
	cfg, be, own, err := a.join(ctx, ext)
	if err != nil {
		return err
	}
	a.ident = newIdentityWatch(a, cfg, ext, be, own)
	log := a.log.With("subnet", own.Key())

	if err := be.Start(ctx, own); err != nil {
		return fmt.Errorf("prepare the %s backend for %s: %w", cfg.BackendType, own.Key(), err)
	}

	// Rules go in before subnet.env, as flannel orders it: a pod started
	// on the new file must not race the rules that keep its source.
	mgr, err := a.installRules(ctx, cfg, own)
	if err != nil {
		return err
	}
	// Before subnet.env is rewritten, while it still names the subnet a
	// previous run may have left a blackhole route for.
	a.setupBlackhole(log, own.Subnet)

	env := subnetEnv(cfg, own, be.MTU(), a.opts.IPMasq)
	a.noteIPv6(cfg, own, ext)
	if err := subnetenv.Write(a.opts.SubnetFile, env); err != nil {
		return fmt.Errorf("write %s: %w", a.opts.SubnetFile, err)
	}
	log.Info("wrote subnet file", "path", a.opts.SubnetFile, "mtu", env.MTU, "since-start", a.now().Sub(start).Round(time.Millisecond))

	// From here on the host has a subnet and pods may start; everything
	// below keeps running until ctx is done, or until one loop fails, which
	// stops the others.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 9) // one slot per loop: a failing loop never blocks
	run := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	a.kw = a.newKernelWatch(cfg, ext, own, be)
	a.adm = newAdmitter(cfg, ext.PublicIP, own)
	run("kernel limits", a.kw.run)
	ownCh := make(chan lease.Lease, 1)
	ownCh <- own
	lost := make(chan struct{}, 1)
	run("renew lease", func(ctx context.Context) error { return a.renewLoop(ctx, ownCh, lost) })
	programmed := make(chan struct{})
	run("watch leases", func(ctx context.Context) error { return a.watchLoop(ctx, be, own.Key(), lost, start, programmed) })
	run("reconcile", be.Run)
	if mgr != nil {
		resync := time.Duration(a.opts.IPTablesResync) * time.Second
		run("traffic rules", func(ctx context.Context) error { return mgr.Run(ctx, resync) })
	}
	if a.deps.Blackhole != nil && a.opts.IPBlackholeRoute && own.Subnet.IsValid() {
		run("blackhole route", func(ctx context.Context) error { return a.keepBlackhole(ctx, log, own.Subnet) })
	}
	if a.opts.CNIConfDir != "" {
		w := &cniConfWatch{dir: a.opts.CNIConfDir, log: log, page: &a.page, now: a.now}
		run("CNI config directory", w.run)
	}
	ready := make(chan struct{})
	run("probe store", func(ctx context.Context) error { return a.probeStore(ctx, ready) })

	// Ready means pods can reach every peer the store knows of: subnet.env
	// is written and the first snapshot of peers is in the kernel.
	a.deps.Health.SetNotReady("programming peers")
	var runErr error
	select {
	case <-programmed:
	case <-ctx.Done():
	case runErr = <-errc:
	}
	if runErr != nil || ctx.Err() != nil {
		return a.stop(log, cancel, &wg, runErr)
	}
	a.deps.Health.SetReady()
	a.sh.setRunning()
	close(ready)
	// The start's one-off work (the whole store listed and decoded, every
	// peer planned and programmed at once) leaves garbage several times
	// the size of what the agent keeps. Hand it back to the OS now, once,
	// rather than holding it until the runtime's scavenger gets to it: an
	// agent among 5000 hosts settles at about half the memory this way
	// (docs/benchmarks.md). One collection of a heap this small is a few
	// milliseconds.
	go debug.FreeOSMemory()
	if c, ok := a.deps.Store.(store.Completer); ok {
		go func() {
			if err := c.Complete(ctx); err != nil && ctx.Err() == nil {
				log.Error("cannot tell the store the network is up", "cause", store.Classify(err), "err", err.Error())
			}
		}()
	}
	if ok, err := daemon.SdNotify(false, daemon.SdNotifyReady); err != nil {
		log.Warn("sd_notify READY=1 failed", "err", err)
	} else if ok {
		log.Debug("told systemd we are ready")
	}

	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	return a.stop(log, cancel, &wg, runErr)
}

// stop ends the agent's loops and leaves the data plane as it is.
func (a *Agent) stop(log *slog.Logger, cancel context.CancelFunc, wg *sync.WaitGroup, runErr error) error {
	_, _ = daemon.SdNotify(false, daemon.SdNotifyStopping)
	if runErr != nil {
		log.Error("stopping after a failure", "err", runErr.Error())
	}
	log.Info("stopping; routes, devices, subnet.env and the lease stay in place for the next start")
	cancel()
	wg.Wait()
	return runErr
}

// installRules makes the traffic rules match this host's lease. A host
// without iptables or nft gets no rules unless --ip-masq asks for them:
// such a host has no Docker rule to undo and no FORWARD policy to open.
// Any other failure is logged and left to the resync loop, so a broken
// rule tool never takes the data plane down.
func (a *Agent) installRules(ctx context.Context, cfg *netconf.Config, own lease.Lease) (rules.Manager, error) {
	if a.deps.Rules == nil {
		return nil, nil
	}
	mode := rules.ModeFor(cfg.EnableNFTables)
	mgr, err := a.deps.Rules(mode)
	if err != nil {
		return nil, fmt.Errorf("set up %s traffic rules: %w", mode, err)
	}
	spec := rules.Spec{
		Masq:        a.opts.IPMasq,
		FullyRandom: !a.opts.IPMasqFullyRandomDisable,
		Forward:     a.opts.IPTablesForwardRules,
		// Always asked for; the manager installs the keep-source chains
		// only where NAT is in use (--ip-masq, Docker, kube-proxy) and
		// logs that decision itself.
		KeepSource: true,
	}
	// Each family gets rules only where this host has a subnet in it; a
	// v6 lease is taken only when the config enables IPv6.
	if cfg.EnableIPv4 && own.Subnet.IsValid() {
		spec.Network, spec.Subnet = cfg.Network, own.Subnet
	}
	if cfg.EnableIPv6 && own.IPv6Subnet.IsValid() {
		spec.IPv6Network, spec.IPv6Subnet = cfg.IPv6Network, own.IPv6Subnet
	}
	err = mgr.Sync(ctx, spec)
	switch {
	case err == nil:
		fwd := "off"
		if spec.Forward {
			fwd = "where forwarded traffic is filtered"
		}
		a.log.Info("traffic rules in place", "mode", mode, "ipv4", spec.Network.IsValid(), "ipv6", spec.IPv6Network.IsValid(), "ip-masq", spec.Masq, "forward", fwd, "keep-source", "where NAT is in use")
	case errors.Is(err, ruleexec.ErrNotFound) && !a.opts.IPMasq:
		a.log.Warn("no traffic rules: the rule tools are not installed (install iptables or nftables to keep pod source addresses next to Docker and to open a FORWARD DROP policy)", "mode", mode, "err", err.Error())
		return nil, nil
	case errors.Is(err, ruleexec.ErrNotFound):
		return nil, fmt.Errorf("--ip-masq needs the %s tools: %w", mode, err)
	default:
		a.log.Error("cannot install traffic rules; retrying every --iptables-resync", "mode", mode, "err", err.Error())
	}
	return mgr, nil
}

// setupBlackhole makes the blackhole routes match the options and the
// lease: with --ip-blackhole-route the own subnet has one; a previous
// run's route for a subnet this host no longer holds (its subnet.env names
// another), or for the own subnet when the flag is now off, is removed.
// Failures are logged: a missing blackhole route costs no connectivity,
// and keepBlackhole retries.
func (a *Agent) setupBlackhole(log *slog.Logger, own netip.Prefix) {
	bh := a.deps.Blackhole
	if bh == nil {
		return
	}
	if prev, err := subnetenv.Read(a.opts.SubnetFile); err == nil && prev.Subnet.IsValid() && prev.Subnet.Masked() != own {
		if removed, err := bh.Remove(prev.Subnet.Masked()); err != nil {
			log.Error("cannot remove the blackhole route of the previous lease", "previous", prev.Subnet.Masked(), "err", err.Error())
		} else if removed {
			log.Info("removed the blackhole route of the previous lease", "previous", prev.Subnet.Masked())
		}
	}
	if !a.opts.IPBlackholeRoute {
		if removed, err := bh.Remove(own); err != nil {
			log.Error("cannot remove the blackhole route left from a run with --ip-blackhole-route", "err", err.Error())
		} else if removed {
			log.Info("removed the blackhole route left from a run with --ip-blackhole-route")
		}
		return
	}
	if _, err := bh.Ensure(own); err != nil {
		log.Error("cannot add the blackhole route; retrying every --iptables-resync", "err", err.Error())
		return
	}
	log.Info("blackhole route in place: traffic to unassigned addresses of this host's subnet is dropped here", "metric", BlackholeMetric)
}

// keepBlackhole puts the blackhole route back whenever it goes missing,
// checking every --iptables-resync as flanneld does.
func (a *Agent) keepBlackhole(ctx context.Context, log *slog.Logger, own netip.Prefix) error {
	t := time.NewTicker(time.Duration(a.opts.IPTablesResync) * time.Second)
	defer t.Stop()
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		added, err := a.deps.Blackhole.Ensure(own)
		switch {
		case err != nil:
			if err.Error() != lastErr {
				log.Error("cannot restore the blackhole route; retrying", "err", err.Error())
			}
			lastErr = err.Error()
		case added:
			lastErr = ""
			a.deps.Metrics.Repaired(metrics.KindRoute, 1)
			log.Warn("blackhole route was missing; restored")
		default:
			lastErr = ""
		}
	}
}

// waitConfig polls the store until it holds a valid network config whose
// backend this agent can build. A missing or invalid config is an
// operator's job to fix, so the agent waits and says exactly what to do
// rather than exiting; a store that cannot be reached is named with the
// reason within about a second (storeHealth logs each, and again only as
// the cause changes).
func (a *Agent) waitConfig(ctx context.Context) (*netconf.Config, error) {
	// The first read gets a second: a store that answers at all answers
	// a read this small at once, and one that does not is worth saying
	// so about early. Later reads get longer, up to the store's own
	// bound, in case it is merely slow.
	attempt := time.Second
	for {
		began := a.now()
		actx, cancel := context.WithTimeout(ctx, attempt)
		cfg, err := a.deps.Store.Config(actx)
		cancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err == nil {
			if berr := a.checkBackend(cfg); berr != nil {
				err = fmt.Errorf("%w: the Backend: %w", store.ErrInvalidConfig, berr)
			}
		}
		if err == nil {
			a.sh.succeeded("config", true)
			return cfg, nil
		}
		cause := a.sh.failed("config", "read the network config", err)
		if isConfigCause(cause) {
			a.deps.Health.SetNotReady("waiting for the network config: " + store.Explain(err))
		} else {
			a.deps.Health.SetNotReady(store.Explain(err))
			attempt = min(2*attempt, 8*time.Second)
		}
		// Attempts start at least a second apart. One that waited out its
		// timeout (a store that does not answer: the call itself waits for
		// the connection) is retried at once, so that the agent goes on
		// as soon as the store is back rather than a sleep later.
		if err := sleep(ctx, time.Second-a.now().Sub(began)); err != nil {
			return nil, err
		}
	}
}

// checkBackend says why this agent cannot run cfg's backend, or returns
// nil.
func (a *Agent) checkBackend(cfg *netconf.Config) error {
	if a.deps.CheckBackend != nil {
		if err := a.deps.CheckBackend(cfg.BackendType, cfg.Backend); err != nil {
			return err
		}
	}
	if _, ok := a.deps.Backends[cfg.BackendType]; !ok {
		return fmt.Errorf("Backend.Type %q is not available in this agent (it has %s)", cfg.BackendType,
			strings.Join(slices.Sorted(maps.Keys(a.deps.Backends)), ", "))
	}
	return nil
}

// acquire gets this host's lease, retrying errors that time can fix (store
// unreachable, pool full until some lease expires).
func (a *Agent) acquire(ctx context.Context, cfg *netconf.Config, ext backend.ExternalInterface, be backend.Backend) (lease.Lease, error) {
	btype, data := be.LeaseAttrs()
	attrs := lease.Attrs{PublicIP: ext.PublicIP, PublicIPv6: publicIPv6(cfg, ext), BackendType: btype, BackendData: data, HostID: a.hostID}
	if cfg.EnableIPv6 {
		attrs.BackendV6Data = backend.LeaseV6Data(be)
	}
	req := store.AcquireRequest{Attrs: attrs, NewHostID: a.newHostID}
	// Previous is passed even when the config no longer fits it: the
	// store then keeps the lease rather than renumber the host (join.go).
	if prev, err := subnetenv.Read(a.opts.SubnetFile); err == nil {
		req.Previous, req.PreviousIPv6 = prev.Subnet, prev.IPv6Subnet
	} else if !errors.Is(err, fs.ErrNotExist) {
		a.log.Warn("ignoring the previous subnet file", "path", a.opts.SubnetFile, "err", err.Error())
	}
	delay := time.Second
	var refused string
	refusedDelay := refusedRetry
	for {
		l, err := a.deps.Store.Acquire(ctx, cfg, req)
		if err == nil {
			a.sh.succeeded("acquire", false)
			if refused != "" {
				a.log.Info("the lease is no longer refused", "was", refused)
			}
			a.deps.Metrics.LeaseExpires(l.Expiration)
			args := []any{"subnet", l.Subnet, "public-ip", l.Attrs.PublicIP, "expires", expiry(l), "previous", req.Previous}
			if l.IPv6Subnet.IsValid() {
				args = append(args, "ipv6-subnet", l.IPv6Subnet, "public-ipv6", l.Attrs.PublicIPv6)
			}
			a.log.Info("leased subnet", args...)
			return l, nil
		}
		if ctx.Err() != nil {
			return lease.Lease{}, ctx.Err()
		}
		if r, ok := a.refusalOf(err, cfg); ok {
			if r.reason != refused {
				refused = r.reason
				a.noteRefusal(r)
			}
			if err := a.waitRefused(ctx, cfg, r, &refusedDelay); err != nil {
				return lease.Lease{}, err
			}
			continue
		}
		a.sh.failed("acquire", "acquire a subnet lease", err)
		a.deps.Health.SetNotReady("acquiring a subnet lease: " + store.Explain(err))
		if err := sleep(ctx, delay); err != nil {
			return lease.Lease{}, err
		}
		delay = min(delay*2, 30*time.Second)
	}
}

// renewLoop renews the own lease ahead of expiry. lost is signalled by the
// watcher when the own lease vanished from the store (an admin deleted it,
// or it expired during a long outage): renew at once, which re-creates it.
func (a *Agent) renewLoop(ctx context.Context, ownCh <-chan lease.Lease, lost <-chan struct{}) error {
	own := <-ownCh
	margin := time.Duration(a.opts.SubnetLeaseRenewMargin) * time.Minute
	for {
		var wait <-chan time.Time
		var timer *time.Timer
		if !own.Reservation() {
			at := lease.RenewAt(own.Expiration, margin, a.now())
			timer = time.NewTimer(at.Sub(a.now()))
			wait = timer.C
		}
		select {
		case <-ctx.Done():
		case <-wait:
		case <-lost:
			a.log.Warn("own lease is gone from the store; re-creating it", "subnet", own.Key())
		case l := <-a.ident.republished():
			// Republished with new attributes (identity_watch.go): a
			// re-creation must write those.
			own = l
			if timer != nil {
				timer.Stop()
			}
			continue
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return nil
		}
		for {
			l, err := a.deps.Store.Renew(ctx, own)
			if err == nil {
				own = l
				a.sh.succeeded("renew", false)
				a.deps.Metrics.LeaseExpires(own.Expiration)
				a.log.Info("renewed lease", "subnet", own.Key(), "expires", expiry(own))
				break
			}
			if ctx.Err() != nil {
				return nil
			}
			a.sh.failed("renew", "renew the lease of "+own.Key().String(), err)
			if err := sleep(ctx, 10*time.Second); err != nil {
				return nil
			}
		}
	}
}

// watchLoop feeds the backend with whole snapshots of the lease set. The
// store calls back once per change batch; the newest snapshot replaces any
// not yet applied, so a burst of changes costs one Apply, not one per event.
func (a *Agent) watchLoop(ctx context.Context, be backend.Backend, own netip.Prefix, lost chan<- struct{}, start time.Time, programmed chan<- struct{}) error {
	latest := make(chan snapshot, 1)
	go func() {
		var prev []lease.Lease
		first := true
		for {
			var snap snapshot
			select {
			case <-ctx.Done():
				return
			case snap = <-latest:
			}
			changes := a.logChanges(prev, snap.leases, own)
			prev = snap.leases
			peers := a.admitPeers(snap.leases) // refused leases never reach the backend
			t0 := a.now()
			err := be.Apply(ctx, peers)
			done := a.now()
			a.deps.Metrics.Applied(done.Sub(t0))
			if err != nil && ctx.Err() == nil {
				a.log.Error("some peers could not be programmed; will retry on the next change or reconcile", "err", err.Error())
			}
			a.ident.applied(ctx, snap.leases, err)
			// Every peer this snapshot added or changed waited from the
			// moment the store reported it until now.
			for range changes {
				a.deps.Metrics.PeerProgrammed(done.Sub(snap.at))
			}
			a.countPeers(snap.leases, own)
			a.page.setLeases(snap.leases)
			a.kw.setPeers(peers)
			if first {
				first = false
				close(programmed)
				a.log.Info("programmed peers", "peers", len(snap.leases)-1, "since-start", a.now().Sub(start).Round(time.Millisecond))
			}
		}
	}()
	return a.deps.Store.Watch(ctx, func(snap []lease.Lease) {
		found := false
		for _, l := range snap {
			if l.Key() == own {
				found = true
				break
			}
		}
		if !found {
			select {
			case lost <- struct{}{}:
			default:
			}
		}
		// Keep the arrival time of the oldest snapshot not yet applied: a
		// peer in it has been waiting since then.
		at := a.now()
		select {
		case old := <-latest:
			at = old.at
		default:
		}
		latest <- snapshot{leases: snap, at: at}
	})
}

// snapshot is a lease set and when the store delivered it.
type snapshot struct {
	leases []lease.Lease
	at     time.Time
}

func (a *Agent) countPeers(ls []lease.Lease, own netip.Prefix) {
	by := map[string]int{}
	for _, l := range ls {
		if l.Key() != own {
			by[l.Attrs.BackendType]++
		}
	}
	a.deps.Metrics.SetPeers(by)
}

// logChanges logs one line per peer added, changed or removed, and returns
// the added and changed peers. More than backend.BulkChanges of them (an
// agent starting in a large cluster) get one summary line at info and
// their own lines at debug.
func (a *Agent) logChanges(prev, next []lease.Lease, own netip.Prefix) []lease.Lease {
	ch := lease.Diff(prev, next)
	notOwn := func(ls []lease.Lease) []lease.Lease {
		return slices.DeleteFunc(ls, func(l lease.Lease) bool { return l.Key() == own })
	}
	added, changed, removed := notOwn(ch.Added), notOwn(ch.Changed), notOwn(ch.Removed)
	lvl := slog.LevelInfo
	bulk := len(added)+len(changed)+len(removed) > backend.BulkChanges
	if prev != nil { // the first snapshot is the start, not peers joining
		a.page.peersChanged(added, changed, removed, bulk)
	}
	if n := len(added) + len(changed) + len(removed); n > backend.BulkChanges {
		lvl = slog.LevelDebug
		a.log.Info("peers changed in bulk; one line per peer at debug level", "added", len(added), "changed", len(changed), "removed", len(removed))
	}
	ctx := context.Background()
	for _, l := range added {
		a.log.Log(ctx, lvl, "peer added", "peer", l.Key(), "public-ip", l.Attrs.PublicIP, "backend", l.Attrs.BackendType)
	}
	for _, l := range changed {
		a.log.Log(ctx, lvl, "peer changed", "peer", l.Key(), "public-ip", l.Attrs.PublicIP, "backend", l.Attrs.BackendType)
	}
	for _, l := range removed {
		a.log.Log(ctx, lvl, "peer removed", "peer", l.Key(), "public-ip", l.Attrs.PublicIP)
	}
	return append(added, changed...)
}

func expiry(l lease.Lease) string {
	if l.Reservation() {
		return "never"
	}
	return l.Expiration.UTC().Format(time.RFC3339)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
