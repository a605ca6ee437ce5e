package agent

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/backend/backends"
	"github.com/weftnet/weft/internal/extiface"
	"github.com/weftnet/weft/internal/metrics"
	"github.com/weftnet/weft/internal/options"
	"github.com/weftnet/weft/internal/rules"
	"github.com/weftnet/weft/internal/store/open"
)

// Main runs an agent with the real store, backends and kernel.
func Main(ctx context.Context, opts options.Options, log *slog.Logger) error {
	m := metrics.New()
	st, err := openStore(ctx, opts, log, m)
	if err != nil {
		return err
	}
	defer st.Close()
	a := New(opts, Deps{
		Store:           st,
		Backends:        backends.Factories(),
		CheckBackend:    backends.CheckOptions,
		SelectInterface: selectInterface,
		Rules: func(mode rules.Mode) (rules.Manager, error) {
			return rules.New(mode, log, rules.WithMetrics(m))
		},
		Metrics:   m,
		Log:       log,
		Blackhole: NewBlackholeRoutes(nil),
	})
	return a.Run(ctx)
}

// openStore connects to the Kubernetes API with --kube-subnet-mgr, else to
// etcd.
func openStore(ctx context.Context, opts options.Options, log *slog.Logger, m *metrics.Metrics) (open.Store, error) {
	return open.New(ctx, opts, open.Params{Log: log, Metrics: m})
}

func selectInterface(o *options.Options) (backend.ExternalInterface, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return backend.ExternalInterface{}, fmt.Errorf("open netlink: %w", err)
	}
	defer h.Close()
	return extiface.Select(h, extiface.Options{
		Ifaces:        o.Iface,
		IfaceRegex:    o.IfaceRegex,
		IfaceCanReach: o.IfaceCanReach,
		PublicIP:      o.PublicIP,
		PublicIPv6:    o.PublicIPv6,
	})
}
