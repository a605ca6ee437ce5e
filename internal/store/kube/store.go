// Package kubestore is the store for flanneld's --kube-subnet-mgr mode: the
// Kubernetes API instead of etcd. Nothing is allocated here; the node's
// subnet is its spec.podCIDR, assigned by kube-controller-manager
// (--allocate-node-cidrs), and each host publishes what peers need in
// annotations on its own Node, exactly as flannel writes them:
//
//	flannel.alpha.coreos.com/backend-data: {"VNI":1,"VtepMAC":"d2:0f:6f:22:fd:12"}   ("null" for host-gw)
//	flannel.alpha.coreos.com/backend-type: vxlan
//	flannel.alpha.coreos.com/kube-subnet-manager: "true"
//	flannel.alpha.coreos.com/public-ip: 192.168.77.12
//
// so that flannel and weft nodes are peers of each other and a cluster can
// move from one to the other node by node. Writes go to the nodes/status
// subresource only, because that is all flannel's ClusterRole allows
// (pods get; nodes get, list, watch; nodes/status patch).
//
// Differences from flanneld, on purpose:
//   - A node without a podCIDR makes Acquire wait (and say which
//     kube-controller-manager flags fix it) instead of exiting, which in a
//     DaemonSet turns into a crash loop.
//   - A Node without annotations, or with garbage ones, is skipped with one
//     log line; flannel panics on the first and logs every event of the
//     second.
//   - Leases never expire: a podCIDR lasts as long as its Node. Acquire and
//     Watch return leases with a zero Expiration, so the agent arms no
//     renewal timer; Renew only puts the annotations back if something
//     removed them.
package kubestore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/netconf"
	"github.com/weftnet/weft/internal/store"
	"github.com/weftnet/weft/internal/version"
)

// errNoNode is what a read-only store without a node name answers when
// asked about its own Node.
var errNoNode = errors.New("this store does not know its own Node (read-only, no node name given)")

// DefaultNetConfigPath is flanneld's --net-config-path default: where the
// DaemonSet mounts the ConfigMap's net-conf.json.
const DefaultNetConfigPath = "/etc/kube-flannel/net-conf.json"

// Options configure the connection to the API server and what the store
// reads and writes.
type Options struct {
	// KubeconfigFile and APIURL select the API server as flanneld's
	// --kubeconfig-file and --kube-api-url do: either may be set, and APIURL
	// overrides the kubeconfig's server. With neither, the in-cluster config
	// (the pod's ServiceAccount) is used.
	KubeconfigFile string
	APIURL         string
	// NodeName is the own Node. Empty means: $NODE_NAME, else the
	// spec.nodeName of the pod $POD_NAMESPACE/$POD_NAME.
	NodeName string
	// AnnotationPrefix is --kube-annotation-prefix; default
	// DefaultAnnotationPrefix. A prefix without a slash gets one appended.
	AnnotationPrefix string
	// NetConfigPath is the network config file; default
	// DefaultNetConfigPath.
	NetConfigPath string
	// SetNodeNetworkUnavailable is --set-node-network-unavailable: when
	// false, MarkNetworkAvailable does nothing.
	SetNodeNetworkUnavailable bool
	// ReadOnly is for tools that only read the config and list leases
	// (weft status, weft config get) and may run on a machine that is no
	// node: an empty NodeName is then left empty rather than looked up,
	// and whatever needs the own Node fails.
	ReadOnly bool
	// CallTimeout bounds every API request but watches; default
	// DefaultCallTimeout.
	CallTimeout time.Duration
	// Log receives the store's messages; nil discards them.
	Log *slog.Logger
}

// Store is a store.Store on the Kubernetes API. Its methods may be called
// concurrently.
type Store struct {
	cs      *Client
	node    string
	keys    keys
	netConf string
	markUp  bool
	log     *slog.Logger
	// want is what Acquire published, for Renew to restore.
	want wantState
	// report, when set, gets the node watch's errors instead of the log.
	report func(op string, err error)
}

var _ store.Store = (*Store)(nil)

// New builds a client from the options and resolves the own node's name.
// It contacts the API server only when the node name has to be read from
// the pod; nothing else is checked until the first call.
func New(ctx context.Context, o Options) (*Store, error) {
	cfg, err := restConfig(o.KubeconfigFile, o.APIURL)
	if err != nil {
		return nil, err
	}
	cs, err := NewClient(cfg)
	if err != nil {
		return nil, err
	}
	return newStore(ctx, cs, o)
}

// newStore is New with the client given.
func newStore(ctx context.Context, cs *Client, o Options) (*Store, error) {
	k, err := newKeys(o.AnnotationPrefix)
	if err != nil {
		return nil, fmt.Errorf("--kube-annotation-prefix: %w", err)
	}
	if o.NetConfigPath == "" {
		o.NetConfigPath = DefaultNetConfigPath
	}
	if o.CallTimeout > 0 {
		cs.timeout = o.CallTimeout
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	name := o.NodeName
	if name == "" && !o.ReadOnly {
		if name, err = NodeName(ctx, cs, os.Getenv); err != nil {
			return nil, err
		}
	}
	return &Store{
		cs:      cs,
		node:    name,
		keys:    k,
		netConf: o.NetConfigPath,
		markUp:  o.SetNodeNetworkUnavailable,
		log:     log.With("node", name),
	}, nil
}

// restConfig follows flanneld: a kubeconfig and/or an API URL when given,
// else the in-cluster config.
func restConfig(kubeconfig, apiURL string) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig == "" && apiURL == "" {
		cfg, err = rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster Kubernetes config (no --kubeconfig-file or --kube-api-url given): %w", err)
		}
	} else {
		cfg, err = clientcmd.BuildConfigFromFlags(apiURL, kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("Kubernetes client config from kubeconfig %q, API URL %q: %w", kubeconfig, apiURL, err)
		}
	}
	cfg.UserAgent = "weft/" + version.Version
	return cfg, nil
}

// NodeName finds the own node's name as flanneld does: $NODE_NAME, else the
// node the pod $POD_NAMESPACE/$POD_NAME is scheduled on (one GET of the pod,
// which flannel's ClusterRole allows).
func NodeName(ctx context.Context, cs *Client, getenv func(string) string) (string, error) {
	if n := strings.TrimSpace(getenv("NODE_NAME")); n != "" {
		return n, nil
	}
	ns, pod := strings.TrimSpace(getenv("POD_NAMESPACE")), strings.TrimSpace(getenv("POD_NAME"))
	if ns == "" || pod == "" {
		return "", errors.New("cannot tell which node this is: set NODE_NAME, or POD_NAME and POD_NAMESPACE (the DaemonSet passes them from the downward API)")
	}
	p, err := cs.GetPod(ctx, ns, pod)
	if err != nil {
		return "", fmt.Errorf("find this node's name from pod %s/%s (NODE_NAME is not set): %w", ns, pod, err)
	}
	if p.Spec.NodeName == "" {
		return "", fmt.Errorf("pod %s/%s has no spec.nodeName yet; set NODE_NAME instead", ns, pod)
	}
	return p.Spec.NodeName, nil
}

// Node returns the name of the own node.
func (s *Store) Node() string { return s.node }

// Config implements store.Store: it reads and parses the network config
// file. A missing file wraps store.ErrNoConfig, so the agent waits for the
// ConfigMap to be mounted.
func (s *Store) Config(ctx context.Context) (*netconf.Config, error) {
	data, err := s.RawConfig(ctx)
	if err != nil {
		return nil, err
	}
	cfg, err := netconf.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", store.ErrInvalidConfig, s.netConf, err)
	}
	return cfg, nil
}

// ConfigKey is the network config file (--net-config-path).
func (s *Store) ConfigKey() string { return s.netConf }

// RawConfig reads the network config file as it is. A missing file wraps
// store.ErrNoConfig.
func (s *Store) RawConfig(context.Context) ([]byte, error) {
	data, err := os.ReadFile(s.netConf)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("network config file %s does not exist (in a DaemonSet it is net-conf.json of the ConfigMap mounted there): %w", s.netConf, store.ErrNoConfig)
	}
	if err != nil {
		return nil, fmt.Errorf("read network config: %w", err)
	}
	return data, nil
}

// Close releases nothing: the client keeps no connection that outlives a
// request. It is here so that callers close every store alike.
func (s *Store) Close() error { return nil }

// NodePublicIP returns the address an administrator set in the own node's
// <prefix>/node-public-ip annotation, which replaces --public-ip (and so
// drives interface selection) when present. ok is false when the
// annotation is absent; an unparseable value is an error.
func (s *Store) NodePublicIP(ctx context.Context) (ip netip.Addr, ok bool, err error) {
	n, err := s.getNode(ctx)
	if err != nil {
		return netip.Addr{}, false, err
	}
	v := strings.TrimSpace(n.Annotations[s.keys.nodePublicIP])
	if v == "" {
		return netip.Addr{}, false, nil
	}
	ip, err = netip.ParseAddr(v)
	if err != nil || !ip.Unmap().Is4() {
		return netip.Addr{}, false, fmt.Errorf("node %q: annotation %s=%q is not an IPv4 address", s.node, s.keys.nodePublicIP, v)
	}
	return ip.Unmap(), true, nil
}

// NodePublicIPv6 is NodePublicIP for the <prefix>/node-public-ipv6
// annotation, which replaces --public-ipv6.
func (s *Store) NodePublicIPv6(ctx context.Context) (ip netip.Addr, ok bool, err error) {
	n, err := s.getNode(ctx)
	if err != nil {
		return netip.Addr{}, false, err
	}
	v := strings.TrimSpace(n.Annotations[s.keys.nodePublicIPv6])
	if v == "" {
		return netip.Addr{}, false, nil
	}
	ip, err = netip.ParseAddr(v)
	if err != nil || !ip.Is6() || ip.Is4In6() || ip.Zone() != "" {
		return netip.Addr{}, false, fmt.Errorf("node %q: annotation %s=%q is not an IPv6 address", s.node, s.keys.nodePublicIPv6, v)
	}
	return ip, true, nil
}

// StoredBackendData returns the backend type, data and v6 data the own
// node published last time (nil data when there is none, or when it is
// "null"), so that the vxlan backend can keep its VtepMACs across restarts
// as flannel does. Callers must check the type before trusting the data.
func (s *Store) StoredBackendData(ctx context.Context) (lease.Attrs, error) {
	n, err := s.getNode(ctx)
	if err != nil {
		return lease.Attrs{}, err
	}
	a := lease.Attrs{BackendType: n.Annotations[s.keys.backendType]}
	for _, f := range []struct {
		key string
		to  *json.RawMessage
	}{{s.keys.backendData, &a.BackendData}, {s.keys.backendV6Data, &a.BackendV6Data}} {
		if _, ok := n.Annotations[f.key]; !ok {
			continue
		}
		if *f.to, err = annotationJSON(n, f.key); err != nil {
			return lease.Attrs{BackendType: a.BackendType}, err
		}
	}
	return a, nil
}

func (s *Store) getNode(ctx context.Context) (*corev1.Node, error) {
	if s.node == "" {
		return nil, errNoNode
	}
	n, err := s.cs.GetNode(ctx, s.node)
	if err != nil {
		return nil, fmt.Errorf("get node %q: %w", s.node, err)
	}
	return n, nil
}
