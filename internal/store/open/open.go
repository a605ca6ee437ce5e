// Package open turns the agent's options into the store they name: the
// Kubernetes API with --kube-subnet-mgr, else etcd. The agent, weft status
// and weft config all open their store here, so that the three read the
// same flags (and FLANNELD_* variables) the same way and cannot drift.
package open

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/weftnet/weft/internal/metrics"
	"github.com/weftnet/weft/internal/options"
	"github.com/weftnet/weft/internal/store"
	etcdstore "github.com/weftnet/weft/internal/store/etcd"
	kubestore "github.com/weftnet/weft/internal/store/kube"
)

// Store is every store Open returns: a lease store that also lists leases
// once and reads the config as stored. The caller closes it.
type Store interface {
	store.Store
	store.Lister
	store.RawConfigReader
	Close() error
}

var (
	_ Store = (*etcdstore.Store)(nil)
	_ Store = (*kubestore.Store)(nil)
)

// Params are what the options do not say.
type Params struct {
	// Log receives the store's messages, with a "store" attribute added;
	// nil discards them.
	Log *slog.Logger
	// Metrics counts the etcd store's watch restarts and errors; nil
	// records nothing.
	Metrics *metrics.Metrics
	// ReadOnly is for tools that only read (status, config get): in
	// Kubernetes mode the own Node's name is then not needed.
	ReadOnly bool
}

// New opens the store o names. Neither store waits for its server here
// (see etcdstore.New and kubestore.New); the first call finds out.
func New(ctx context.Context, o options.Options, p Params) (Store, error) {
	log := p.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.KubeSubnetMgr {
		st, err := kubestore.New(ctx, kubestore.Options{
			KubeconfigFile:            o.KubeconfigFile,
			APIURL:                    o.KubeAPIURL,
			AnnotationPrefix:          o.KubeAnnotationPrefix,
			NetConfigPath:             o.NetConfigPath,
			SetNodeNetworkUnavailable: o.SetNodeNetworkUnavailable,
			ReadOnly:                  p.ReadOnly,
			Log:                       log.With("store", "kube"),
		})
		if err != nil {
			return nil, fmt.Errorf("connect to the Kubernetes API: %w", err)
		}
		return st, nil
	}
	st, err := etcdstore.New(ctx, etcdstore.Options{
		Endpoints: o.Endpoints(),
		Prefix:    o.EtcdPrefix,
		CertFile:  o.EtcdCertfile,
		KeyFile:   o.EtcdKeyfile,
		CAFile:    o.EtcdCAFile,
		Username:  o.EtcdUsername,
		Password:  o.EtcdPassword,
		Log:       log.With("store", "etcd"),
		Metrics:   p.Metrics,
	})
	if err != nil {
		return nil, fmt.Errorf("connect to etcd at %s: %w", o.EtcdEndpoints, err)
	}
	return st, nil
}

// Describe names the store o points at for a report's header, without
// credentials: "etcd http://10.4.7.12:2379 /coreos.com/network", or
// "kubernetes https://10.0.0.1:6443 (config /etc/kube-flannel/net-conf.json)".
func Describe(o options.Options) string {
	if o.KubeSubnetMgr {
		api := o.KubeAPIURL
		switch {
		case api != "":
		case o.KubeconfigFile != "":
			api = "from " + o.KubeconfigFile
		default:
			api = "in-cluster"
		}
		return fmt.Sprintf("kubernetes %s (config %s)", redactURL(api), netConfigPath(o))
	}
	eps := o.Endpoints()
	for i, e := range eps {
		eps[i] = redactURL(e)
	}
	return "etcd " + strings.Join(eps, ",") + " " + prefix(o)
}

// ConfigKey is where the config lives, as the store opened from o would
// name it, without opening it: the etcd key <prefix>/config, or the
// --net-config-path file.
func ConfigKey(o options.Options) string {
	if o.KubeSubnetMgr {
		return netConfigPath(o)
	}
	return prefix(o) + "/config"
}

func prefix(o options.Options) string {
	p := o.EtcdPrefix
	if p == "" {
		p = etcdstore.DefaultPrefix
	}
	return strings.TrimRight(p, "/")
}

func netConfigPath(o options.Options) string {
	if o.NetConfigPath == "" {
		return kubestore.DefaultNetConfigPath
	}
	return o.NetConfigPath
}

// redactURL drops a password written into a URL (http://user:pw@host).
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	return u.Redacted()
}
