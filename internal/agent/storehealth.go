package agent

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/weftnet/weft/internal/metrics"
	"github.com/weftnet/weft/internal/store"
	"github.com/weftnet/weft/internal/web"
)

// Store trouble is logged when it starts, again at most every
// troubleRepeat while it lasts, and when it ends with how long it lasted.
// A change of cause (etcd refused, then timed out, then refused our
// credentials) is news and is logged at once, but at most every
// troubleChangeGap, so that a flapping cause cannot flood the log.
const (
	troubleRepeat    = 5 * time.Minute
	troubleChangeGap = 5 * time.Second
)

// storeHealth is the one place in the agent that follows the store's
// trouble: every store call the agent makes, and the store's own watch,
// report their outcome here, and this says so in the log, the metrics, the
// page and /readyz. It keeps three tracks, because they fail and recover
// apart: the agent's calls (a successful renew ends an outage), the
// store's watch (which the store retries on its own, and which in
// Kubernetes mode talks to the API server while the config is a file), and
// the network config (only a valid config read ends an invalid or missing
// config).
type storeHealth struct {
	log     *slog.Logger
	metrics *metrics.Metrics
	now     func() time.Time
	page    *pageView
	// hint says how to create a missing config.
	hint string

	repeat, changeGap time.Duration

	mu      sync.Mutex
	calls   troubleTrack // the agent's own calls
	watch   troubleTrack // the store's watch
	config  troubleTrack // the network config
	running bool         // the agent runs on a config: config trouble keeps it
}

// opWatch is the op under which the store reports its watch.
const opWatch = "watch"

// troubleTrack is one kind of trouble while it lasts.
type troubleTrack struct {
	active bool
	cause  store.Cause
	err    error
	since  time.Time
	// what was last logged, and when.
	loggedCause store.Cause
	loggedErr   string
	loggedAt    time.Time
}

func newStoreHealth(log *slog.Logger, m *metrics.Metrics, now func() time.Time, page *pageView, hint string) *storeHealth {
	return &storeHealth{log: log, metrics: m, now: now, page: page, hint: hint,
		repeat: troubleRepeat, changeGap: troubleChangeGap}
}

// isConfigCause reports whether c is about the config rather than about
// reaching the store: the store answered.
func isConfigCause(c store.Cause) bool {
	return c == store.CauseNoConfig || c == store.CauseInvalidConfig
}

// setRunning says the agent now runs on a network config: from here on a
// config that goes bad is kept rather than waited for.
func (h *storeHealth) setRunning() {
	h.mu.Lock()
	h.running = true
	h.mu.Unlock()
}

// failed records a failed store call. op names it for the metrics
// ("config", "acquire", "renew", "probe", "watch"); what says in words
// what was being done ("read the network config"). It returns the cause.
func (h *storeHealth) failed(op, what string, err error) store.Cause {
	cause := store.Classify(err)
	h.metrics.StoreError(op)
	h.metrics.StoreErrorCause(cause)
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	if isConfigCause(cause) {
		// The store answered, so whatever kept it from answering is over.
		h.endLocked(&h.calls, op, now)
		h.failConfigLocked(op, cause, err, now)
		return cause
	}
	t := &h.calls
	if op == opWatch {
		t = &h.watch
	}
	onset := h.note(t, cause, err, now)
	lvl := slog.LevelError
	if cause == store.CauseUnreachable || cause == store.CauseTimeout {
		// Often a passing outage that the agent rides out; the data
		// plane keeps working meanwhile.
		lvl = slog.LevelWarn
	}
	msg := fmt.Sprintf("%s: cannot %s; retrying", cause.Phrase(), what)
	switch {
	case onset:
	case cause != t.loggedCause && now.Sub(t.loggedAt) >= h.changeGap:
		msg = fmt.Sprintf("%s (was: %s): cannot %s; retrying", cause.Phrase(), t.loggedCause, what)
	case now.Sub(t.loggedAt) >= h.repeat:
		msg = fmt.Sprintf("still %s after %v: cannot %s; retrying", cause.Phrase(), now.Sub(t.since).Round(time.Second), what)
	default:
		return cause
	}
	args := []any{"cause", cause, "op", op, "err", err.Error()}
	if !onset {
		args = append(args, "since", t.since.UTC().Format(time.RFC3339))
	}
	if h.running {
		args = append(args, "data-plane", "unchanged")
	}
	h.log.Log(context.Background(), lvl, msg, args...)
	t.loggedCause, t.loggedErr, t.loggedAt = cause, err.Error(), now
	if onset && h.page != nil {
		h.page.add(web.EventStore, "%s", store.Explain(err))
	}
	return cause
}

// note records a failure on t, starting the trouble if there was none
// (onset) and moving the trouble gauge to the new cause.
func (h *storeHealth) note(t *troubleTrack, cause store.Cause, err error, now time.Time) (onset bool) {
	onset = !t.active
	if onset {
		*t = troubleTrack{active: true, since: now}
	}
	if t.cause != cause {
		if t.cause != "" {
			h.metrics.StoreTrouble(t.cause, false)
		}
		h.metrics.StoreTrouble(cause, true)
	}
	t.cause, t.err = cause, err
	return onset
}

// failConfigLocked reports a missing or invalid config. Each distinct
// complaint is logged once (a config is changed by hand, so a new error is
// an operator's new attempt and worth a line), and repeated every
// h.repeat while it stays.
func (h *storeHealth) failConfigLocked(op string, cause store.Cause, err error, now time.Time) {
	t := &h.config
	onset := h.note(t, cause, err, now)
	if !onset && err.Error() == t.loggedErr && now.Sub(t.loggedAt) < h.repeat {
		return
	}
	args := []any{"cause", cause, "op", op, "err", err.Error()}
	var msg string
	lvl := slog.LevelWarn
	switch {
	case h.running && cause == store.CauseNoConfig:
		lvl = slog.LevelError
		msg = "the network config in the store is now missing; keeping the running config"
	case h.running:
		lvl = slog.LevelError
		msg = "the network config in the store is now invalid; keeping the running config"
	case cause == store.CauseNoConfig:
		msg = "no network config in the store yet; waiting. To create it:"
		args = append([]any{"command", h.hint}, args...)
	default:
		msg = "the network config is invalid; waiting for a corrected config"
	}
	if !onset {
		args = append(args, "since", t.since.UTC().Format(time.RFC3339))
	}
	h.log.Log(context.Background(), lvl, msg, args...)
	t.loggedCause, t.loggedErr, t.loggedAt = cause, err.Error(), now
	if h.running && onset && h.page != nil {
		h.page.add(web.EventStore, "%s", msg)
	}
}

// succeeded records a store call that worked; validConfig says it read a
// network config this agent can run.
func (h *storeHealth) succeeded(op string, validConfig bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	if op == opWatch {
		h.endLocked(&h.watch, op, now)
		return
	}
	h.endLocked(&h.calls, op, now)
	if validConfig {
		h.endLocked(&h.config, op, now)
	}
}

// report is what a store.TroubleReporter is given: the store's watch
// reports its errors, and nil when it works again.
func (h *storeHealth) report(op string, err error) {
	if err != nil {
		what := "watch the leases"
		if op == "connection" {
			what = "stay connected to the store"
		}
		h.failed(op, what, err)
		return
	}
	h.succeeded(op, false)
}

// endLocked ends a trouble, saying how long it lasted.
func (h *storeHealth) endLocked(t *troubleTrack, op string, now time.Time) {
	if !t.active {
		return
	}
	h.metrics.StoreTrouble(t.cause, false)
	lasted := now.Sub(t.since).Round(time.Millisecond)
	msg := "store answering again"
	if isConfigCause(t.cause) {
		msg = "the network config in the store is valid again"
	}
	// Only a trouble that was logged gets its end logged.
	if !t.loggedAt.IsZero() {
		h.log.Info(msg, "after", t.cause, "lasted", lasted, "op", op)
		if h.page != nil {
			h.page.add(web.EventStore, "%s after %v (%s)", msg, lasted, t.cause)
		}
	}
	*t = troubleTrack{}
}

// outage returns the store's current trouble reaching it (the agent's
// calls or the watch, whichever began first): since when, and the
// sentence that names its cause; ok is false when there is none.
func (h *storeHealth) outage() (since time.Time, reason string, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, t := range []*troubleTrack{&h.calls, &h.watch} {
		if t.active && (!ok || t.since.Before(since)) {
			since, reason, ok = t.since, store.Explain(t.err), true
		}
	}
	return since, reason, ok
}

// probeStore keeps readiness honest after start: while the store cannot be
// reached for longer than the lease renew margin, the lease may lapse
// without the agent being able to fix it, so /readyz turns 503 (the data
// plane keeps working meanwhile) with the real cause as the reason. A
// cheap config read every few seconds is the probe; it also notices a
// config that was deleted or made invalid under the running agent.
func (a *Agent) probeStore(ctx context.Context, ready <-chan struct{}) error {
	select {
	case <-ctx.Done():
		return nil
	case <-ready:
	}
	margin := time.Duration(a.opts.SubnetLeaseRenewMargin) * time.Minute
	if a.deps.OutageGrace > 0 {
		margin = a.deps.OutageGrace
	}
	every := a.deps.ProbeEvery
	if every <= 0 {
		every = 5 * time.Second
	}
	var changed <-chan struct{}
	if n, ok := a.deps.Store.(store.ConfigNotifier); ok {
		changed = n.ConfigChanges(ctx)
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	down := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case _, ok := <-changed:
			if !ok {
				changed = nil // ctx is ending; the select above sees it
				continue
			}
		}
		pctx, cancel := context.WithTimeout(ctx, every)
		cfg, err := a.deps.Store.Config(pctx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			if berr := a.checkBackend(cfg); berr != nil {
				err = fmt.Errorf("%w: %w", store.ErrInvalidConfig, berr)
			}
		}
		if err != nil {
			a.sh.failed("probe", "read the network config", err)
		} else {
			a.sh.succeeded("probe", true)
		}
		since, reason, out := a.sh.outage()
		switch {
		case !out && down:
			down = false
			a.deps.Health.SetReady()
		case out && !down && a.now().Sub(since) > margin:
			down = true
			d := a.now().Sub(since).Round(time.Second)
			a.deps.Health.SetNotReady(fmt.Sprintf("%s (for %v, longer than the lease renew margin)", reason, d))
			a.log.Error("store trouble outlasts the lease renew margin; reporting not ready, data plane unchanged", "for", d, "reason", reason)
		}
	}
}
