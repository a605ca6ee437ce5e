package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/weftnet/weft/internal/lab"
)

// udpFast measures the udp-fast subjects in interleaved rounds (see
// SectionUDPFast).
func (r *runner) udpFast(ctx context.Context) error {
	u := &UDPFast{Rounds: r.o.Rounds, TransferSeconds: r.o.Transfer.Seconds(), PingCount: r.o.PingCount, LoadBefore: loadAverage()}
	subjects := []struct {
		name, backend, suffix string
		args                  []string // the agents' extra flags
	}{
		{UDPFastVXLAN, "vxlan", "fvx", nil},
		{UDPFastOffload, "udp", "fuo", nil},
		{UDPFastBatch, "udp", "fub", []string{"--udp-offload=false"}},
	}
	r.say("udp fast path: %d subjects, %d rounds of iperf3 TCP×1, TCP×4 (%v each), %d pings idle and under one TCP stream",
		len(subjects), r.o.Rounds, r.o.Transfer, r.o.PingCount)

	var labs []*pathLab
	defer func() {
		for _, pl := range labs {
			if pl.server != nil {
				_ = pl.server.Process.Kill()
				_ = pl.server.Wait()
			}
			r.down(pl.l)
		}
	}()
	for _, s := range subjects {
		if err := ctx.Err(); err != nil {
			return err
		}
		l, err := r.up(ctx, lab.Spec{Prefix: r.o.Prefix + s.suffix, Hosts: 2, Pods: 1, Backend: s.backend, AgentArgs: s.args})
		if err != nil {
			r.fail("udp fast path "+s.name, err)
			continue
		}
		// preparePath knows the by-hand VXLAN by its data-path name.
		pl := &pathLab{name: s.name, l: l, agents: s.backend == "udp"}
		if s.name == UDPFastVXLAN {
			pl.name = PathVXLANByHand
		}
		labs = append(labs, pl)
		err = r.preparePath(ctx, pl)
		pl.name = s.name
		if err != nil {
			r.fail("udp fast path "+s.name, err)
			labs = labs[:len(labs)-1]
			if pl.server != nil {
				_ = pl.server.Process.Kill()
				_ = pl.server.Wait()
			}
			r.down(l)
		}
	}
	if len(labs) == 0 {
		return errors.New("udp fast path: no lab could be built")
	}

	samples := make(map[*pathLab][]UDPFastSample, len(labs))
	for round := range r.o.Rounds {
		order := make([]*pathLab, len(labs))
		for i := range labs {
			order[i] = labs[(i+round)%len(labs)]
		}
		for _, pl := range order {
			if err := ctx.Err(); err != nil {
				return err
			}
			s := r.udpFastRound(ctx, pl, round)
			samples[pl] = append(samples[pl], s)
			r.say("  round %d %-12s tcp1 %s  tcp4 %s  %s core·s/Gbit  rtt p50 %s  loaded %s, %s lost", round+1, pl.name,
				f("%.2f Gbit/s", s.TCP1Gbps), f("%.2f Gbit/s", s.TCP4Gbps), f("%.3f", s.CoreSecondsPerGbit),
				f("%.0f µs", s.RTTp50us), f("%.0f µs", s.LoadedRTTp50us), f("%.1f %%", s.LoadedLossPct))
		}
	}
	for _, pl := range labs {
		u.Subjects = append(u.Subjects, UDPFastSubject{Name: pl.name, Rounds: samples[pl]})
	}
	u.LoadAfter = loadAverage()
	u.summarize()
	r.res.UDPFast = u
	return nil
}

// udpFastRound measures one round of one subject; what fails is recorded
// and left missing.
func (r *runner) udpFastRound(ctx context.Context, pl *pathLab, round int) UDPFastSample {
	s := UDPFastSample{NaN, NaN, NaN, NaN, NaN, NaN}
	what := func(test string) string { return fmt.Sprintf("udp fast path %s round %d %s", pl.name, round+1, test) }
	var cpu, gbit float64
	for _, streams := range []int{1, 4} {
		before := r.agentsCPU(pl)
		gbps, moved, err := r.tcpMoved(ctx, pl, streams, r.o.Transfer)
		if err != nil {
			r.fail(what(fmt.Sprintf("tcp%d", streams)), err)
			continue
		}
		cpu += r.agentsCPU(pl) - before
		gbit += moved
		if streams == 1 {
			s.TCP1Gbps = gbps
		} else {
			s.TCP4Gbps = gbps
		}
	}
	if pl.agents && gbit > 0 {
		s.CoreSecondsPerGbit = Num(cpu / gbit)
	}
	if st, err := r.pings(ctx, pl); err != nil {
		r.fail(what("ping"), err)
	} else {
		s.RTTp50us = Num(Percentile(st.RTTsMs, 50) * 1000)
	}
	// Pings under load: one TCP stream for the pings' duration and a
	// second on each side of it.
	load := time.Duration(r.o.PingCount)*10*time.Millisecond + 2*time.Second
	var wg sync.WaitGroup
	var loadErr error
	wg.Go(func() { _, _, loadErr = r.tcpMoved(ctx, pl, 1, load) })
	if err := sleep(ctx, time.Second); err == nil {
		st, err := r.pings(ctx, pl)
		if err != nil {
			r.fail(what("ping under load"), err)
		} else {
			s.LoadedRTTp50us = Num(Percentile(st.RTTsMs, 50) * 1000)
			if st.Sent > 0 {
				s.LoadedLossPct = Num(100 * float64(st.Lost()) / float64(st.Sent))
			}
		}
	}
	wg.Wait()
	if loadErr != nil {
		r.fail(what("load for the pings"), loadErr)
	}
	return s
}

// tcpMoved runs one iperf3 TCP test of the given streams and length and
// returns the receiver's Gbit/s and the gigabits it received.
func (r *runner) tcpMoved(ctx context.Context, pl *pathLab, streams int, d time.Duration) (gbps Num, gbit float64, err error) {
	secs := strconv.Itoa(max(1, int(d.Round(time.Second).Seconds())))
	args := append([]string{"iperf3", "-c", pl.dst.String(), "-J", "-t", secs, "-P", strconv.Itoa(streams)}, clientCPU()...)
	out, err := r.iperf(ctx, pl, args)
	if err != nil {
		return NaN, 0, err
	}
	rep, err := parseIperf(out)
	if err != nil {
		return NaN, 0, err
	}
	sr := rep.End.SumReceived
	if sr.Seconds <= 0 || sr.Bytes <= 0 {
		return NaN, 0, errors.New("iperf3 reported no data received")
	}
	return Num(sr.Bytes * 8 / sr.Seconds / 1e9), sr.Bytes * 8 / 1e9, nil
}

// pings sends PingCount pings at 10 ms from the source pod to the
// destination pod.
func (r *runner) pings(ctx context.Context, pl *pathLab) (PingStats, error) {
	cctx, cancel := context.WithTimeout(ctx, time.Duration(r.o.PingCount)*20*time.Millisecond+10*time.Second)
	defer cancel()
	out, err := inNS(cctx, pl.src, "ping", "-n", "-i", "0.01", "-W", "1", "-c", strconv.Itoa(r.o.PingCount), pl.dst.String())
	st, perr := ParsePing(out)
	if perr != nil {
		return st, errors.Join(err, perr)
	}
	if len(st.RTTsMs) == 0 {
		return st, fmt.Errorf("no ping replies from %s", pl.dst)
	}
	return st, nil
}

// loadAverage is the 1-minute load average, NaN when unreadable.
func loadAverage() Num {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return NaN
	}
	fs := strings.Fields(string(b))
	if len(fs) == 0 {
		return NaN
	}
	v, err := strconv.ParseFloat(fs[0], 64)
	if err != nil {
		return NaN
	}
	return Num(v)
}
