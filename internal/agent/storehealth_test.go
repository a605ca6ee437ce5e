package agent

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weftnet/weft/internal/metrics"
	"github.com/weftnet/weft/internal/store"
)

// records is a slog handler keeping every record, for asserting log lines.
type records struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	r.recs = append(r.recs, rec)
	r.mu.Unlock()
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

// take returns the records logged since the last take, as
// "LEVEL message cause=… lasted=…".
func (r *records) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, rec := range r.recs {
		s := rec.Level.String() + " " + rec.Message
		rec.Attrs(func(a slog.Attr) bool {
			if a.Key == "cause" || a.Key == "lasted" || a.Key == "after" {
				s += " " + a.Key + "=" + a.Value.String()
			}
			return true
		})
		out = append(out, s)
	}
	r.recs = nil
	return out
}

// fakeClock is a clock the test moves.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }
func newFakeClock() *fakeClock           { return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }
func unreachable(n int) error            { return unreachableAt("10.0.0.1:2379", n) }
func unreachableAt(ep string, n int) error {
	return fmt.Errorf("read network config: %w", status.Error(codes.Unavailable,
		fmt.Sprintf(`connection error: desc = "transport: Error while dialing: dial tcp %s: connect: connection refused" (attempt %d)`, ep, n)))
}

func newTestHealth(c *fakeClock) (*storeHealth, *records, *metrics.Metrics) {
	rec := &records{}
	m := metrics.New()
	return newStoreHealth(slog.New(rec), m, c.now, nil, "etcdctl put ..."), rec, m
}

func wantLines(t *testing.T, step string, got []string, want ...string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: logged %d lines, want %d:\n%s", step, len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%s: line %d = %q, want %q", step, i, got[i], want[i])
		}
	}
}

// An outage is logged when it starts, repeated no more than every
// troubleRepeat however often calls fail, logged at once when its cause
// changes, and its end is logged with how long it lasted.
func TestStoreHealthLogsOnsetRepeatChangeAndEnd(t *testing.T) {
	c := newFakeClock()
	h, rec, m := newTestHealth(c)
	h.setRunning()
	began := c.t

	if cause := h.failed("renew", "renew the lease", unreachable(1)); cause != store.CauseUnreachable {
		t.Fatalf("cause = %q, want unreachable", cause)
	}
	wantLines(t, "onset", rec.take(), "WARN store unreachable: cannot renew the lease; retrying cause=unreachable")

	// Failing every 5 s for just under troubleRepeat: nothing new to say.
	for i := 0; i < int(troubleRepeat/(5*time.Second))-1; i++ {
		c.add(5 * time.Second)
		h.failed("probe", "read the network config", unreachable(i+2))
	}
	wantLines(t, "during", rec.take())
	c.add(5 * time.Second)
	h.failed("probe", "read the network config", unreachable(100))
	wantLines(t, "repeat", rec.take(), "WARN still store unreachable after 5m0s: cannot read the network config; retrying cause=unreachable")

	// The cause changes: said at once, at ERROR (someone must act).
	c.add(troubleChangeGap)
	h.failed("probe", "read the network config", fmt.Errorf("read network config: %w", rpctypes.ErrAuthFailed))
	wantLines(t, "change", rec.take(), "ERROR the store refused this agent's credentials (was: unreachable): cannot read the network config; retrying cause=auth")
	// Flapping back within troubleChangeGap is not logged yet.
	c.add(time.Second)
	h.failed("probe", "read the network config", unreachable(101))
	wantLines(t, "flap", rec.take())

	since, reason, ok := h.outage()
	if !ok || !since.Equal(began) || !strings.HasPrefix(reason, "store unreachable: ") {
		t.Errorf("outage() = %v, %q, %v; want since the first failure and the current cause", since, reason, ok)
	}

	c.add(3 * time.Second)
	h.succeeded("renew", false)
	wantLines(t, "end", rec.take(), "INFO store answering again after=unreachable lasted=5m9s")
	if _, _, ok := h.outage(); ok {
		t.Error("outage() still reports trouble after a success")
	}
	got := scrapeStore(t, m)
	for _, want := range []string{
		`weft_store_errors_by_cause_total{cause="unreachable"} 62`,
		`weft_store_errors_by_cause_total{cause="auth"} 1`,
		`weft_store_trouble{cause="unreachable"} 0`,
		`weft_store_trouble{cause="auth"} 0`,
		`weft_store_errors_total{op="probe"} 62`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("metrics lack %s:\n%s", want, got)
		}
	}
}

// A config that goes bad under a running agent is an ERROR that says the
// running config is kept; it does not count as the store being down, and
// only a valid config read ends it.
func TestStoreHealthConfigTroubleWhileRunning(t *testing.T) {
	c := newFakeClock()
	h, rec, m := newTestHealth(c)
	h.setRunning()
	bad := fmt.Errorf("%w /coreos.com/network/config in etcd: parse network config: invalid character", store.ErrInvalidConfig)
	h.failed("probe", "read the network config", bad)
	wantLines(t, "invalid", rec.take(), "ERROR the network config in the store is now invalid; keeping the running config cause=invalid-config")
	if !strings.Contains(scrapeStore(t, m), `weft_store_trouble{cause="invalid-config"} 1`) {
		t.Error("weft_store_trouble{cause=invalid-config} is not 1")
	}
	c.add(5 * time.Second)
	h.failed("probe", "read the network config", bad)
	h.succeeded("renew", false) // the store answers: not the end of this
	wantLines(t, "same", rec.take())
	if _, _, ok := h.outage(); ok {
		t.Error("an invalid config counts as an outage")
	}

	c.add(5 * time.Second)
	h.failed("probe", "read the network config", fmt.Errorf("read network config: %w", store.ErrNoConfig))
	wantLines(t, "deleted", rec.take(), "ERROR the network config in the store is now missing; keeping the running config cause=no-config")
	c.add(5 * time.Second)
	h.succeeded("probe", true)
	wantLines(t, "fixed", rec.take(), "INFO the network config in the store is valid again after=no-config lasted=15s")
}

// Before the agent runs, a missing config is a WARN that says how to
// create it.
func TestStoreHealthConfigMissingAtStart(t *testing.T) {
	c := newFakeClock()
	h, rec, _ := newTestHealth(c)
	h.failed("config", "read the network config", fmt.Errorf("read: %w", store.ErrNoConfig))
	wantLines(t, "start", rec.take(), "WARN no network config in the store yet; waiting. To create it: cause=no-config")
}

// The store's watch is its own track: a working renew does not end it.
func TestStoreHealthWatchTrack(t *testing.T) {
	c := newFakeClock()
	h, rec, _ := newTestHealth(c)
	h.report(opWatch, fmt.Errorf("watch nodes: %w", status.Error(codes.PermissionDenied, "denied")))
	wantLines(t, "onset", rec.take(), "ERROR the store denied this agent access: cannot watch the leases; retrying cause=permission")
	h.succeeded("renew", false)
	if _, reason, ok := h.outage(); !ok || !strings.HasPrefix(reason, "the store denied this agent access: ") {
		t.Errorf("outage() = %q, %v after a renew; the watch is still failing", reason, ok)
	}
	c.add(time.Minute)
	h.report(opWatch, nil)
	wantLines(t, "end", rec.take(), "INFO store answering again after=permission lasted=1m0s")
}

func scrapeStore(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "weft_store_") {
			continue
		}
		for _, mt := range mf.GetMetric() {
			if len(mt.GetLabel()) == 0 {
				continue
			}
			v := mt.GetCounter().GetValue()
			if mt.GetGauge() != nil {
				v = mt.GetGauge().GetValue()
			}
			fmt.Fprintf(&b, "%s{%s=%q} %g\n", mf.GetName(), mt.GetLabel()[0].GetName(), mt.GetLabel()[0].GetValue(), v)
		}
	}
	return b.String()
}
