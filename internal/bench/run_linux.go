package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/version"
)

// Run builds the labs of the selected sections one section at a time,
// measures, tears each down, and returns what it measured. A section (or
// one backend of it) that fails is recorded in Result.Errors and the run
// goes on; the error is then non-nil too, with the result still returned.
// A nil Result means nothing ran (bad options, missing tools).
func Run(ctx context.Context, o Options) (*Result, error) {
	o, err := o.resolve()
	if err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("weft lab bench needs root for network namespaces: run it with sudo")
	}
	tools := []string{"ip"}
	if o.has(SectionDataPath) || o.has(SectionUDPFast) {
		tools = append(tools, "iperf3", "ping", "bridge")
	}
	if o.has(SectionRestart) {
		tools = append(tools, "ping")
	}
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			return nil, fmt.Errorf("weft lab bench needs %s: %w", t, err)
		}
	}

	r := &runner{o: o, res: &Result{
		Machine: machine(),
		Settings: Settings{
			Sections:        o.Sections,
			Backends:        o.Backends,
			Rounds:          o.Rounds,
			TransferSeconds: o.Transfer.Seconds(),
			PingCount:       o.PingCount,
			Joins:           o.Joins,
			Leases:          o.Leases,
			ChurnRate:       o.ChurnRate,
			ChurnSeconds:    o.ChurnTime.Seconds(),
		},
		Started: time.Now().UTC(),
	}}
	start := time.Now()
	steps := []struct {
		on  bool
		run func(context.Context) error
	}{
		{o.has(SectionDataPath), r.dataPath},
		{o.has(SectionJoin), r.joins},
		{o.has(SectionScale) || o.has(SectionChurn), r.scale},
		{o.has(SectionRestart), r.restarts},
		{o.has(SectionRules), r.rulesResync},
		{o.has(SectionUDPFast), r.udpFast},
	}
	for _, s := range steps {
		if !s.on {
			continue
		}
		if err := ctx.Err(); err != nil {
			r.fail("run", err)
			break
		}
		if err := s.run(ctx); err != nil {
			r.fail("", err)
		}
	}
	r.res.Elapsed = Num(time.Since(start).Seconds())
	r.res.Targets = Targets(r.res)
	if n := len(r.res.Errors); n > 0 {
		return r.res, fmt.Errorf("%d part(s) of the benchmark failed (see the errors below the tables)", n)
	}
	return r.res, nil
}

// runner is one run's state.
type runner struct {
	o   Options
	res *Result
	mu  sync.Mutex // guards res.Errors and the output
}

func (r *runner) say(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.o.Out, format+"\n", args...)
}

// fail records a failed part; the run goes on.
func (r *runner) fail(what string, err error) {
	msg := err.Error()
	if what != "" {
		msg = what + ": " + msg
	}
	r.say("FAILED: %s", msg)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.res.Errors = append(r.res.Errors, msg)
}

// up builds a lab for the benchmarks: the lab's own progress goes to the
// debug log only.
func (r *runner) up(ctx context.Context, spec lab.Spec) (*lab.Lab, error) {
	spec.StateRoot = r.o.StateRoot
	t0 := time.Now()
	l, err := lab.Up(ctx, lab.Options{
		Spec:         spec,
		WeftBinary:   r.o.WeftBinary,
		CNIBinDir:    r.o.CNIBinDir,
		ReadyTimeout: 60 * time.Second,
		Log:          r.o.Log,
	})
	if err != nil {
		return nil, fmt.Errorf("build lab %s (%s): %w", spec.Prefix, spec.Backend, err)
	}
	r.say("  lab %s up: %d hosts, %s (%.1fs)", spec.Prefix, spec.Hosts, spec.Backend, time.Since(t0).Seconds())
	return l, nil
}

// down tears a lab down, recording a failure.
func (r *runner) down(l *lab.Lab) {
	if l == nil {
		return
	}
	if r.o.LogDir != "" {
		r.saveLogs(l)
	}
	if err := l.Down(); err != nil {
		r.fail("tear down lab "+l.Topology().Spec.Prefix, err)
	}
}

// saveLogs copies the lab's agent logs into LogDir.
func (r *runner) saveLogs(l *lab.Lab) {
	topo := l.Topology()
	if err := os.MkdirAll(r.o.LogDir, 0o755); err != nil {
		r.fail("save agent logs", err)
		return
	}
	for _, h := range topo.Hosts {
		dst := filepath.Join(r.o.LogDir, topo.Spec.Prefix+"-"+h.Name+".log")
		if err := os.WriteFile(dst, []byte(l.AgentLog(h.Name)), 0o644); err != nil {
			r.fail("save agent logs", err)
		}
	}
}

// inNS runs a command inside a namespace and returns its stdout; the error
// carries stderr.
func inNS(ctx context.Context, ns string, argv ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, argv...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%s in netns %s: %w: %s", strings.Join(argv, " "), ns, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat;
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// usage is a process's CPU time and memory at one moment.
type usage struct {
	cpu float64 // seconds of utime+stime, waited-for children included
	Mem
}

func procUsage(pid int) (usage, error) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return usage{}, err
	}
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return usage{}, err
	}
	ticks, err := ProcCPU(stat)
	if err != nil {
		return usage{}, err
	}
	m, err := ProcMem(status)
	if err != nil {
		return usage{}, err
	}
	return usage{cpu: float64(ticks) / clockTicks, Mem: m}, nil
}

// agentUsage reads a lab host's agent's usage.
func agentUsage(l *lab.Lab, host string) (usage, error) {
	pid, ok := l.AgentPID(host)
	if !ok {
		return usage{}, fmt.Errorf("no agent running on %s", host)
	}
	return procUsage(pid)
}

// machine describes this machine.
func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), Weft: version.Version}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	return m
}

// sleep waits d or until ctx is done.
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
