package bench

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/weftnet/weft/internal/lab"
)

// joinHosts is the size of the join lab, as issue 6 asks.
const joinHosts = 3

// joinTimeout bounds one join or leave; one that takes longer is missed.
const joinTimeout = 5 * time.Second

// joins measures join and leave convergence for host-gw and vxlan (the
// udp backend keeps its peers in user space: there is no kernel entry per
// peer to watch).
func (r *runner) joins(ctx context.Context) error {
	for _, b := range []string{"host-gw", "vxlan"} {
		if !r.o.hasBackend(b) {
			continue
		}
		j, err := r.join(ctx, b)
		if err != nil {
			r.fail("join "+b, err)
			continue
		}
		r.res.Join = append(r.res.Join, j)
	}
	return nil
}

// join, in a 3-host lab with real agents:
//
//	for each join: a synthetic host's lease (its own etcd lease, a
//	PublicIP on the underlay that nobody answers, a fresh subnet) is
//	written; the time from just before the write until the last host has
//	the last of its entries is the join latency. Then the key is deleted
//	and the same is timed for the entries' removal.
func (r *runner) join(ctx context.Context, backend string) (Join, error) {
	res := Join{Backend: backend, Hosts: joinHosts, Joins: r.o.Joins}
	r.say("join: %s, %d hosts, %d joins", backend, joinHosts, r.o.Joins)
	suffix := map[string]string{"host-gw": "jhgw", "vxlan": "jvx"}[backend]
	l, err := r.up(ctx, lab.Spec{Prefix: r.o.Prefix + suffix, Hosts: joinHosts, Pods: 0, Backend: backend})
	if err != nil {
		return res, err
	}
	defer r.down(l)
	topo := l.Topology()

	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var recs []*recorder
	for _, h := range topo.Hosts {
		rec, err := record(rctx, h.NS, backend == "vxlan")
		if err != nil {
			return res, err
		}
		recs = append(recs, rec)
	}
	cli, err := l.EtcdClient()
	if err != nil {
		return res, err
	}
	defer cli.Close()

	used := map[netip.Prefix]bool{}
	for _, h := range topo.Hosts {
		if s, ok := l.Subnet(h.Name); ok {
			used[s] = true
		}
	}
	// Fresh subnets from the top of the network down, public IPs from
	// .101 of the underlay up: nothing the lab uses.
	var subnets []netip.Prefix
	for i := 255; i > 0 && len(subnets) < r.o.Joins; i-- {
		if s := nthSubnet(topo.Spec.Network, 24, i); !used[s] {
			subnets = append(subnets, s)
		}
	}
	if len(subnets) < r.o.Joins {
		return res, fmt.Errorf("only %d free subnets for %d joins", len(subnets), r.o.Joins)
	}
	underlay := topo.Segments[0].Net

	var joinMs, leaveMs []float64
	for i := range r.o.Joins {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		s := newSynth(i+1, subnets[i], nthAddr(underlay, 101+i%100), backend, topo.Spec.EtcdPrefix)
		if err := s.grant(ctx, cli); err != nil {
			return res, err
		}
		es := s.entries()

		t0 := time.Now()
		if err := s.put(ctx, cli); err != nil {
			return res, err
		}
		at, ok, err := waitChange(ctx, recs, es, true, t0, joinTimeout)
		if err != nil {
			return res, err
		}
		if ok {
			joinMs = append(joinMs, float64(at.Sub(t0).Microseconds())/1000)
		} else {
			res.Missed++
		}

		t1 := time.Now()
		if err := s.remove(ctx, cli); err != nil {
			return res, err
		}
		at, ok, err = waitChange(ctx, recs, es, false, t1, joinTimeout)
		if err != nil {
			return res, err
		}
		if ok {
			leaveMs = append(leaveMs, float64(at.Sub(t1).Microseconds())/1000)
		} else {
			res.Missed++
		}
		_, _ = cli.Revoke(ctx, s.id)
		// Let the agents' follow-up work (their own deletion notices)
		// settle so that joins do not overlap.
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return res, err
		}
	}
	res.JoinMs, res.LeaveMs = Summarize(joinMs), Summarize(leaveMs)
	r.say("  %s join p50 %.1f ms p99 %.1f ms, leave p50 %.1f ms p99 %.1f ms, %d missed",
		backend, res.JoinMs.P50, res.JoinMs.P99, res.LeaveMs.P50, res.LeaveMs.P99, res.Missed)
	return res, nil
}
