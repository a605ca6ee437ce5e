package kubestore

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/store"
)

var (
	_ store.PublishedReader  = (*Store)(nil)
	_ store.PublicIPSource   = (*Store)(nil)
	_ store.PublicIPv6Source = (*Store)(nil)
	_ store.Completer        = (*Store)(nil)
	_ store.ConfigHinter     = (*Store)(nil)
)

// Published returns what the own Node's annotations say this host
// published; publicIP is not needed, the Node is ours.
func (s *Store) Published(ctx context.Context, _ netip.Addr, _ string) (lease.Attrs, error) {
	return s.StoredBackendData(ctx)
}

// PublicIP is the node-public-ip annotation an administrator set, if any.
func (s *Store) PublicIP(ctx context.Context) (netip.Addr, bool, error) {
	return s.NodePublicIP(ctx)
}

// PublicIPv6 is the node-public-ipv6 annotation an administrator set, if
// any.
func (s *Store) PublicIPv6(ctx context.Context) (netip.Addr, bool, error) {
	return s.NodePublicIPv6(ctx)
}

// LeasesIPv6Only implements store.IPv6OnlyLeaser: an IPv6-only config
// takes the Node's IPv6 podCIDR alone, as flannel's kube subnet manager
// does.
func (s *Store) LeasesIPv6Only() bool { return true }

// Complete sets the Node's NetworkUnavailable condition to False.
func (s *Store) Complete(ctx context.Context) error { return s.MarkNetworkAvailable(ctx) }

// ConfigHint says where Kubernetes mode reads the network config from.
func (s *Store) ConfigHint() string {
	return fmt.Sprintf("create %s, normally from the net-conf.json key of the DaemonSet's ConfigMap (see deploy/kube-weft.yml)", s.netConf)
}
