package agent

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/backend/hostgw"
	"github.com/weftnet/weft/internal/backend/udp"
	"github.com/weftnet/weft/internal/backend/vxlan"
	"github.com/weftnet/weft/internal/extiface"
	"github.com/weftnet/weft/internal/metrics"
	"github.com/weftnet/weft/internal/options"
	"github.com/weftnet/weft/internal/rules"
	"github.com/weftnet/weft/internal/store"
	etcdstore "github.com/weftnet/weft/internal/store/etcd"
	kubestore "github.com/weftnet/weft/internal/store/kube"
)

// Backends is the table of data planes this build offers, by the lower-case
// name used in the network config's Backend.Type.
func Backends() map[string]backend.Factory {
	return map[string]backend.Factory{
		"host-gw": hostgw.New,
		"vxlan":   vxlan.New,
		"udp":     udp.New,
	}
}

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
		Backends:        Backends(),
		SelectInterface: selectInterface,
		Rules: func(mode rules.Mode) (rules.Manager, error) {
			return rules.New(mode, log)
		},
		Metrics:   m,
		Log:       log,
		Blackhole: NewBlackholeRoutes(nil),
	})
	return a.Run(ctx)
}

// closableStore is a store the agent owns and closes.
type closableStore interface {
	store.Store
	Close() error
}

// openStore connects to the Kubernetes API with --kube-subnet-mgr, else to
// etcd.
func openStore(ctx context.Context, opts options.Options, log *slog.Logger, m *metrics.Metrics) (closableStore, error) {
	if opts.KubeSubnetMgr {
		st, err := kubestore.New(ctx, kubestore.Options{
			KubeconfigFile:            opts.KubeconfigFile,
			APIURL:                    opts.KubeAPIURL,
			AnnotationPrefix:          opts.KubeAnnotationPrefix,
			NetConfigPath:             opts.NetConfigPath,
			SetNodeNetworkUnavailable: opts.SetNodeNetworkUnavailable,
			Log:                       log.With("store", "kube"),
		})
		if err != nil {
			return nil, fmt.Errorf("connect to the Kubernetes API: %w", err)
		}
		return kubeCloser{st}, nil
	}
	st, err := etcdstore.New(ctx, etcdstore.Options{
		Endpoints: opts.Endpoints(),
		Prefix:    opts.EtcdPrefix,
		CertFile:  opts.EtcdCertfile,
		KeyFile:   opts.EtcdKeyfile,
		CAFile:    opts.EtcdCAFile,
		Username:  opts.EtcdUsername,
		Password:  opts.EtcdPassword,
		Log:       log.With("store", "etcd"),
		Metrics:   m,
	})
	if err != nil {
		return nil, fmt.Errorf("connect to etcd at %s: %w", opts.EtcdEndpoints, err)
	}
	return st, nil
}

// kubeCloser gives the Kubernetes store the Close the agent expects; the
// client holds nothing that needs closing.
type kubeCloser struct{ *kubestore.Store }

func (kubeCloser) Close() error { return nil }

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
	})
}
