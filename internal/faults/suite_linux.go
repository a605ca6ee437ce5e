package faults

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/weftnet/weft/internal/lab"
)

// fault is one row of the suite: a name and a body that injects the
// fault into a running lab and measures it.
type fault struct {
	id    string
	text  string
	build func(ctx context.Context, e *env, p *probe) error
	// setup, when set, prepares the lab before the pings start; what it
	// costs is not the fault's.
	setup func(ctx context.Context, e *env) error
	// goal, when set, replaces RepairGoal for this row: for a time the
	// fault itself bounds, such as reconnecting after an outage (say why
	// where it is set).
	goal time.Duration
	// noHeal skips waiting for the lab to answer again after the row: it
	// is the last of its lab, which may stay broken.
	noHeal bool
}

// labPlan is one lab and the faults run on it, in order (destructive
// ones last).
type labPlan struct {
	suffix string
	spec   lab.Spec
	faults []fault
}

type suite struct {
	o    Options
	rows []Row
}

func (s *suite) say(format string, args ...any) { fmt.Fprintf(s.o.Out, format+"\n", args...) }

func (s *suite) selected(id string) bool {
	if len(s.o.Only) == 0 {
		return true
	}
	for _, o := range s.o.Only {
		if strings.Contains(id, o) {
			return true
		}
	}
	return false
}

// Run builds the labs, runs every selected fault and returns the rows.
// The error is for the suite's own failures (a lab that cannot be built),
// not for rows that miss the goal.
func Run(ctx context.Context, o Options) ([]Row, error) {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	s := &suite{o: o}
	var errs []error
	for _, lp := range plans(o) {
		var fs []fault
		for _, f := range lp.faults {
			if s.selected(f.id) {
				fs = append(fs, f)
			}
		}
		if len(fs) == 0 {
			continue
		}
		if err := ctx.Err(); err != nil {
			return s.rows, err
		}
		if err := s.runLab(ctx, lp, fs); err != nil {
			errs = append(errs, err)
		}
	}
	return s.rows, errors.Join(errs...)
}

func (s *suite) runLab(ctx context.Context, lp labPlan, fs []fault) error {
	spec := lp.spec
	spec.Prefix = s.o.Prefix + lp.suffix
	spec.StateRoot = s.o.StateRoot
	t0 := time.Now()
	l, err := lab.Up(ctx, lab.Options{Spec: spec, WeftBinary: s.o.WeftBinary, CNIBinDir: s.o.CNIBinDir, Log: s.o.Log, KeepNeighThresholds: true})
	if err != nil {
		for _, f := range fs {
			s.rows = append(s.rows, Row{ID: f.id, Fault: f.text, Backend: spec.Backend, Err: fmt.Errorf("build lab: %w", err), Gap: s.o.Gaps[f.id]})
		}
		return fmt.Errorf("lab %s: %w", spec.Prefix, err)
	}
	s.say("lab %s up: %d hosts, %s%s (%.1fs)", spec.Prefix, spec.Hosts, spec.Backend, map[bool]string{true: ", --ip-masq"}[spec.IPMasq], time.Since(t0).Seconds())
	defer func() {
		if err := l.Down(); err != nil {
			s.say("lab %s: teardown: %v", spec.Prefix, err)
		}
	}()
	cli, err := l.EtcdClient()
	if err != nil {
		return err
	}
	defer cli.Close()
	e := &env{l: l, topo: l.Topology(), backend: spec.Backend, cli: cli, pairs: meshPairs(l)}
	for _, f := range fs {
		if err := ctx.Err(); err != nil {
			return err
		}
		r := s.runRow(ctx, e, f)
		s.rows = append(s.rows, r)
		s.say("  %-28s lost %s  repair %-8s %s", r.ID, r.lostText(), r.repairText(), r.Result())
	}
	return nil
}

// settle is the traffic kept flowing after a row's measurement, so that
// a late effect of the fault still shows in its counts.
const settle = 300 * time.Millisecond

func (s *suite) runRow(ctx context.Context, e *env, f fault) Row {
	r := Row{ID: f.id, Fault: f.text, Backend: e.backend, Repair: -1, Gap: s.o.Gaps[f.id], Goal: f.goal}
	// A run's own goal (the CI test's, on a machine shared with other
	// tests) loosens every row's; it never tightens one.
	if s.o.RepairGoal > max(r.Goal, RepairGoal) {
		r.Goal = s.o.RepairGoal
	}
	if f.setup != nil {
		if err := f.setup(ctx, e); err != nil {
			r.Err = fmt.Errorf("setup: %w", err)
			return r
		}
	}
	if err := e.healthy(ctx); err != nil {
		r.Err = fmt.Errorf("lab broken before the fault: %w", err)
		return r
	}
	offsets := logOffsets(e.topo)
	p := &probe{row: &r}
	pg, err := startPings(e.pairs)
	if err != nil {
		r.Err = err
		return r
	}
	time.Sleep(200 * time.Millisecond)
	p.t0 = time.Now()
	bodyErr := f.build(ctx, e, p)
	time.Sleep(settle)
	pr, perr := pg.stop()
	r.Sent, r.Lost = pr.Sent, pr.Lost
	if r.Err == nil {
		r.Err = errors.Join(bodyErr, perr)
	}
	// A row that measures no kernel state of its own is judged by the
	// pings: the longest silence is its outage.
	if r.Repair < 0 && r.Lost > 0 {
		r.Repair, r.Repaired = pr.Gap, !pr.GapEnd.IsZero()
	}
	if p.cause != nil {
		r.Cause = findCause(e.topo, offsets, p.causeHosts, p.cause, p.t0, p.causeWithin)
	} else {
		r.NoCause = true
	}
	// Leave the lab as the next row expects it: every pair answering.
	if f.noHeal {
		return r
	}
	if _, ok := waitUntil(ctx, time.Now(), 15*time.Second, func() bool { return e.healthy(ctx) == nil }); !ok {
		s.say("  (lab %s still broken after %s; later rows will say so)", e.topo.Spec.Prefix, r.ID)
	}
	return r
}

// matcher tells whether a log line names the fault.
type matcher interface{ MatchString(string) bool }

// allOf matches a line that every one of its expressions matches.
type allOf []*regexp.Regexp

func (a allOf) MatchString(s string) bool {
	for _, re := range a {
		if !re.MatchString(s) {
			return false
		}
	}
	return true
}

// naming matches a WARN or ERROR line that has one of words and one of
// names (regular expressions): what went wrong, and about what.
func naming(words []string, names ...string) matcher {
	return allOf{warnOrError(words...), regexp.MustCompile(strings.Join(names, "|"))}
}

// warnOrError matches agent log lines at WARN or ERROR that also match
// one of the given expressions (joined with |).
func warnOrError(alts ...string) *regexp.Regexp {
	return regexp.MustCompile(`level=(WARN|ERROR) .*(` + strings.Join(alts, "|") + `)`)
}
