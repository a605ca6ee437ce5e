package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/weftnet/weft/internal/extiface"
	"github.com/weftnet/weft/internal/kernel/hostfacts"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/metrics"
	"github.com/weftnet/weft/internal/netconf"
	"github.com/weftnet/weft/internal/status"
	"github.com/weftnet/weft/internal/store/open"
	"github.com/weftnet/weft/internal/version"
	"github.com/weftnet/weft/internal/web"
)

// pageView is what the agent's page is built from: the network config and
// the newest lease snapshot the watch loop applied, so the page shows the
// agent's own view rather than a second read of the store, and the events
// worth showing beside it.
type pageView struct {
	events web.Events

	mu     sync.Mutex
	cfg    *netconf.Config
	leases []lease.Lease
}

var errNoView = errors.New("the agent has not read the network config and leases yet")

func (v *pageView) setConfig(cfg *netconf.Config) {
	v.mu.Lock()
	v.cfg = cfg
	v.mu.Unlock()
}

func (v *pageView) setLeases(ls []lease.Lease) {
	v.mu.Lock()
	v.leases = ls
	v.mu.Unlock()
}

// Config implements status.Source.
func (v *pageView) Config(context.Context) (*netconf.Config, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cfg == nil || v.leases == nil {
		return nil, errNoView
	}
	return v.cfg, nil
}

// List implements status.Source.
func (v *pageView) List(context.Context) ([]lease.Lease, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.leases == nil {
		return nil, errNoView
	}
	return v.leases, nil
}

func (v *pageView) add(kind, format string, args ...any) {
	v.events.Add(web.Event{Time: time.Now().UTC(), Kind: kind, Message: fmt.Sprintf(format, args...)})
}

// peersChanged records joins, changes and leaves; a bulk change (an agent
// starting in a large cluster) is one event, not hundreds.
func (v *pageView) peersChanged(added, changed, removed []lease.Lease, bulk bool) {
	if bulk {
		v.add(web.EventJoin, "%d peers added, %d changed, %d removed", len(added), len(changed), len(removed))
		return
	}
	for _, l := range added {
		v.add(web.EventJoin, "peer %s joined from %s", l.Key(), addrText(l.Attrs.PublicIP))
	}
	for _, l := range changed {
		v.add(web.EventChange, "peer %s changed its lease (PublicIP %s)", l.Key(), addrText(l.Attrs.PublicIP))
	}
	for _, l := range removed {
		v.add(web.EventLeave, "peer %s left (was %s)", l.Key(), addrText(l.Attrs.PublicIP))
	}
}

// withoutUserinfo drops the user names that Describe keeps (it masks only
// passwords): anyone who can reach the listener reads the page, and a
// user name is half a credential.
func withoutUserinfo(s string) string {
	words := strings.Fields(s)
	for i, w := range words {
		urls := strings.Split(w, ",")
		for j, u := range urls {
			p, err := url.Parse(u)
			switch {
			case err == nil && p.User != nil:
				p.User = nil
				urls[j] = p.String()
			case err != nil:
				urls[j] = cutUserinfo(u)
			}
		}
		words[i] = strings.Join(urls, ",")
	}
	return strings.Join(words, " ")
}

// cutUserinfo removes "user:password@" after the scheme of a URL that
// does not parse, which the store's name would otherwise show as written.
func cutUserinfo(u string) string {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		return u
	}
	host := rest
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		host = rest[:i]
	}
	at := strings.LastIndex(host, "@")
	if at < 0 {
		return u
	}
	return scheme + "://" + rest[at+1:]
}

func addrText(a netip.Addr) string {
	if a.IsValid() {
		return a.String()
	}
	return "no PublicIP"
}

// pageHandler is the page on the agent's health listener. The report is
// status's, built from the agent's view with the agent's interface flags;
// its Store names the store as `weft status` does, without credentials.
func (a *Agent) pageHandler(start time.Time) http.Handler {
	opts := status.Options{
		Source:     &a.page,
		Store:      withoutUserinfo(open.Describe(a.opts)),
		SubnetFile: a.opts.SubnetFile,
		Iface: extiface.Options{
			Ifaces:        a.opts.Iface,
			IfaceRegex:    a.opts.IfaceRegex,
			IfaceCanReach: a.opts.IfaceCanReach,
			PublicIP:      a.opts.PublicIP,
			PublicIPv6:    a.opts.PublicIPv6,
		},
		RenewMargin: time.Duration(a.opts.SubnetLeaseRenewMargin) * time.Minute,
		Kubernetes:  a.opts.KubeSubnetMgr,
		Now:         a.now,
	}
	build := func(ctx context.Context, opts status.Options) web.Page {
		var p web.Page
		rep, err := status.Run(ctx, opts)
		if err != nil {
			p.Agent.Error = err.Error()
		} else {
			p.Report = rep
		}
		now := a.now()
		ready, why := a.deps.Health.Ready()
		p.Agent.Version = version.Version
		p.Agent.Started = start.UTC()
		p.Agent.UptimeSeconds = int64(now.Sub(start) / time.Second)
		p.Agent.Ready, p.Agent.NotReady = ready, why
		p.Agent.Events = a.page.events.List()
		if p.Time.IsZero() {
			p.Time = now
		}
		return p
	}
	// The probes are status's --check, sent from this process's namespace;
	// the kernel settings it also reads come from where the agent reads
	// them.
	probeOpts := opts
	probeOpts.Check = true
	facts := hostfacts.FromProcRoot(a.opts.ProcRoot)
	if a.deps.KernelFacts != nil {
		facts = *a.deps.KernelFacts
	}
	probeOpts.Facts = &facts
	return web.New(func(ctx context.Context) web.Page { return build(ctx, opts) }, a.log).
		WithProbe(func(ctx context.Context) web.Page { return build(ctx, probeOpts) })
}

// watchRepairs turns the reconciler's repair counters into events: the
// backends and rule managers count every entry they restore in
// weft_reconcile_repairs_total, and each rise of a kind is one event.
func (a *Agent) watchRepairs(ctx context.Context, every time.Duration) {
	last := map[string]float64{}
	first := true
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		now := repairCounts(a.deps.Metrics)
		for kind, n := range now {
			if d := n - last[kind]; d > 0 && !first {
				a.page.add(web.EventRepair, "restored %d %s entr%s that had gone missing or wrong", int(d), kind, plural(int(d)))
			}
			last[kind] = n
		}
		first = false
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func plural(n int) string {
	if n == 1 {
		return "y"
	}
	return "ies"
}

func repairCounts(m *metrics.Metrics) map[string]float64 {
	out := map[string]float64{}
	if m == nil {
		return out
	}
	mfs, err := m.Registry().Gather()
	if err != nil {
		return out
	}
	for _, mf := range mfs {
		if mf.GetName() != "weft_reconcile_repairs_total" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			for _, lp := range mt.GetLabel() {
				if lp.GetName() == "kind" {
					out[lp.GetValue()] = mt.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}
