package bench

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/kernel"
	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/netns"
)

var (
	// scaleNetwork is the scale lab's cluster network: 16383 leasable
	// /24s, room for the standing set and the churn's adds.
	scaleNetwork = netip.MustParsePrefix("100.64.0.0/10")
	// synthPublic holds the synthetic hosts' public IPs. The agent's host
	// gets an on-link route to it (no address, nobody answers), which is
	// what host-gw needs to accept a route via such a peer; vxlan would
	// take any address.
	synthPublic = netip.MustParsePrefix("10.64.0.0/16")
)

// programTimeout bounds the wait for an agent to program everything.
const programTimeout = 60 * time.Second

// settleTime is how long after ready the scale section reads the agent's
// memory a second time.
const settleTime = 3 * time.Second

// scale runs the scale and churn sections for host-gw and vxlan (udp has
// no per-peer kernel entries to time).
func (r *runner) scale(ctx context.Context) error {
	for _, b := range []string{"host-gw", "vxlan"} {
		if !r.o.hasBackend(b) {
			continue
		}
		if err := r.scaleBackend(ctx, b); err != nil {
			r.fail("scale "+b, err)
		}
	}
	return nil
}

// scaleLab is the one-host lab of the scale and churn sections and the
// synthetic leases written into its etcd.
type scaleLab struct {
	l        *lab.Lab
	host     lab.Host
	backend  string
	cli      *clientv3.Client
	own      netip.Prefix
	next     int     // number of the next synthetic host
	standing []synth // in etcd, oldest first
}

// fresh describes the next synthetic host.
func (s *scaleLab) fresh() synth {
	for nthSubnet(scaleNetwork, 24, s.next) == s.own {
		s.next++
	}
	n := s.next
	s.next++
	return newSynth(n, nthSubnet(scaleNetwork, 24, n), nthAddr(synthPublic, n), s.backend, s.l.Topology().Spec.EtcdPrefix)
}

func (r *runner) scaleBackend(ctx context.Context, backend string) error {
	var counts []int
	if r.o.has(SectionScale) {
		counts = slices.Clone(r.o.Leases)
	}
	if r.o.has(SectionChurn) && !slices.Contains(counts, r.o.ChurnLeases) {
		counts = append(counts, r.o.ChurnLeases)
		slices.Sort(counts)
	}
	suffix := map[string]string{"host-gw": "shgw", "vxlan": "svx"}[backend]
	l, err := r.up(ctx, lab.Spec{Prefix: r.o.Prefix + suffix, Hosts: 1, Pods: 0, Backend: backend, Network: scaleNetwork})
	if err != nil {
		return err
	}
	defer r.down(l)
	s := &scaleLab{l: l, host: l.Topology().Hosts[0], backend: backend, next: 1}
	s.own, _ = l.Subnet(s.host.Name)
	if _, err := inNS(ctx, s.host.NS, "ip", "route", "add", synthPublic.String(), "dev", s.host.Iface, "scope", "link"); err != nil {
		return err
	}
	if s.cli, err = l.EtcdClient(); err != nil {
		return err
	}
	defer s.cli.Close()

	for _, n := range counts {
		if err := ctx.Err(); err != nil {
			return err
		}
		// Several starts per count: a single start's memory and time
		// depend on where the collector and the machine happen to be.
		starts := 1
		if r.o.has(SectionScale) && slices.Contains(r.o.Leases, n) {
			starts = r.o.ScaleStarts
		}
		var (
			rec    *recorder
			cancel context.CancelFunc
		)
		for i := range starts {
			if cancel != nil {
				cancel()
			}
			var sc Scale
			var err error
			sc, rec, cancel, err = r.scaleOnce(ctx, s, n)
			if err != nil {
				return err
			}
			sc.Start = i + 1
			if r.o.has(SectionScale) && slices.Contains(r.o.Leases, n) {
				r.res.Scale = append(r.res.Scale, sc)
			}
		}
		if r.o.has(SectionChurn) && n == r.o.ChurnLeases {
			c, err := r.churn(ctx, s, rec)
			if err != nil {
				r.fail(fmt.Sprintf("churn %s at %d leases", backend, n), err)
			} else {
				r.res.Churn = append(r.res.Churn, c)
			}
		}
		cancel()
	}
	return nil
}

// scaleOnce stops the agent, brings the synthetic leases up to n, wipes
// what the agent had programmed (as a reboot would), and times a fresh
// start. It returns the recorder, still running, for the churn.
func (r *runner) scaleOnce(ctx context.Context, s *scaleLab, n int) (Scale, *recorder, context.CancelFunc, error) {
	res := Scale{Backend: s.backend, Leases: n, ProgrammedSeconds: NaN, ReadySeconds: NaN, RSSMiB: NaN, PeakRSSMiB: NaN, AnonMiB: NaN, FileMiB: NaN, CPUSeconds: NaN}
	h := s.host
	if err := s.l.StopAgent(h.Name, syscall.SIGTERM); err != nil {
		return res, nil, nil, err
	}
	t0 := time.Now()
	add := make([]synth, 0, max(0, n-len(s.standing)))
	for len(s.standing)+len(add) < n {
		add = append(add, s.fresh())
	}
	if err := putAll(ctx, s.cli, add); err != nil {
		return res, nil, nil, err
	}
	s.standing = append(s.standing, add...)
	r.say("scale: %s, %d synthetic leases in etcd (%d written in %.1fs)", s.backend, n, len(add), time.Since(t0).Seconds())

	// A cold start: nothing of the agent's per-peer state in the kernel.
	wipe := []string{"ip", "route", "flush", "proto", "87"}
	if s.backend == "vxlan" {
		wipe = []string{"ip", "link", "del", "flannel.1"}
	}
	if _, err := inNS(ctx, h.NS, wipe...); err != nil {
		return res, nil, nil, err
	}
	var es []entry
	for _, sy := range s.standing {
		es = append(es, sy.entries()...)
	}
	res.Entries = len(es)

	rctx, cancel := context.WithCancel(ctx)
	rec, err := record(rctx, h.NS, s.backend == "vxlan")
	if err != nil {
		cancel()
		return res, nil, nil, err
	}
	started := make(chan error, 1)
	start := time.Now()
	go func() { started <- s.l.StartAgent(ctx, h.Name) }()

	var (
		wg    sync.WaitGroup
		ready time.Time
	)
	wg.Go(func() {
		for time.Since(start) < programTimeout && ctx.Err() == nil {
			if code, _, err := s.l.AgentGet(h.Name, "/readyz"); err == nil && code == 200 {
				ready = time.Now()
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	at, ok, err := waitChange(ctx, []*recorder{rec}, es, true, start, programTimeout)
	var u usage
	var uerr error
	if ok {
		u, uerr = agentUsage(s.l, h.Name)
	}
	wg.Wait()
	if serr := <-started; serr != nil {
		cancel()
		return res, nil, nil, serr
	}
	if err != nil {
		cancel()
		return res, nil, nil, err
	}
	if !ready.IsZero() {
		res.ReadySeconds = Num(ready.Sub(start).Seconds())
	}
	if ok {
		res.ProgrammedSeconds = Num(at.Sub(start).Seconds())
	} else {
		res.Missing = rec.missing(es, true, start)
	}
	if ok && uerr == nil {
		res.RSSMiB, res.PeakRSSMiB, res.AnonMiB, res.FileMiB, res.CPUSeconds = u.RSS, u.HWM, u.Anon, u.File, Num(u.cpu)
	}
	res.SettledRSSMiB, res.SettledAnonMiB, res.SettledFileMiB = NaN, NaN, NaN
	if !ready.IsZero() {
		// What the agent keeps, rather than what its start touched: read
		// again once the start's garbage has had time to go.
		res.SettleSeconds = settleTime.Seconds()
		if err := sleep(ctx, time.Until(ready.Add(settleTime))); err != nil {
			cancel()
			return res, nil, nil, err
		}
		if u, err := agentUsage(s.l, h.Name); err == nil {
			res.SettledRSSMiB, res.SettledAnonMiB, res.SettledFileMiB = u.RSS, u.Anon, u.File
		}
	}
	r.say("  %s %d leases: programmed %s, ready %s, RSS %s (peak %s; anon %s, file %s), settled RSS %s, CPU %s, %d missing", s.backend, n,
		f("%.3f s", res.ProgrammedSeconds), f("%.3f s", res.ReadySeconds), f("%.1f MiB", res.RSSMiB),
		f("%.1f MiB", res.PeakRSSMiB), f("%.1f MiB", res.AnonMiB), f("%.1f MiB", res.FileMiB),
		f("%.1f MiB", res.SettledRSSMiB), f("%.2f s", res.CPUSeconds), res.Missing)
	return res, rec, cancel, nil
}

// churn adds and deletes synthetic leases at the configured rate against
// the running agent: each tick writes one new lease and deletes the oldest
// one, so the standing set keeps its size. Lag is from just before each
// write to the last kernel change it causes.
func (r *runner) churn(ctx context.Context, s *scaleLab, rec *recorder) (Churn, error) {
	res := Churn{Backend: s.backend, Leases: len(s.standing), Rate: r.o.ChurnRate, CPUSeconds: NaN, RSSMiB: NaN, AnonMiB: NaN}
	adds := int(r.o.ChurnRate * r.o.ChurnTime.Seconds())
	fresh := make([]synth, adds)
	for i := range fresh {
		fresh[i] = s.fresh()
	}
	// Granting the etcd leases up front keeps each tick to one write per
	// lease, so the writer keeps the rate.
	if err := grantAll(ctx, s.cli, fresh); err != nil {
		return res, err
	}
	r.say("churn: %s, %d standing leases, %.0f adds + %.0f deletes per second for %v", s.backend, len(s.standing), r.o.ChurnRate, r.o.ChurnRate, r.o.ChurnTime)

	type write struct {
		es  []entry
		add bool
		at  time.Time
	}
	var writes []write
	before, berr := agentUsage(s.l, s.host.Name)
	tick := time.NewTicker(time.Duration(float64(time.Second) / r.o.ChurnRate))
	defer tick.Stop()
	start := time.Now()
	for i := range fresh {
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-tick.C:
		}
		t := time.Now()
		if err := fresh[i].put(ctx, s.cli); err != nil {
			return res, err
		}
		writes = append(writes, write{fresh[i].entries(), true, t})
		res.Adds++
		old := s.standing[0]
		s.standing = append(s.standing[1:], fresh[i])
		t = time.Now()
		if err := old.remove(ctx, s.cli); err != nil {
			return res, err
		}
		writes = append(writes, write{old.entries(), false, t})
		res.Deletes++
	}
	res.Seconds = time.Since(start).Seconds()

	// Wait for the last writes to show, then judge every write.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		w := writes[len(writes)-1]
		if _, ok := rec.lastChange(w.es, w.add, w.at); ok {
			break
		}
		if err := sleep(ctx, 10*time.Millisecond); err != nil {
			return res, err
		}
	}
	if err := sleep(ctx, 200*time.Millisecond); err != nil {
		return res, err
	}
	var lags []float64
	for _, w := range writes {
		if at, ok := rec.lastChange(w.es, w.add, w.at); ok {
			lags = append(lags, float64(at.Sub(w.at).Microseconds())/1000)
		} else {
			res.Unobserved++
		}
	}
	res.LagMs = Summarize(lags)
	if err := rec.failure(); err != nil {
		return res, fmt.Errorf("kernel notifications: %w", err)
	}
	if after, err := agentUsage(s.l, s.host.Name); err == nil && berr == nil {
		res.CPUSeconds = Num(after.cpu - before.cpu)
		res.RSSMiB, res.AnonMiB = after.RSS, after.Anon
	}
	lost, stale, err := compareKernel(ctx, s)
	if err != nil {
		return res, err
	}
	res.Lost, res.Stale = len(lost), len(stale)
	r.say("  %s churn: %d adds, %d deletes in %.1fs; lag p50 %.1f ms p99 %.1f ms max %.1f ms; %d unobserved, %d lost, %d stale",
		s.backend, res.Adds, res.Deletes, res.Seconds, res.LagMs.P50, res.LagMs.P99, res.LagMs.Max, res.Unobserved, res.Lost, res.Stale)
	if len(lost)+len(stale) > 0 {
		r.say("  lost: %s; stale: %s", sample(lost), sample(stale))
	}
	return res, nil
}

// grantAll grants every synthetic lease its etcd lease, in parallel.
func grantAll(ctx context.Context, cli *clientv3.Client, ss []synth) error {
	const workers = 32
	work := make(chan int)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for range workers {
		wg.Go(func() {
			for i := range work {
				if err := ss[i].grant(ctx, cli); err != nil {
					mu.Lock()
					first = cmpErr(first, err)
					mu.Unlock()
				}
			}
		})
	}
	for i := range ss {
		work <- i
	}
	close(work)
	wg.Wait()
	return first
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// compareKernel compares the agent's kernel entries with the leases in
// etcd: lost are entries etcd's leases ask for that the kernel lacks,
// stale are entries the kernel holds for no lease.
func compareKernel(ctx context.Context, s *scaleLab) (lost, stale []string, err error) {
	resp, err := s.cli.Get(ctx, s.l.Topology().Spec.EtcdPrefix+"/subnets/", clientv3.WithPrefix())
	if err != nil {
		return nil, nil, fmt.Errorf("list leases: %w", err)
	}
	bySubnet := make(map[netip.Prefix]synth, len(s.standing))
	for _, sy := range s.standing {
		bySubnet[sy.Subnet] = sy
	}
	want := map[entry]bool{}
	prefix := s.l.Topology().Spec.EtcdPrefix + "/subnets/"
	for _, kv := range resp.Kvs {
		sub, _, err := lease.ParseKeyName(strings.TrimPrefix(string(kv.Key), prefix))
		if err != nil || sub == s.own {
			continue
		}
		sy, ok := bySubnet[sub]
		if !ok {
			return nil, nil, fmt.Errorf("etcd holds lease %s that the benchmark did not write", sub)
		}
		for _, e := range sy.entries() {
			want[e] = true
		}
	}

	h, err := netns.Handle(s.host.NS)
	if err != nil {
		return nil, nil, err
	}
	defer h.Close()
	have := map[entry]bool{}
	routes, err := kernel.ListRoutes(h)
	if err != nil {
		return nil, nil, err
	}
	for _, rt := range routes {
		if rt.Proto == kernel.ProtoWeft && scaleNetwork.Contains(rt.Dst.Addr()) {
			have[entry{kindRoute, rt.Dst.String()}] = true
		}
	}
	if s.backend == "vxlan" {
		link, err := h.LinkByName("flannel.1")
		if err != nil {
			return nil, nil, fmt.Errorf("find flannel.1: %w", err)
		}
		idx := link.Attrs().Index
		ns, err := kernel.ListNeighs(h, idx)
		if err != nil {
			return nil, nil, err
		}
		for _, n := range ns {
			if n.Permanent {
				have[entry{kindNeigh, n.IP.String()}] = true
			}
		}
		fs, err := kernel.ListFDB(h, idx)
		if err != nil {
			return nil, nil, err
		}
		for _, fd := range fs {
			if fd.Permanent && fd.MAC.Unicast() {
				have[entry{kindFDB, fd.MAC.String()}] = true
			}
		}
	}
	for e := range want {
		if !have[e] {
			lost = append(lost, e.kind.String()+" "+e.key)
		}
	}
	for e := range have {
		if !want[e] {
			stale = append(stale, e.kind.String()+" "+e.key)
		}
	}
	slices.Sort(lost)
	slices.Sort(stale)
	return lost, stale, nil
}

// sample shows the first few of a list.
func sample(xs []string) string {
	if len(xs) == 0 {
		return "none"
	}
	if len(xs) > 5 {
		return strings.Join(xs[:5], ", ") + fmt.Sprintf(" and %d more", len(xs)-5)
	}
	return strings.Join(xs, ", ")
}
