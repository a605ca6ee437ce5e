package bench

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/subnetenv"
)

// pathLab is one data-path subject: a lab of two hosts with one pod each,
// measured from h1p1 to h2p1.
type pathLab struct {
	name    string
	l       *lab.Lab
	agents  bool
	src     string      // h1p1's namespace
	dst     netip.Addr  // h2p1's address
	server  *exec.Cmd   // iperf3 -s in h2p1
	procs   []*exec.Cmd // what the subject runs instead of agents (wireguard-go)
	samples []PathSample
}

// dataPath measures every data-path subject in interleaved rounds.
func (r *runner) dataPath(ctx context.Context) error {
	type subject struct {
		name, backend, suffix string
		agents                bool
	}
	subjects := []subject{{PathBaseline, "host-gw", "base", false}}
	if r.o.hasBackend("host-gw") {
		subjects = append(subjects, subject{PathBaselineAgain, "host-gw", "bas2", false},
			subject{PathHostGW, "host-gw", "hgw", true}, subject{PathHostGWMasq, "host-gw", "hgwm", true})
	}
	if r.o.hasBackend("vxlan") {
		subjects = append(subjects, subject{PathVXLAN, "vxlan", "vx", true}, subject{PathVXLANByHand, "vxlan", "vxh", false})
	}
	if r.o.hasBackend("udp") {
		subjects = append(subjects, subject{PathUDP, "udp", "udp", true})
	}
	if r.o.hasBackend("wireguard") {
		subjects = append(subjects, subject{PathWireGuard, "wireguard", "wg", true})
		if wireguardGoBinary(r.o.WeftBinary) != "" {
			subjects = append(subjects, subject{PathWireGuardGo, "wireguard", "wgg", false})
		} else {
			r.say("data path: no wireguard-go binary on PATH or beside weft; the wireguard row has no standalone reference")
		}
	}
	if r.o.IPv6 {
		subjects = append(subjects, subject{PathBaselineV6, "host-gw", "b6", false})
		if r.o.hasBackend("host-gw") {
			subjects = append(subjects, subject{PathHostGWV6, "host-gw", "hgw6", true})
		}
		if r.o.hasBackend("vxlan") {
			subjects = append(subjects, subject{PathVXLANV6, "vxlan", "vx6", true})
		}
		if r.o.hasBackend("wireguard") {
			subjects = append(subjects, subject{PathWireGuardV6, "wireguard", "wg6", true})
		}
	}
	r.say("data path: %d subjects, %d rounds of iperf3 TCP×1, TCP×4, UDP (%v each) and %d pings", len(subjects), r.o.Rounds, r.o.Transfer, r.o.PingCount)

	var labs []*pathLab
	defer func() {
		for _, pl := range labs {
			if pl.server != nil {
				_ = pl.server.Process.Kill()
				_ = pl.server.Wait()
			}
			for _, p := range pl.procs {
				_ = p.Process.Kill()
				_ = p.Wait()
			}
			r.down(pl.l)
		}
	}()
	for _, s := range subjects {
		if err := ctx.Err(); err != nil {
			return err
		}
		spec := lab.Spec{Prefix: r.o.Prefix + s.suffix, Hosts: 2, Pods: 1, Backend: s.backend, IPMasq: s.name == PathHostGWMasq}
		if isIPv6Path(s.name) {
			spec.IPFamily = lab.FamilyDual
		}
		l, err := r.up(ctx, spec)
		if err != nil {
			r.fail("data path "+s.name, err)
			continue
		}
		pl := &pathLab{name: s.name, l: l, agents: s.agents}
		labs = append(labs, pl)
		if err := r.preparePath(ctx, pl); err != nil {
			r.fail("data path "+s.name, err)
			labs = labs[:len(labs)-1]
			if pl.server != nil {
				_ = pl.server.Process.Kill()
				_ = pl.server.Wait()
			}
			for _, p := range pl.procs {
				_ = p.Process.Kill()
				_ = p.Wait()
			}
			r.down(l)
		}
	}
	if len(labs) == 0 {
		return errors.New("data path: no lab could be built")
	}

	for round := range r.o.Rounds {
		// Rotate the order every round so that no subject always runs
		// right after the same neighbour or first in a round.
		order := make([]*pathLab, len(labs))
		for i := range labs {
			order[i] = labs[(i+round)%len(labs)]
		}
		cur := make(map[*pathLab]*PathSample, len(labs))
		cpu := make(map[*pathLab]float64, len(labs))
		for _, pl := range labs {
			cur[pl] = &PathSample{NaN, NaN, NaN, NaN, NaN, NaN, NaN, NaN}
		}
		for _, test := range []string{"tcp1", "tcp4", "udp", "ping"} {
			for _, pl := range order {
				if err := ctx.Err(); err != nil {
					return err
				}
				before := r.agentsCPU(pl)
				if err := r.pathTest(ctx, pl, test, cur[pl]); err != nil {
					r.fail(fmt.Sprintf("data path %s round %d %s", pl.name, round+1, test), err)
				}
				if test != "ping" {
					cpu[pl] += r.agentsCPU(pl) - before
				}
			}
		}
		for _, pl := range labs {
			s := cur[pl]
			if pl.agents {
				s.AgentCPUSeconds = Num(cpu[pl])
				s.AgentRSSMiB = r.agentsRSS(pl)
			}
			pl.samples = append(pl.samples, *s)
			r.say("  round %d %-13s tcp1 %s  tcp4 %s  udp %s  rtt p50 %s p99 %s  cpu %s  rss %s", round+1, pl.name,
				f("%.2f Gbit/s", s.TCP1Gbps), f("%.2f Gbit/s", s.TCP4Gbps), f("%.0f kpps", s.UDPpps/1000),
				f("%.0f µs", s.RTTp50us), f("%.0f µs", s.RTTp99us), f("%.2f s", s.AgentCPUSeconds), f("%.1f MiB", s.AgentRSSMiB))
		}
	}

	d := &DataPath{Rounds: r.o.Rounds, TransferSeconds: r.o.Transfer.Seconds(), PingCount: r.o.PingCount}
	for _, pl := range labs {
		d.Backends = append(d.Backends, PathBackend{Name: pl.name, Agent: pl.agents, Rounds: pl.samples})
	}
	d.Summarize()
	r.res.DataPath = d
	return nil
}

// preparePath turns a fresh lab into its subject (stopping the agents and
// programming by hand where there is to be no agent), checks that the pods
// reach each other, and starts the iperf3 server.
func (r *runner) preparePath(ctx context.Context, pl *pathLab) error {
	topo := pl.l.Topology()
	src, dst := topo.Hosts[0].Pods[0], topo.Hosts[1].Pods[0]
	pl.src = src.NS
	podAddr := pl.l.PodAddr
	if isIPv6Path(pl.name) {
		podAddr = pl.l.PodAddr6
	}
	var ok bool
	if pl.dst, ok = podAddr(dst.Name); !ok {
		return fmt.Errorf("no address for pod %s", dst.Name)
	}
	switch pl.name {
	case PathBaseline, PathBaselineAgain:
		if err := stopAgents(pl.l); err != nil {
			return err
		}
		if err := handRoutes(ctx, pl.l); err != nil {
			return err
		}
	case PathBaselineV6:
		if err := stopAgents(pl.l); err != nil {
			return err
		}
		if err := handRoutes6(ctx, pl.l); err != nil {
			return err
		}
	case PathVXLANByHand:
		if err := stopAgents(pl.l); err != nil {
			return err
		}
		if err := handVXLAN(ctx, pl.l); err != nil {
			return err
		}
	case PathWireGuardGo:
		if err := stopAgents(pl.l); err != nil {
			return err
		}
		procs, err := handWireGuardGo(ctx, pl.l, wireguardGoBinary(r.o.WeftBinary))
		if err != nil {
			return err
		}
		pl.procs = procs
	}
	srcAddr, _ := podAddr(src.Name)
	for _, p := range []struct {
		ns string
		to netip.Addr
	}{{src.NS, pl.dst}, {dst.NS, srcAddr}} {
		if _, err := lab.Ping(ctx, p.ns, p.to); err != nil {
			return fmt.Errorf("%s: pods do not reach each other before measuring: %w", pl.name, err)
		}
	}
	pl.server = exec.Command("ip", append([]string{"netns", "exec", dst.NS, "iperf3", "-s"}, serverCPU()...)...)
	if err := pl.server.Start(); err != nil {
		pl.server = nil
		return fmt.Errorf("start iperf3 server in %s: %w", dst.NS, err)
	}
	return nil
}

// stopAgents stops every agent of the lab; what they programmed stays.
func stopAgents(l *lab.Lab) error {
	for _, h := range l.Topology().Hosts {
		if err := l.StopAgent(h.Name, syscall.SIGTERM); err != nil {
			return err
		}
	}
	return nil
}

// flushRules removes the netfilter rules the agent installed, so that a
// subject without agent runs without weft's rules (and without the
// connection tracking its nat chains turn on). A host without nft has no
// rules of weft's nftables-based iptables either.
func flushRules(ctx context.Context, ns string) error {
	if _, err := exec.LookPath("nft"); err != nil {
		return nil
	}
	_, err := inNS(ctx, ns, "nft", "flush", "ruleset")
	return err
}

// handRoutes makes the no-agent baseline: weft's rules gone (unless
// keepRules) and its routes replaced by plain static routes, exactly what
// host-gw would install, typed by hand:
//
//	ip route replace <peer subnet> via <peer eth0 address> dev eth0
func handRoutes(ctx context.Context, l *lab.Lab) error {
	hosts := l.Topology().Hosts
	for _, h := range hosts {
		if err := flushRules(ctx, h.NS); err != nil {
			return err
		}
		if _, err := inNS(ctx, h.NS, "ip", "route", "flush", "proto", "87"); err != nil {
			return err
		}
		for _, g := range hosts {
			if g.Name == h.Name {
				continue
			}
			sub, ok := l.Subnet(g.Name)
			if !ok {
				return fmt.Errorf("no subnet for %s", g.Name)
			}
			if _, err := inNS(ctx, h.NS, "ip", "route", "replace", sub.String(), "via", g.Addr.Addr().String(), "dev", h.Iface); err != nil {
				return err
			}
		}
	}
	return nil
}

// handRoutes6 is handRoutes for IPv6, the baseline of the IPv6 rows: the
// agents' IPv6 routes replaced by the ones host-gw would install, typed
// by hand (the IPv4 ones stay as the agents left them):
//
//	ip -6 route replace <peer IPv6 subnet> via <peer eth0 IPv6 address> dev eth0
func handRoutes6(ctx context.Context, l *lab.Lab) error {
	hosts := l.Topology().Hosts
	for _, h := range hosts {
		if err := flushRules(ctx, h.NS); err != nil {
			return err
		}
		if _, err := inNS(ctx, h.NS, "ip", "-6", "route", "flush", "proto", "87"); err != nil {
			return err
		}
		for _, g := range hosts {
			if g.Name == h.Name {
				continue
			}
			sub, ok := l.Subnet6(g.Name)
			if !ok || !g.Addr6.IsValid() {
				return fmt.Errorf("no IPv6 subnet or address for %s", g.Name)
			}
			if _, err := inNS(ctx, h.NS, "ip", "-6", "route", "replace", sub.String(), "via", g.Addr6.Addr().String(), "dev", h.Iface); err != nil {
				return err
			}
		}
	}
	return nil
}

// handVXLAN replaces the agent's flannel.1 with the same VXLAN typed by
// hand, the reference vxlan is measured against:
//
//	ip link add vxlan0 address <mac> mtu 1450 type vxlan id 1 dev eth0 local <addr> dstport 8472 nolearning
//	ip addr add <own subnet>.0/32 dev vxlan0; ip link set vxlan0 up
//	ip neigh replace <peer subnet>.0 lladdr <peer mac> dev vxlan0 nud permanent
//	bridge fdb replace <peer mac> dev vxlan0 dst <peer eth0 address> self permanent
//	ip route replace <peer subnet> via <peer subnet>.0 dev vxlan0 onlink
func handVXLAN(ctx context.Context, l *lab.Lab) error {
	hosts := l.Topology().Hosts
	mac := func(i int) string { return fmt.Sprintf("0e:77:68:61:6e:%02x", i+1) }
	for i, h := range hosts {
		sub, ok := l.Subnet(h.Name)
		if !ok {
			return fmt.Errorf("no subnet for %s", h.Name)
		}
		env, err := subnetenv.Read(h.SubnetFile)
		if err != nil {
			return err
		}
		if err := flushRules(ctx, h.NS); err != nil {
			return err
		}
		cmds := [][]string{
			{"ip", "link", "del", "flannel.1"},
			{"ip", "route", "flush", "proto", "87"},
			{"ip", "link", "add", "vxlan0", "address", mac(i), "mtu", strconv.Itoa(env.MTU), "type", "vxlan", "id", "1",
				"dev", h.Iface, "local", h.Addr.Addr().String(), "dstport", "8472", "nolearning"},
			{"ip", "addr", "add", sub.Addr().String() + "/32", "dev", "vxlan0"},
			{"ip", "link", "set", "vxlan0", "up"},
		}
		for j, g := range hosts {
			if g.Name == h.Name {
				continue
			}
			gs, ok := l.Subnet(g.Name)
			if !ok {
				return fmt.Errorf("no subnet for %s", g.Name)
			}
			gw := gs.Addr().String()
			cmds = append(cmds,
				[]string{"ip", "neigh", "replace", gw, "lladdr", mac(j), "dev", "vxlan0", "nud", "permanent"},
				[]string{"bridge", "fdb", "replace", mac(j), "dev", "vxlan0", "dst", g.Addr.Addr().String(), "self", "permanent"},
				[]string{"ip", "route", "replace", gs.String(), "via", gw, "dev", "vxlan0", "onlink"},
			)
		}
		for _, c := range cmds {
			if _, err := inNS(ctx, h.NS, c...); err != nil {
				return err
			}
		}
	}
	return nil
}

// pathTest runs one test and fills its fields of s.
func (r *runner) pathTest(ctx context.Context, pl *pathLab, test string, s *PathSample) error {
	secs := strconv.Itoa(int(r.o.Transfer.Round(time.Second).Seconds()))
	base := append([]string{"iperf3", "-c", pl.dst.String(), "-J", "-t", secs}, clientCPU()...)
	if r.o.Transfer >= 3*time.Second {
		// Leave TCP's slow start out of the average (an extra second).
		base = append(base, "-O", "1")
	}
	switch test {
	case "tcp1", "tcp4":
		args := base
		if test == "tcp4" {
			args = append(args, "-P", "4")
		}
		out, err := r.iperf(ctx, pl, args)
		if err != nil {
			return err
		}
		v, err := IperfTCP(out)
		if err != nil {
			return err
		}
		if test == "tcp1" {
			s.TCP1Gbps = v
		} else {
			s.TCP4Gbps = v
		}
	case "udp":
		const datagram = 1400
		out, err := r.iperf(ctx, pl, append(base, "-u", "-l", strconv.Itoa(datagram), "-b", "0"))
		if err != nil {
			return err
		}
		pps, loss, err := IperfUDP(out, datagram)
		if err != nil {
			return err
		}
		s.UDPpps, s.UDPLossPct = pps, loss
	case "ping":
		cctx, cancel := context.WithTimeout(ctx, time.Duration(r.o.PingCount)*20*time.Millisecond+10*time.Second)
		defer cancel()
		out, err := inNS(cctx, pl.src, "ping", "-n", "-i", "0.01", "-W", "1", "-c", strconv.Itoa(r.o.PingCount), pl.dst.String())
		st, perr := ParsePing(out)
		if perr != nil {
			return errors.Join(err, perr)
		}
		if len(st.RTTsMs) == 0 {
			return fmt.Errorf("no ping replies from %s", pl.dst)
		}
		s.RTTp50us = Num(Percentile(st.RTTsMs, 50) * 1000)
		s.RTTp99us = Num(Percentile(st.RTTsMs, 99) * 1000)
	}
	return nil
}

// iperf runs an iperf3 client in the source pod. A server still finishing
// the previous test answers "busy"; that is retried.
func (r *runner) iperf(ctx context.Context, pl *pathLab, args []string) ([]byte, error) {
	var lastErr error
	for range 5 {
		cctx, cancel := context.WithTimeout(ctx, r.o.Transfer+30*time.Second)
		out, err := inNS(cctx, pl.src, args...)
		cancel()
		if err == nil {
			return out, nil
		}
		lastErr = err
		if _, perr := parseIperf(out); perr != nil && strings.Contains(perr.Error(), "busy") {
			if err := sleep(ctx, 500*time.Millisecond); err != nil {
				return nil, err
			}
			continue
		}
		if _, perr := parseIperf(out); perr != nil {
			return nil, errors.Join(err, perr)
		}
		return nil, err
	}
	return nil, lastErr
}

// agentsCPU is the summed CPU seconds of a subject's agents (0 without).
func (r *runner) agentsCPU(pl *pathLab) float64 {
	if !pl.agents {
		return 0
	}
	var sum float64
	for _, h := range pl.l.Topology().Hosts {
		if u, err := agentUsage(pl.l, h.Name); err == nil {
			sum += u.cpu
		}
	}
	return sum
}

// agentsRSS is the larger VmRSS of a subject's agents.
func (r *runner) agentsRSS(pl *pathLab) Num {
	out := NaN
	for _, h := range pl.l.Topology().Hosts {
		if u, err := agentUsage(pl.l, h.Name); err == nil && (!out.OK() || u.RSS > out) {
			out = u.RSS
		}
	}
	return out
}

// clientCPU and serverCPU pin iperf3's two ends to different CPUs when
// there are two or more. Left to the scheduler, the ends (and the softirq
// work each one's sends cause) share a CPU in some transfers and not in
// others, which alone moves single-stream throughput by 20 % between
// otherwise identical runs.
func clientCPU() []string {
	if runtime.NumCPU() < 2 {
		return nil
	}
	return []string{"-A", "0"}
}

func serverCPU() []string {
	if runtime.NumCPU() < 2 {
		return nil
	}
	return []string{"-A", "1"}
}
