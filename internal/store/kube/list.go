package kubestore

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/store"
)

var (
	_ store.Lister          = (*Store)(nil)
	_ store.RawConfigReader = (*Store)(nil)
)

// List reads every Node once (one list call, which flannel's ClusterRole
// allows) and returns the leases they carry, ordered by subnet: the set
// Watch's snapshots hold, for tools that look rather than follow (weft
// status). Nodes whose annotations or podCIDR are unusable are left out
// with one warning each; Nodes not managed by flannel or weft, and Nodes
// without a podCIDR yet, quietly. The leases never expire (zero
// Expiration). On an IPv6-only network (the network config's
// "EnableIPv4": false) the Nodes' IPv6 podCIDRs are the leases.
func (s *Store) List(ctx context.Context) ([]lease.Lease, error) {
	nl, err := s.cs.ListNodes(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	objs := make([]any, len(nl.Items))
	for i := range nl.Items {
		objs[i] = &nl.Items[i]
	}
	p := &peerSet{keys: s.keys, warned: make(map[string]string), s: s}
	// A lister that never acquired (weft status) learns the families
	// from the network config: an IPv6-only network's Nodes have no IPv4
	// podCIDR and would all be left out as not for this host.
	if cfg, err := s.Config(ctx); err == nil {
		p.v6only = !cfg.EnableIPv4
	}
	return p.snapshot(objs), nil
}
