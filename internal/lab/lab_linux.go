package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/weftnet/weft/internal/kernel/neightable"
	"github.com/weftnet/weft/internal/kubecluster"
	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/subnetenv"
	"github.com/weftnet/weft/internal/sysctl"
)

// Lab is a running lab built by this process.
type Lab struct {
	opts Options
	topo Topology
	out  *printer
	// childMu guards children: a benchmark restarts one host's agent
	// while another goroutine asks for that agent's process.
	childMu  sync.Mutex
	children []*child // etcd first, then agents in host order
	st       state
	kube     *kubecluster.Cluster // the control plane of a Kubernetes lab
}

// Topology returns the lab's plan.
func (l *Lab) Topology() Topology { return l.topo }

// PodAddr returns the address CNI gave a pod.
func (l *Lab) PodAddr(pod string) (netip.Addr, bool) {
	a, ok := l.st.PodIPs[pod]
	return a, ok
}

// PodAddr6 returns the IPv6 address CNI gave a pod in a dual or IPv6 lab.
func (l *Lab) PodAddr6(pod string) (netip.Addr, bool) {
	a, ok := l.st.PodIPv6s[pod]
	return a, ok
}

// Subnet6 returns the IPv6 subnet a host's agent leased.
func (l *Lab) Subnet6(host string) (netip.Prefix, bool) {
	p, ok := l.st.Subnets6[host]
	return p, ok
}

// Subnet returns the subnet a host's agent leased.
func (l *Lab) Subnet(host string) (netip.Prefix, bool) {
	p, ok := l.st.Subnets[host]
	return p, ok
}

// Up builds the lab and returns it running: underlay and etcd, hosts with
// their agents, pods attached through CNI. On any error, including ctx
// being cancelled, it tears down what it built before returning. A lab
// with the same prefix that already exists is left alone (ErrExists).
func Up(ctx context.Context, opts Options) (l *Lab, err error) {
	opts, topo, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	if err := checkPrivileges(); err != nil {
		return nil, err
	}
	if err := checkCNIBinDir(opts.CNIBinDir); err != nil {
		return nil, err
	}
	if st, err := os.Stat(opts.WeftBinary); err != nil || st.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("weft binary %s is not executable: %v", opts.WeftBinary, err)
	}
	if err := checkAbsent(topo); err != nil {
		return nil, err
	}

	l = &Lab{
		opts: opts,
		topo: topo,
		out:  &printer{w: opts.Out},
		st: state{
			Spec:       topo.Spec,
			WeftBinary: opts.WeftBinary,
			CNIBinDir:  opts.CNIBinDir,
			Created:    time.Now().UTC(),
			Subnets:    map[string]netip.Prefix{},
			PodIPs:     map[string]netip.Addr{},
			Subnets6:   map[string]netip.Prefix{},
			PodIPv6s:   map[string]netip.Addr{},
		},
	}
	defer func() {
		if err == nil {
			return
		}
		l.out.say("build failed; tearing down")
		if derr := l.Down(); derr != nil {
			err = errors.Join(err, derr)
		}
		l = nil
	}()

	if err := mkdirState(topo.StateDir); err != nil {
		return l, err
	}
	if err := writeState(topo.StateDir, l.st); err != nil {
		return l, err
	}
	if !opts.KeepNeighThresholds {
		l.raiseNeigh()
	}
	steps := []func(context.Context) error{l.buildNetwork, l.startStore, l.startAgents, l.waitRoutes, l.addPods}
	for _, step := range steps {
		if err := ctx.Err(); err != nil {
			return l, fmt.Errorf("build lab %s: %w", topo.Spec.Prefix, err)
		}
		if err := step(ctx); err != nil {
			return l, err
		}
	}
	if err := writeState(topo.StateDir, l.st); err != nil {
		return l, err
	}
	if opts.PageAddr != "" {
		if err := l.startPage(ctx); err != nil {
			return l, err
		}
	}
	return l, nil
}

// raiseNeigh sizes the kernel's neighbour tables for the lab (see
// neighGuard): IPv4's (ARP) when the lab has IPv4, IPv6's (NDP) when it
// has IPv6. A kernel that will not let it (a container's read-only
// /proc/sys) leaves the lab as it was before this existed: it says so and
// builds anyway, since small labs fit the stock tables.
func (l *Lab) raiseNeigh() {
	need := PlanNeighNeed(l.topo)
	for _, g := range labNeighGuards(l.topo.Spec) {
		msg, err := g.Raise(l.topo.StateDir, need.Total())
		if err != nil {
			l.out.say("neighbour table (%s): could not size it for the lab's %d entries (%v); a large lab may overflow it", g.Family, need.Total(), err)
			continue
		}
		if strings.HasPrefix(msg, "raised") {
			msg += fmt.Sprintf(" for %d hosts (about %d entries); restored at lab down", len(l.topo.Hosts), need.Total())
		}
		l.out.say("neighbour table: %s", msg)
	}
}

// labNeighGuards are the guards of the tables a lab of spec fills.
func labNeighGuards(spec Spec) []neighGuard {
	var gs []neighGuard
	for _, g := range hostNeighGuards {
		if (g.Family == neightable.IPv4 && spec.HasIPv4()) || (g.Family == neightable.IPv6 && spec.HasIPv6()) {
			gs = append(gs, g)
		}
	}
	return gs
}

// mkdirState creates the state directory. Another lab's teardown removes
// the shared parent when it empties it, which can race with creating it
// here; a retry settles that.
func mkdirState(dir string) error {
	var err error
	for range 3 {
		if err = os.MkdirAll(dir, 0o755); err == nil {
			return nil
		}
	}
	return fmt.Errorf("create state dir: %w", err)
}

// checkPrivileges fails early and plainly where the first namespace would
// fail with a less obvious message.
func checkPrivileges() error {
	if os.Geteuid() != 0 {
		return errors.New("weft lab needs root for network namespaces: run it with sudo")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("weft lab needs iproute2's ip command: %w", err)
	}
	return nil
}

// checkAbsent refuses to build over an existing lab of the same prefix:
// its namespaces or state directory may belong to someone's running lab.
func checkAbsent(topo Topology) error {
	existing, err := labNamespaces(topo.Spec.Prefix)
	if err != nil {
		return err
	}
	if _, err := os.Stat(topo.StateDir); err == nil {
		existing = append(existing, topo.StateDir)
	}
	if len(existing) > 0 {
		return fmt.Errorf("%w: %s (run `weft lab down --prefix %s`, or choose another --prefix)",
			ErrExists, strings.Join(existing, ", "), topo.Spec.Prefix)
	}
	return nil
}

// buildNetwork creates the underlay, the hosts and their wires.
func (l *Lab) buildNetwork(ctx context.Context) error {
	t0 := time.Now()
	if err := buildUnderlay(l.topo.Underlay); err != nil {
		return err
	}
	l.out.say("underlay %s up: switch %s in netns %s %s",
		prefixesText(l.topo.Underlay.Addr.Masked(), l.topo.Underlay.Addr6.Masked()), l.topo.Underlay.Bridge, l.topo.Underlay.NS, formatSince(t0))
	if err := buildSegments(l.topo); err != nil {
		return err
	}
	if rt := l.topo.Router; rt.NS != "" {
		var legs []string
		for _, leg := range rt.Legs {
			legs = append(legs, leg.Iface+" "+prefixesText(leg.Addr, leg.Addr6))
		}
		l.out.say("router %s up: %s, forwarding on %s", rt.NS, strings.Join(legs, ", "), formatSince(t0))
	}
	for _, h := range l.topo.Hosts {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := os.MkdirAll(h.Dir, 0o755); err != nil {
			return fmt.Errorf("create state dir of %s: %w", h.Name, err)
		}
		if err := buildHost(l.topo.Spec, l.topo.Underlay, h); err != nil {
			return err
		}
	}
	if in := l.topo.Internet; in.NS != "" {
		if err := netns.Create(in.NS); err != nil {
			return fmt.Errorf("build internet host: %w", err)
		}
		if err := wire(l.topo.Underlay.NS, l.topo.Underlay.Bridge, in.Wire, in.NS, "eth0", in.Addr, in.Addr6); err != nil {
			return fmt.Errorf("build internet host: %w", err)
		}
		l.out.say("internet host %s in netns %s, outside the cluster network %s", addrsText(in.Addr, in.Addr6), in.NS, formatSince(t0))
	}
	if len(l.topo.Segments) == 1 {
		first, last := l.topo.Hosts[0], l.topo.Hosts[len(l.topo.Hosts)-1]
		l.out.say("hosts %s..%s wired: eth0 %s..%s %s",
			first.Name, last.Name, addrsText(first.Addr, first.Addr6), addrsText(last.Addr, last.Addr6), formatSince(t0))
		return nil
	}
	for _, sg := range l.topo.Segments {
		var hosts []string
		for _, h := range l.topo.Hosts {
			if h.Segment == sg.Index {
				hosts = append(hosts, h.Name+" "+addrsText(h.Addr, h.Addr6))
			}
		}
		l.out.say("segment %d %s (switch %s, router %s): %s wired %s",
			sg.Index, prefixesText(sg.Net, sg.Net6), sg.Bridge, addrsText(netip.PrefixFrom(sg.Gateway, 0), netip.PrefixFrom(sg.Gateway6, 0)), strings.Join(hosts, ", "), formatSince(t0))
	}
	return nil
}

// startEtcd starts the etcd process and writes the network config, which
// doubles as the readiness test.
func (l *Lab) startEtcd(ctx context.Context) error {
	t0 := time.Now()
	e := l.topo.Etcd
	if err := os.MkdirAll(e.Dir, 0o755); err != nil {
		return fmt.Errorf("create etcd state dir: %w", err)
	}
	c, err := spawn("etcd", l.topo.Underlay.NS, l.opts.WeftBinary, l.topo.EtcdArgs(), e.LogFile, e.PIDFile)
	if err != nil {
		return err
	}
	l.addChild(c)

	// Wait for the port before making the client: a gRPC connection
	// refused once backs off for a second before it tries again.
	hostPort := strings.TrimPrefix(e.ClientURL, "http://")
	err = l.poll(ctx, c, "etcd to listen on "+hostPort, func() error {
		conn, err := nsDial(ctx, l.topo.Underlay.NS, "tcp", hostPort)
		if err == nil {
			conn.Close()
		}
		return err
	})
	if err != nil {
		return err
	}
	cli, err := etcdClient(l.topo, l.opts.Log)
	if err != nil {
		return err
	}
	defer cli.Close()
	err = l.poll(ctx, c, "etcd to accept the network config", func() error {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := cli.Put(pctx, e.ConfigKey, e.Config)
		return err
	})
	if err != nil {
		return err
	}
	l.out.say("etcd ready at %s %s", e.ClientURL, formatSince(t0))
	l.out.say("network config %s = %s", e.ConfigKey, e.Config)
	return nil
}

// startAgents starts one agent per host and waits until each serves
// /readyz and has written its subnet.env.
func (l *Lab) startAgents(ctx context.Context) error {
	t0 := time.Now()
	kids := make([]*child, len(l.topo.Hosts))
	for i, h := range l.topo.Hosts {
		c, err := l.spawnAgent(h)
		if err != nil {
			return err
		}
		kids[i] = c
		l.addChild(c)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for i, h := range l.topo.Hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sub, sub6, err := l.waitAgent(ctx, h, kids[i])
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			l.setSubnets(h.Name, sub, sub6)
			l.out.say("%s: agent leased %s %s", h.Name, prefixesText(sub, sub6), formatSince(t0))
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// setSubnets records what a host's agent leased, per family.
func (l *Lab) setSubnets(host string, sub, sub6 netip.Prefix) {
	if sub.IsValid() {
		l.st.Subnets[host] = sub
	}
	if sub6.IsValid() {
		l.st.Subnets6[host] = sub6
	}
}

// waitAgent waits until h's agent is ready and has written a subnet.env
// with a subnet of each family the lab has, and returns them.
func (l *Lab) waitAgent(ctx context.Context, h Host, c *child) (sub, sub6 netip.Prefix, err error) {
	hc := nsHTTPClient(h.NS, time.Second)
	url := "http://" + h.Health.String() + "/readyz"
	err = l.poll(ctx, c, h.Name+" agent to be ready", func() error {
		resp, err := hc.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s in %s: %s", url, h.NS, resp.Status)
		}
		env, err := subnetenv.Read(h.SubnetFile)
		if err != nil {
			return err
		}
		if l.topo.Spec.HasIPv6() && !env.IPv6Subnet.IsValid() {
			return fmt.Errorf("%s has no FLANNEL_IPV6_SUBNET", h.SubnetFile)
		}
		sub, sub6 = env.Subnet, env.IPv6Subnet
		return nil
	})
	return sub, sub6, err
}

// waitRoutes waits until every host has a route to every other host's
// subnet, which is when the agents have learned about each other. It asks
// the kernel for a route lookup rather than looking for a particular
// route, so it holds for every backend; only the default route to the
// router of a lab with segments does not count.
//
// IPv4 routes must come within ReadyTimeout or the build fails, as ever.
// IPv6 routes are waited for as long, but their absence only says so and
// the build goes on: the checks then show every pair that fails over
// IPv6, which says more than a build that stops at the first host.
func (l *Lab) waitRoutes(ctx context.Context) error {
	if len(l.topo.Hosts) < 2 {
		return nil
	}
	t0 := time.Now()
	if l.topo.Spec.HasIPv4() {
		if err := l.waitFamilyRoutes(ctx, l.st.Subnets, func(h Host) netip.Addr { return h.Gateway }); err != nil {
			return err
		}
		l.out.say("routes: every host reaches every other host's subnet %s", formatSince(t0))
	}
	if l.topo.Spec.HasIPv6() {
		t6 := time.Now()
		if err := l.waitFamilyRoutes(ctx, l.st.Subnets6, func(h Host) netip.Addr { return h.Gateway6 }); err != nil {
			if ctx.Err() != nil {
				return err
			}
			l.out.say("IPv6 routes: not every host reaches every other host's IPv6 subnet %s; going on so that the checks show each pair: %v", formatSince(t6), err)
		} else {
			l.out.say("IPv6 routes: every host reaches every other host's IPv6 subnet %s", formatSince(t6))
		}
	}
	return l.waitWireGuardPeers(ctx)
}

// waitFamilyRoutes is waitRoutes for one family: subnets are the hosts'
// subnets of that family, gateway a host's default gateway in it.
func (l *Lab) waitFamilyRoutes(ctx context.Context, subnets map[string]netip.Prefix, gateway func(Host) netip.Addr) error {
	for _, h := range l.topo.Hosts {
		nh, err := netns.Handle(h.NS)
		if err != nil {
			return err
		}
		err = l.poll(ctx, nil, h.Name+" to route to every other subnet", func() error {
			for _, other := range l.topo.Hosts {
				if other.Name == h.Name {
					continue
				}
				dst := subnets[other.Name].Addr().Next()
				rs, err := nh.RouteGet(dst.AsSlice())
				if err != nil {
					return fmt.Errorf("%s: no route to %s's subnet %s: %w", h.Name, other.Name, subnets[other.Name], err)
				}
				if len(rs) == 0 {
					return fmt.Errorf("%s: no route to %s's subnet %s", h.Name, other.Name, subnets[other.Name])
				}
				// With segments, the default route to the router always
				// matches; it is not the agent's route.
				if gw, ok := netip.AddrFromSlice(rs[0].Gw); ok && gateway(h).IsValid() && gw.Unmap() == gateway(h) {
					return fmt.Errorf("%s: %s's subnet %s still goes by the default route", h.Name, other.Name, subnets[other.Name])
				}
			}
			return nil
		})
		nh.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// addPods creates the pod namespaces and attaches each through CNI.
func (l *Lab) addPods(ctx context.Context) error {
	for _, h := range l.topo.Hosts {
		if len(h.Pods) == 0 {
			continue
		}
		conf, err := l.topo.ConfList(h)
		if err != nil {
			return err
		}
		if err := writeFileAtomic(h.ConfList, conf); err != nil {
			return err
		}
		c, err := newCNIHost(l.opts.CNIBinDir, h, conf)
		if err != nil {
			return err
		}
		for _, p := range h.Pods {
			if err := ctx.Err(); err != nil {
				return err
			}
			t0 := time.Now()
			if err := netns.Create(p.NS); err != nil {
				return fmt.Errorf("create pod %s: %w", p.Name, err)
			}
			cctx, cancel := context.WithTimeout(ctx, l.opts.ReadyTimeout)
			ip, ip6, err := c.add(cctx, l.topo.Spec, p)
			cancel()
			if err != nil {
				return err
			}
			if ip.IsValid() {
				l.st.PodIPs[p.Name] = ip
			}
			if ip6.IsValid() {
				l.st.PodIPv6s[p.Name] = ip6
			}
			l.out.say("%s: %s via CNI %s", p.Name, addrsText(netip.PrefixFrom(ip, 0), netip.PrefixFrom(ip6, 0)), formatSince(t0))
		}
	}
	return nil
}

// poll calls cond every 50 ms until it succeeds. It gives up when ctx is
// done, after ReadyTimeout, or as soon as the process c (if any) exits, so
// a crashing agent is reported with its log instead of a timeout.
func (l *Lab) poll(ctx context.Context, c *child, what string, cond func() error) error {
	deadline := time.Now().Add(l.opts.ReadyTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var exited <-chan struct{}
	if c != nil {
		exited = c.exited
	}
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			msg := fmt.Errorf("waited %v for %s: %w", l.opts.ReadyTimeout, what, err)
			if c != nil {
				return fmt.Errorf("%w; last lines of %s:\n%s", msg, c.logFile, tail(c.logFile, 10))
			}
			return msg
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-exited:
			return c.failure()
		case <-tick.C:
		}
	}
}

// Check runs the connectivity checks against the running lab.
func (l *Lab) Check(ctx context.Context) ([]Check, error) {
	return runChecks(ctx, l.topo, targets(l.topo, l.st))
}

// checkWatched runs the checks and reads the counters of the kernel's
// neighbour tables the lab fills before and after, so that an overflow
// during the checks is named as the cause of their failures
// (Result.Overflow, the first table that overflowed). Unreadable counters
// (no /proc/net/stat) only lose that diagnosis.
func checkWatched(ctx context.Context, topo Topology, st state, log *slog.Logger) (Result, error) {
	guards := labNeighGuards(topo.Spec)
	before := make([]neightable.Stats, len(guards))
	var berr error
	for i, g := range guards {
		var err error
		before[i], err = neightable.ReadStats("", g.Family)
		berr = errors.Join(berr, err)
	}
	checks, err := runChecks(ctx, topo, targets(topo, st))
	if err != nil {
		return Result{}, err
	}
	res := Result{Checks: checks}
	if berr != nil {
		log.Warn("cannot tell whether the neighbour table overflowed", "err", berr)
		return res, nil
	}
	for i, g := range guards {
		after, err := neightable.ReadStats("", g.Family)
		if err != nil {
			log.Warn("cannot tell whether the neighbour table overflowed", "err", err)
			continue
		}
		if after.TableFulls <= before[i].TableFulls {
			continue
		}
		o := &NeighOverflow{
			Table:   g.Family.StatName(),
			Sysctl:  g.Family.Sysctl(3),
			Refused: after.TableFulls - before[i].TableFulls,
		}
		if cur, err := neightable.ReadThresholds(sysctl.Host, g.Family); err == nil {
			o.Limit = cur.GC3
			o.Suggest = neightable.Fit(cur, PlanNeighNeed(topo).Total()).GC3
		}
		res.Overflow = o
		break
	}
	return res, nil
}

// targets are the pods to check, each once per address: IPv4 ones
// first, then IPv6 ones.
func targets(topo Topology, st state) []probeTarget {
	var ts []probeTarget
	for _, ips := range []map[string]netip.Addr{st.PodIPs, st.PodIPv6s} {
		for _, p := range topo.Pods() {
			if a, ok := ips[p.Name]; ok {
				ts = append(ts, probeTarget{Pod: p, Addr: a})
			}
		}
	}
	return ts
}

// Down tears the lab down on a fresh context (see teardown).
func (l *Lab) Down() error {
	ctx, cancel := context.WithTimeout(context.Background(), teardownTimeout)
	defer cancel()
	err := teardown(ctx, l.topo, l.opts.CNIBinDir, l.opts.Log, l.out)
	// The processes were this process's children: wait until their
	// reapers have run, so none lingers as a zombie.
	for _, c := range l.childList() {
		select {
		case <-c.exited:
		case <-ctx.Done():
		}
	}
	return err
}

// Down tears down the lab with the given spec's prefix and state root,
// whichever process built it and however far it got.
func Down(ctx context.Context, spec Spec, log *slog.Logger) error {
	return DownTo(ctx, spec, log, nil)
}

// DownTo is Down that tells out what it did beyond removing the lab
// (restoring the neighbour thresholds); nil discards.
func DownTo(ctx context.Context, spec Spec, log *slog.Logger, out io.Writer) error {
	if out == nil {
		out = io.Discard
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	topo, err := Plan(spec)
	if err != nil {
		return err
	}
	if err := checkPrivileges(); err != nil {
		return err
	}
	binDir := ""
	if st, err := readState(topo.StateDir); err == nil {
		if t, err := Plan(recordedSpec(spec, st)); err == nil {
			topo = t
		}
		binDir = st.CNIBinDir
	} else {
		log.Debug("no usable lab state; tearing down by names only", "err", err)
		topo.Hosts = nil
	}
	return teardown(ctx, topo, binDir, log, &printer{w: out})
}

// teardown removes everything of the lab with topo's prefix, in an order
// that lets each step succeed:
//
//  1. CNI DEL for the pods (best effort, as a runtime removing sandboxes);
//  2. stop the processes in the hosts and pods (the agents, and anything
//     left by `weft lab exec`), then those in the underlay (etcd), each
//     also found through its pid file in case its namespace is gone;
//  3. delete every namespace named like the lab's, which removes all
//     links in them;
//  4. remove the state directory.
//
// It keeps going after a failed step and returns all errors joined.
func teardown(ctx context.Context, topo Topology, cniBinDir string, log *slog.Logger, out *printer) error {
	prefix := topo.Spec.Prefix
	var errs []error
	if cniBinDir != "" {
		if err := delPods(ctx, cniBinDir, topo); err != nil {
			log.Warn("CNI DEL failed; deleting the namespaces instead", "err", err)
		}
	}

	names, err := labNamespaces(prefix)
	if err != nil {
		errs = append(errs, err)
	}
	underlay := prefix + "-ul"
	hostSide := slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == underlay })
	agentPIDs, _ := filepath.Glob(filepath.Join(topo.StateDir, "h*", "agent.pid"))
	etcdPIDs, _ := filepath.Glob(filepath.Join(topo.StateDir, "etcd", "*.pid"))
	if err := killKube(topo); err != nil {
		errs = append(errs, err)
	}
	for _, phase := range []struct {
		ns       []string
		pidFiles []string
	}{
		{nil, []string{pagePIDFile(topo)}},
		{hostSide, agentPIDs},
		{[]string{underlay}, etcdPIDs},
	} {
		pids, err := pidsInNamespaces(phase.ns)
		if err != nil {
			errs = append(errs, err)
		}
		for _, f := range phase.pidFiles {
			pid, ok, err := readPIDFile(f)
			if err != nil {
				errs = append(errs, err)
			}
			if ok && !slices.Contains(pids, pid) {
				pids = append(pids, pid)
			}
		}
		if len(pids) > 0 {
			log.Debug("stopping lab processes", "pids", pids)
			if err := stopPIDs(pids, 5*time.Second); err != nil {
				errs = append(errs, fmt.Errorf("stop lab processes: %w", err))
			}
		}
	}

	if err := deleteNamespaces(names); err != nil {
		errs = append(errs, err)
	}
	if left, err := labNamespaces(prefix); err == nil && len(left) > 0 {
		errs = append(errs, fmt.Errorf("namespaces left after teardown: %s", strings.Join(left, ", ")))
	}
	// After a crash this is where the thresholds the lab raised come
	// back: the record still names the lab's state directory.
	for _, g := range hostNeighGuards {
		if msg, err := g.Release(topo.StateDir); err != nil {
			errs = append(errs, err)
		} else if msg != "" {
			out.say("neighbour table: %s", msg)
		}
	}
	if err := os.RemoveAll(topo.StateDir); err != nil {
		errs = append(errs, fmt.Errorf("remove state dir: %w", err))
	}
	// The state root was made by the first lab; the last one removes it.
	// Failing because another lab still lives there is expected.
	_ = os.Remove(topo.Spec.StateRoot)
	if err := ctx.Err(); err != nil {
		errs = append(errs, fmt.Errorf("teardown of lab %s: %w", prefix, err))
	}
	return errors.Join(errs...)
}

// Demo builds the lab, runs the checks, prints the result table and tears
// the lab down (unless opts.Keep), also when a check fails, on error and
// when ctx is cancelled. The error is non-nil when any check failed.
func Demo(ctx context.Context, opts Options) (res Result, err error) {
	start := time.Now()
	opts, topo, err := opts.resolve()
	if err != nil {
		return res, err
	}
	if len(topo.Hosts) < 2 || topo.Spec.Pods < 1 {
		return res, fmt.Errorf("a demo needs at least 2 hosts and 1 pod per host (have %d and %d)", len(topo.Hosts), topo.Spec.Pods)
	}
	out := &printer{w: opts.Out}
	out.say("weft lab %s: %d hosts × %d pods, backend %s%s%s",
		topo.Spec.Prefix, len(topo.Hosts), topo.Spec.Pods, topo.Spec.Backend, networkNote(topo.Spec), layoutNote(topo.Spec))

	l, err := Up(ctx, opts)
	if err != nil {
		return res, err
	}
	if opts.Keep {
		defer func() { printUsage(opts.Out, topo) }()
	} else {
		defer func() {
			t0 := time.Now()
			if derr := l.Down(); derr != nil {
				err = errors.Join(err, fmt.Errorf("tear down: %w", derr))
				out.say("teardown failed: %v", derr)
			} else {
				out.say("lab torn down %s", formatSince(t0))
			}
			res.Elapsed = time.Since(start)
			out.say("total %.1fs", res.Elapsed.Seconds())
		}()
	}
	out.say("lab up %s; checking %d pods", formatSince(start), len(topo.Pods()))

	t0 := time.Now()
	res, err = checkWatched(ctx, l.topo, l.st, opts.Log)
	if err != nil {
		return res, err
	}
	res.Elapsed = time.Since(start)
	out.say("%d checks done %s", len(res.Checks), formatSince(t0))
	out.say("")
	// Like the progress lines, the table is for people: failing to print
	// it (a closed pipe) does not change what the checks proved.
	_ = WriteReport(opts.Out, res)
	if !res.OK() && res.Overflow == nil {
		// The logs go with the state directory; show what the agents said
		// while they are still there. An overflow has its cause named
		// already, and the agents have nothing to add to it.
		for _, h := range topo.Hosts {
			out.say("\n%s agent log (last lines of %s):\n%s", h.Name, h.AgentLog, tail(h.AgentLog, 10))
		}
	}
	return res, res.Err()
}

// printUsage tells how to use a lab left running.
func printUsage(w io.Writer, topo Topology) {
	p := topo.Spec.Prefix
	pf := ""
	if p != DefaultPrefix {
		pf = " --prefix " + p
	}
	example := "h1"
	if pods := topo.Pods(); len(pods) > 0 {
		example = pods[0].Name
	}
	router := ""
	if topo.Router.NS != "" {
		router = "\n  weft lab exec" + pf + " rt -- ip route"
	}
	fmt.Fprintf(w, `
lab %[1]s is running (state in %[2]s). Try:
  weft lab exec%[3]s %[4]s -- ip addr
  weft lab exec%[3]s h1 -- ip route%[5]s
  weft lab check%[3]s
  weft lab status%[3]s
Tear it down with:
  weft lab down%[3]s
`, p, topo.StateDir, pf, example, router)
}

func (l *Lab) addChild(c *child) {
	l.childMu.Lock()
	defer l.childMu.Unlock()
	l.children = append(l.children, c)
}

// childList is a copy of the children, to range over without the lock.
func (l *Lab) childList() []*child {
	l.childMu.Lock()
	defer l.childMu.Unlock()
	return slices.Clone(l.children)
}
