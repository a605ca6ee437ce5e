package faults

import (
	"bytes"
	"fmt"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/weftnet/weft/internal/bench"
)

// pingPair is one pod→pod direction pinged during a row.
type pingPair struct {
	SrcNS   string
	Src     string // pod name, for messages
	Dst     string
	DstAddr netip.Addr
}

// pinger is `ping -D -i 0.01` for each pair, as the bench's restart
// section runs it, read back with bench.ParsePing. -D stamps each reply,
// which gives the longest silence of a pair: the data plane's outage.
type pinger struct {
	pairs []pingPair
	cmds  []*exec.Cmd
	outs  []*bytes.Buffer
}

func startPings(pairs []pingPair) (*pinger, error) {
	p := &pinger{pairs: pairs}
	for _, pr := range pairs {
		var out bytes.Buffer
		cmd := exec.Command("ip", "netns", "exec", pr.SrcNS, "ping", "-D", "-n", "-i", "0.01", "-W", "1", pr.DstAddr.String())
		cmd.Stdout = &out
		if err := cmd.Start(); err != nil {
			p.stop()
			return nil, fmt.Errorf("start ping %s→%s: %w", pr.Src, pr.Dst, err)
		}
		p.cmds = append(p.cmds, cmd)
		p.outs = append(p.outs, &out)
	}
	return p, nil
}

// pingResult is what the pings of one row saw.
type pingResult struct {
	Sent, Lost int
	// Gap is the longest time between two replies of one pair, or from
	// the first reply to the end when replies stopped; LastGapEnd is when
	// that silence ended (zero if it never did).
	Gap        time.Duration
	GapEnd     time.Time
	Unanswered []string // pairs with no reply at all
}

var stamp = regexp.MustCompile(`^\[(\d+)\.(\d+)\]`)

// stop ends the pings (SIGINT makes ping print its summary) and adds up
// what they saw.
func (p *pinger) stop() (pingResult, error) {
	var wg sync.WaitGroup
	for _, c := range p.cmds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// `ip netns exec` execs ping in place: this is ping's pid.
			_ = c.Process.Signal(syscall.SIGINT)
			_ = c.Wait()
		}()
	}
	wg.Wait()
	end := time.Now()
	var res pingResult
	for i, out := range p.outs {
		st, err := bench.ParsePing(out.Bytes())
		if err != nil {
			return res, fmt.Errorf("ping %s→%s: %w", p.pairs[i].Src, p.pairs[i].Dst, err)
		}
		res.Sent += st.Sent
		res.Lost += st.Lost()
		times := replyTimes(out.Bytes())
		if len(times) == 0 {
			res.Unanswered = append(res.Unanswered, p.pairs[i].Src+"→"+p.pairs[i].Dst)
			continue
		}
		times = append(times, end)
		for j := 1; j < len(times); j++ {
			if g := times[j].Sub(times[j-1]); g > res.Gap {
				res.Gap = g
				res.GapEnd = times[j]
				if j == len(times)-1 {
					res.GapEnd = time.Time{}
				}
			}
		}
	}
	return res, nil
}

// replyTimes are the -D stamps of the reply lines, in order.
func replyTimes(out []byte) []time.Time {
	var ts []time.Time
	for _, line := range bytes.Split(out, []byte("\n")) {
		if !bytes.Contains(line, []byte("icmp_seq=")) || !bytes.Contains(line, []byte("time=")) || bytes.Contains(line, []byte("DUP!")) {
			continue
		}
		m := stamp.FindSubmatch(line)
		if m == nil {
			continue
		}
		sec, err1 := strconv.ParseInt(string(m[1]), 10, 64)
		frac := string(m[2])
		for len(frac) < 9 {
			frac += "0"
		}
		ns, err2 := strconv.ParseInt(frac[:9], 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		ts = append(ts, time.Unix(sec, ns))
	}
	return ts
}
