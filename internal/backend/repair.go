package backend

import (
	"context"
	"log/slog"
	"net/netip"
	"time"

	vns "github.com/vishvananda/netns"

	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/metrics"
)

// Counts are the kernel changes one repair made, by metrics kind
// (metrics.KindRoute, ...). Nil means none.
type Counts map[string]int

// Add adds n changes of kind; a nil Counts ignores them.
func (c Counts) Add(kind string, n int) {
	if c != nil && n > 0 {
		c[kind] += n
	}
}

// Watch is one kernel subscription the repair loop keeps alive: a source of
// reports that the kernel changed under the backend.
type Watch struct {
	// Name says what is watched, in logs ("routes").
	Name string
	// Subscribe starts the subscription. Its channel carries one trigger
	// per reported change that calls for a repair (the trigger names the
	// change in logs: "route deleted"), and closes when ctx is done or the
	// subscription ended; in the second case changes may have been missed.
	// onError receives the reason it ended.
	Subscribe func(ctx context.Context, onError func(error)) (<-chan string, error)
}

// NewWatch makes a Watch of a kernel subscription in the namespace ns (nil:
// the caller's) that reports events of type E (kernel.WatchRoutes,
// say): trigger says what an event calls for, "" when it calls for
// nothing.
func NewWatch[E any](name string, ns *vns.NsHandle, subscribe func(ctx context.Context, ns *vns.NsHandle, onError func(error)) (<-chan E, error), trigger func(E) string) Watch {
	return Watch{Name: name, Subscribe: func(ctx context.Context, onError func(error)) (<-chan string, error) {
		events, err := subscribe(ctx, ns, onError)
		if err != nil {
			return nil, err
		}
		out := make(chan string)
		go func() {
			defer close(out)
			for e := range events {
				t := trigger(e)
				if t == "" {
					continue
				}
				select {
				case out <- t:
				case <-ctx.Done():
					// events closes too, once ctx is done.
				}
			}
		}()
		return out, nil
	}}
}

// RepairConfig is what RunRepairLoop repairs, when, and where it reports.
type RepairConfig struct {
	// Period is how often Repair runs when nothing was reported.
	Period time.Duration
	// Watches report changes that call for an early repair; none (for
	// NoSubscribe) leaves repairs to the timer.
	Watches []Watch
	// Repair makes the kernel match the backend's desired state again and
	// returns what it had to change. trigger says why, for logs. It is
	// called from the loop's goroutine only.
	Repair func(trigger string) Counts
	// Initial is the trigger of the repair when the loop starts, which
	// catches what changed before the subscriptions were made; "" means
	// "start".
	Initial string
	// Dominant is a trigger that names the burst it is part of in the log
	// (vxlan's "device deleted", which takes all the device's entries with
	// it); otherwise a burst is named by its first trigger that is not the
	// timer.
	Dominant string
	// Extra carries triggers from elsewhere (udp: "device read failed");
	// nil means none.
	Extra <-chan string
	// Fatal ends the loop with the error it carries; nil means never.
	Fatal <-chan error
	// OnTick, if not nil, runs on every tick of the timer after the repair.
	OnTick func()
	// Log receives the subscriptions' troubles; Metrics counts repairs by
	// kind (nil records nothing).
	Log     *slog.Logger
	Metrics *metrics.Metrics
}

// RunRepairLoop repairs until ctx is done, then returns nil; it returns an
// error only when cfg.Fatal reports one. It repairs once at the start,
// every Period, and as soon as a watch reports a change that calls for a
// repair. A burst of reports (a link going down takes every route on it)
// is repaired once. A subscription that cannot be made is tried again on
// every tick; one that ends is made again at once, followed by a repair,
// since changes may have been missed. Each repair's changes are counted in
// cfg.Metrics by kind.
func RunRepairLoop(ctx context.Context, cfg RepairConfig) error {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// The watches' goroutines end with ctx, also when Fatal ends the loop.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	tick := time.NewTicker(cfg.Period)
	defer tick.Stop()

	// Reports of all watches meet on one channel; ended marks a watch
	// whose subscription is over.
	type report struct {
		watch   int
		trigger string
		ended   bool
	}
	reports := make(chan report, 16)
	live := make([]bool, len(cfg.Watches)) // only this goroutine touches it
	subscribe := func() {
		for i, w := range cfg.Watches {
			if live[i] || ctx.Err() != nil {
				continue
			}
			ch, err := w.Subscribe(ctx, func(err error) {
				log.Warn(w.Name+" watch reported an error", "err", err)
			})
			if err != nil {
				log.Warn("cannot watch "+w.Name+"; repairing on the timer until it works", "period", cfg.Period, "err", err)
				continue
			}
			live[i] = true
			go func() {
				for t := range ch {
					select {
					case reports <- report{watch: i, trigger: t}:
					case <-ctx.Done():
						return
					}
				}
				select {
				case reports <- report{watch: i, ended: true}:
				case <-ctx.Done():
				}
			}()
		}
	}
	// onReport says what a report calls for.
	onReport := func(r report) string {
		if !r.ended {
			return r.trigger
		}
		live[r.watch] = false
		subscribe()
		return "watch restarted"
	}
	repair := func(trigger string) {
		for kind, n := range cfg.Repair(trigger) {
			cfg.Metrics.Repaired(kind, n)
		}
	}

	subscribe()
	initial := cfg.Initial
	if initial == "" {
		initial = "start"
	}
	repair(initial)
	for {
		var trigger string
		ticked := false
		select {
		case <-ctx.Done():
			return nil
		case err := <-cfg.Fatal:
			if ctx.Err() != nil {
				return nil
			}
			return err
		case <-tick.C:
			subscribe()
			trigger, ticked = "timer", true
		case t := <-cfg.Extra:
			trigger = t
		case r := <-reports:
			trigger = onReport(r)
		}
		// One repair covers what is already queued.
	drain:
		for {
			var t string
			select {
			case <-tick.C:
				ticked = true
			case t = <-cfg.Extra:
			case r := <-reports:
				t = onReport(r)
			default:
				break drain
			}
			if t != "" && (trigger == "timer" || t == cfg.Dominant) {
				trigger = t
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		repair(trigger)
		if ticked && cfg.OnTick != nil {
			cfg.OnTick()
		}
	}
}

// NoteIgnored logs each lease of another backend type than backendType
// once, when it appears in now or changes type since prev; the caller
// keeps now as the next prev.
func NoteIgnored(log *slog.Logger, backendType string, prev, now map[netip.Prefix]lease.Attrs) {
	for subnet, a := range now {
		if p, ok := prev[subnet]; ok && p.BackendType == a.BackendType {
			continue
		}
		typ := a.BackendType
		if typ == "" {
			typ = "none"
		}
		log.Info("ignoring peer of another backend type; "+backendType+" cannot reach it", "subnet", subnet,
			"peer", a.PublicIP, "backend_type", typ)
	}
}
