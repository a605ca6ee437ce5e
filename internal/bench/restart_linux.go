package bench

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"syscall"
	"time"

	"github.com/weftnet/weft/internal/lab"
)

// restarts measures ping loss across agent restarts for every backend.
func (r *runner) restarts(ctx context.Context) error {
	for _, b := range r.o.Backends {
		if err := ctx.Err(); err != nil {
			return err
		}
		suffix := map[string]string{"host-gw": "rhgw", "vxlan": "rvx", "udp": "rudp", "wireguard": "rwg"}[b]
		l, err := r.up(ctx, lab.Spec{Prefix: r.o.Prefix + suffix, Hosts: 2, Pods: 1, Backend: b})
		if err != nil {
			r.fail("restart "+b, err)
			continue
		}
		for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
			res, err := r.restartOnce(ctx, l, b, sig)
			if err != nil {
				r.fail(fmt.Sprintf("restart %s %s", b, sigName(sig)), err)
				continue
			}
			r.res.Restart = append(r.res.Restart, res)
		}
		r.down(l)
	}
	return nil
}

func sigName(sig syscall.Signal) string {
	if sig == syscall.SIGKILL {
		return "SIGKILL"
	}
	return "SIGTERM"
}

// restartOnce pings from h1p1 to h2p1 every 10 ms while h1's agent and
// then h2's are stopped with sig and started again (each waited for until
// it is ready), with a second of traffic before, between and after.
func (r *runner) restartOnce(ctx context.Context, l *lab.Lab, backend string, sig syscall.Signal) (Restart, error) {
	res := Restart{Backend: backend, Signal: sigName(sig), RestartMs: NaN}
	topo := l.Topology()
	src, dst := topo.Hosts[0].Pods[0], topo.Hosts[1].Pods[0]
	dstAddr, ok := l.PodAddr(dst.Name)
	if !ok {
		return res, fmt.Errorf("no address for pod %s", dst.Name)
	}
	if _, err := lab.Ping(ctx, src.NS, dstAddr); err != nil {
		return res, fmt.Errorf("pods do not reach each other before the restarts: %w", err)
	}
	var out bytes.Buffer
	ping := exec.Command("ip", "netns", "exec", src.NS, "ping", "-n", "-i", "0.01", "-W", "1", dstAddr.String())
	ping.Stdout = &out
	if err := ping.Start(); err != nil {
		return res, fmt.Errorf("start ping in %s: %w", src.NS, err)
	}
	stopPing := func() {
		// `ip netns exec` execs ping in place, so this is ping's pid;
		// SIGINT makes it print its summary.
		_ = ping.Process.Signal(syscall.SIGINT)
		_ = ping.Wait()
	}
	var longest time.Duration
	err := func() error {
		if err := sleep(ctx, time.Second); err != nil {
			return err
		}
		for _, h := range topo.Hosts {
			t0 := time.Now()
			if err := l.StopAgent(h.Name, sig); err != nil {
				return err
			}
			if err := l.StartAgent(ctx, h.Name); err != nil {
				return err
			}
			longest = max(longest, time.Since(t0))
			if err := sleep(ctx, time.Second); err != nil {
				return err
			}
		}
		return nil
	}()
	stopPing()
	if err != nil {
		return res, err
	}
	st, err := ParsePing(out.Bytes())
	if err != nil {
		return res, err
	}
	res.Sent, res.Received, res.Lost = st.Sent, st.Received, st.Lost()
	res.RestartMs = Num(float64(longest.Microseconds()) / 1000)
	r.say("restart: %s %s: %d of %d pings lost, longest restart %.0f ms", backend, res.Signal, res.Lost, res.Sent, float64(res.RestartMs))
	return res, nil
}
