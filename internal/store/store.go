// Package store defines the seam between the agent and wherever leases live:
// etcd (flannel's key layout), and later the Kubernetes API. A store hands
// out whole snapshots of the peer set rather than a stream of events, so the
// data plane applies desired state and never depends on replaying history.
package store

import (
	"context"
	"errors"
	"net/netip"

	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/netconf"
)

// ErrNoConfig is returned by Config when the store holds no network config
// yet. The agent waits and retries on it; any other error is reported as is.
var ErrNoConfig = errors.New("network config not found")

// ErrPoolExhausted is wrapped by Acquire when every subnet between SubnetMin
// and SubnetMax is taken.
var ErrPoolExhausted = lease.ErrPoolExhausted

// AcquireRequest says who is asking for a lease.
type AcquireRequest struct {
	Attrs lease.Attrs // what this host publishes; Attrs.PublicIP is its identity
	// Previous is the subnet this host used last time (from subnet.env), if
	// any. It is reused when still free.
	Previous netip.Prefix
	// PreviousIPv6 is the IPv6 subnet this host used last time
	// (FLANNEL_IPV6_SUBNET), reused when still free and the config
	// enables IPv6.
	PreviousIPv6 netip.Prefix
	// NewHostID says Attrs.HostID was generated on this start
	// (lease.PickInput.NewHostID).
	NewHostID bool
}

// Store is a lease store. Methods may be called concurrently.
type Store interface {
	// Config returns the cluster's network config, or an error wrapping
	// ErrNoConfig when none is stored yet.
	Config(ctx context.Context) (*netconf.Config, error)
	// Acquire leases a subnet for this host, in flannel's order: the lease
	// already carrying our PublicIP, else Previous if free, else a random
	// free subnet. The returned lease's attributes are the ones stored.
	Acquire(ctx context.Context, cfg *netconf.Config, req AcquireRequest) (lease.Lease, error)
	// Renew extends the lease and returns it with its new expiration. A
	// reservation is returned unchanged. If the lease vanished from the store
	// Renew re-creates it for the same subnet when the subnet is still free.
	Renew(ctx context.Context, l lease.Lease) (lease.Lease, error)
	// Watch calls fn with the full set of current leases (own included) once
	// at start and again after every change, until ctx is done. Calls are
	// sequential. It survives disconnects and compaction on its own and only
	// returns ctx.Err() or an error that retrying cannot fix.
	Watch(ctx context.Context, fn func([]lease.Lease)) error
}

// Optional abilities. The agent checks for them with a type assertion, so a
// store offers only what makes sense for it.

// PublishedReader is a store that remembers what this host published
// before: the backend type and data of its previous lease. A backend may
// take identity back from it (the vxlan VTEP MACs after a reboot).
type PublishedReader interface {
	// Published returns the BackendType, BackendData and BackendV6Data
	// this host published (the other fields are not filled); zero Attrs
	// when it published nothing. hostID is this host's identity: a lease
	// carrying another host's ID is not this host's, even with its
	// PublicIP ("" matches any).
	Published(ctx context.Context, publicIP netip.Addr, hostID string) (lease.Attrs, error)
}

// PublicIPSource is a store that can override --public-ip (Kubernetes:
// the node's node-public-ip annotation). ok is false when it has no say.
type PublicIPSource interface {
	PublicIP(ctx context.Context) (ip netip.Addr, ok bool, err error)
}

// PublicIPv6Source is PublicIPSource for --public-ipv6 (Kubernetes: the
// node-public-ipv6 annotation).
type PublicIPv6Source interface {
	PublicIPv6(ctx context.Context) (ip netip.Addr, ok bool, err error)
}

// IPv6OnlyLeaser is a store that leases an IPv6 subnet alone, for a
// network config with "EnableIPv4": false (Kubernetes: a Node's IPv6
// podCIDR). The etcd store is none: flannel's lease key always names an
// IPv4 subnet (netconf.Config.CheckEtcd).
type IPv6OnlyLeaser interface {
	LeasesIPv6Only() bool
}

// LeasesIPv6Only reports whether s is an IPv6OnlyLeaser that says so.
func LeasesIPv6Only(s Store) bool {
	l, ok := s.(IPv6OnlyLeaser)
	return ok && l.LeasesIPv6Only()
}

// Completer is a store that wants to hear when the data plane is up
// (Kubernetes: the node's NetworkUnavailable condition goes False).
type Completer interface {
	Complete(ctx context.Context) error
}

// ConfigHinter is a store that can tell an operator how to create the
// missing network config.
type ConfigHinter interface {
	ConfigHint() string
}

// Lister is a store that reads every lease once, ordered by subnet, for
// tools that look rather than follow (weft status).
type Lister interface {
	List(ctx context.Context) ([]lease.Lease, error)
}

// RawConfigReader is a store that hands out the network config as stored,
// byte for byte, for weft config get.
type RawConfigReader interface {
	// ConfigKey names where the config lives (an etcd key, a file), for
	// messages.
	ConfigKey() string
	// RawConfig returns the stored bytes, or an error wrapping ErrNoConfig
	// when there are none.
	RawConfig(ctx context.Context) ([]byte, error)
}

// TroubleReporter is a store whose own background work (the watch, which
// retries by itself) meets errors that no caller sees. Once given a
// function, it reports each such error to it instead of logging it, and
// nil once the work succeeds again, so that the agent logs them with its
// other store trouble: classified, once at the start, rate-limited while
// it lasts, and once at the end.
type TroubleReporter interface {
	ReportTrouble(report func(op string, err error))
}

// ConfigNotifier is a store that can tell when its network config may
// have changed, so that a deleted or broken config is noticed at once
// rather than at the next periodic check. The channel carries at most one
// pending signal and is closed when ctx ends.
type ConfigNotifier interface {
	ConfigChanges(ctx context.Context) <-chan struct{}
}
