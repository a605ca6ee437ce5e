// Package backend defines how a data plane plugs into the agent. A backend
// turns the full set of peer leases into kernel state (routes, neighbours,
// FDB entries, devices) and keeps that state true: Apply is idempotent and
// is called with the whole desired set, never with a delta.
package backend

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/weftnet/weft/internal/kernel"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/metrics"
	"github.com/weftnet/weft/internal/netconf"
)

// ExternalInterface is the host interface that carries traffic between hosts.
type ExternalInterface struct {
	Name     string
	Index    int
	MTU      int
	Addr     netip.Addr // the interface's own IPv4 address
	PublicIP netip.Addr // what peers use to reach us (--public-ip, or Addr)
	// Addr6 is the interface's own global IPv6 address and PublicIPv6
	// what peers reach us at over IPv6 (--public-ipv6, or Addr6); both
	// zero when the interface has none and no --public-ipv6 is given.
	// They are filled whatever the config: the agent requires them only
	// when it enables IPv6.
	Addr6      netip.Addr
	PublicIPv6 netip.Addr
}

// Config is what every backend is built from.
type Config struct {
	Ext     ExternalInterface
	Network *netconf.Config
	Log     *slog.Logger
	// StateDir is where a backend keeps what must survive restarts (e.g.
	// the vxlan VTEP MAC); it is the directory of subnet.env.
	StateDir string
	// ReconcilePeriod is how often Run re-applies the desired state even
	// when nothing was reported deleted; zero means the backend's default.
	ReconcilePeriod time.Duration
	// Published is the backend data the store last recorded for this host
	// (the own lease's BackendData, or in Kubernetes mode the node's
	// backend-data annotation). A backend may take its identity back from
	// it when its own state is gone, as vxlan does with its VTEP MAC after a
	// reboot wiped the state file. Nil when nothing was published.
	Published json.RawMessage
	// PublishedV6 is the same for the lease's BackendV6Data (vxlan's
	// flannel-v6 VTEP MAC); nil when nothing was published.
	PublishedV6 json.RawMessage
	// Metrics counts repairs by kind; nil records nothing.
	Metrics *metrics.Metrics
	// UDP is the agent's --udp-offload and --udp-queues, for the udp
	// backend; the zero value is its default (offloads, one queue).
	UDP UDPTuning
}

// UDPTuning is how the udp backend moves packets on this host; the wire
// format is the same whatever it says.
type UDPTuning struct {
	NoOffload bool // the batched path of one packet per read of flannel0
	Queues    int  // queues of flannel0 to read; 0 or 1 means one
}

// Period is how often a backend repairs: opt (its Options') when set,
// else c.ReconcilePeriod when set, else the backend's default def.
func (c Config) Period(opt, def time.Duration) time.Duration {
	switch {
	case opt > 0:
		return opt
	case c.ReconcilePeriod > 0:
		return c.ReconcilePeriod
	}
	return def
}

// Logger is c.Log, or a logger that discards when it is nil, with the
// backend's name attached to every line.
func (c Config) Logger(backendType string) *slog.Logger {
	log := c.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return log.With("backend", backendType)
}

// Built returns what a backend's constructor returned as a Backend: b, or
// a nil Backend when err is set rather than an interface holding a nil
// pointer, which callers would not see as nil.
func Built[B Backend](b B, err error) (Backend, error) {
	if err != nil {
		return nil, err
	}
	return b, nil
}

// CheckConfig checks what every backend that carries traffic to peers'
// public IPs needs of cfg: an IPv4 cluster Network, an external interface,
// and an IPv4 address on it. Each error starts with backendType and names
// what is missing, and where. It returns cfg.Ext with PublicIP defaulted to
// Addr, the address peers reach this host at when --public-ip is not set.
//
// An IPv6-only network (EnableIPv4 false) is refused here, naming the
// backend: a backend that runs one checks it with CheckConfigIPv6Only
// instead (host-gw, vxlan and wireguard do; udp carries IPv4 underneath,
// as flannel's).
func CheckConfig(backendType string, cfg Config) (ExternalInterface, error) {
	if cfg.Network != nil && !cfg.Network.EnableIPv4 {
		return ExternalInterface{}, fmt.Errorf(`%s does not run an IPv6-only network ("EnableIPv4": false) in this version: use host-gw, vxlan or wireguard, or enable IPv4 ("EnableIPv4": true with a Network) for dual-stack`, backendType)
	}
	if cfg.Network == nil || !cfg.Network.Network.IsValid() || !cfg.Network.Network.Addr().Is4() {
		return ExternalInterface{}, fmt.Errorf("%s needs an IPv4 cluster Network", backendType)
	}
	ext := cfg.Ext
	if ext.Index == 0 || ext.Name == "" {
		return ExternalInterface{}, fmt.Errorf("%s needs an external interface", backendType)
	}
	if !ext.Addr.IsValid() || !ext.Addr.Is4() {
		return ExternalInterface{}, fmt.Errorf("%s needs an IPv4 address on interface %s", backendType, ext.Name)
	}
	if !ext.PublicIP.IsValid() {
		ext.PublicIP = ext.Addr
	}
	return ext, nil
}

// CheckConfigIPv6Only is CheckConfig for an IPv6-only network
// (EnableIPv4 false): an IPv6Network, an external interface and an IPv6
// address peers reach this host at (its global address, or
// --public-ipv6). It returns cfg.Ext with PublicIPv6 defaulted to Addr6.
func CheckConfigIPv6Only(backendType string, cfg Config) (ExternalInterface, error) {
	if cfg.Network == nil || !cfg.Network.EnableIPv6 || !cfg.Network.IPv6Network.IsValid() || !cfg.Network.IPv6Network.Addr().Is6() {
		return ExternalInterface{}, fmt.Errorf("%s needs an IPv6Network when IPv4 is disabled", backendType)
	}
	ext := cfg.Ext
	if ext.Index == 0 || ext.Name == "" {
		return ExternalInterface{}, fmt.Errorf("%s needs an external interface", backendType)
	}
	if !ext.PublicIPv6.IsValid() {
		ext.PublicIPv6 = ext.Addr6
	}
	if !ext.PublicIPv6.IsValid() || !ext.PublicIPv6.Is6() {
		return ExternalInterface{}, fmt.Errorf("%s needs a global IPv6 address on interface %s (or --public-ipv6) for an IPv6-only network", backendType, ext.Name)
	}
	return ext, nil
}

// DeviceAddr is the address an overlay device (vxlan's flannel.<VNI> and
// flannel-v6.<VNI>, udp's flannel0) holds: the own subnet's network
// address as a /32 (a /128 for an IPv6 subnet), as flannel gives it, so
// that no broadcast route appears and packets the host itself sends have
// a source the peers route back.
func DeviceAddr(own netip.Prefix) netip.Prefix {
	return netip.PrefixFrom(own.Masked().Addr(), own.Addr().BitLen())
}

// Backend is one host's data plane for one network.
//
// The agent calls LeaseAttrs and MTU before it acquires a lease, Start once
// with the lease, then Apply whenever the set of leases changes, while Run
// repairs drift until its context is done. Apply and Run may run
// concurrently. Stopping leaves kernel state in place so that a restarted
// agent does not interrupt running pods.
type Backend interface {
	// LeaseAttrs returns the backend type and data this host publishes.
	LeaseAttrs() (backendType string, data json.RawMessage)
	// MTU is the MTU pods should use (FLANNEL_MTU).
	MTU() int
	// Start prepares host-side state for the own lease (devices, addresses).
	Start(ctx context.Context, own lease.Lease) error
	// Apply makes the kernel match the given leases: entries for every peer
	// of this backend's type, none for leases that are gone. The own lease
	// may be in the set and is ignored. Errors for single peers are joined;
	// one bad peer never blocks the others.
	Apply(ctx context.Context, leases []lease.Lease) error
	// Run re-applies the last desired state on a timer and when the kernel
	// reports a deletion, until ctx is done.
	Run(ctx context.Context) error
}

// V6Publisher is implemented by a backend whose IPv6 side publishes data
// of its own in the lease's BackendV6Data (vxlan: the VTEP MAC of
// flannel-v6.<VNI>, {"VNI":1,"VtepMAC":"..."}). A backend without it
// publishes no BackendV6Data, as flannel's host-gw does. The agent asks
// only when the network config enables IPv6; nil means none.
type V6Publisher interface {
	LeaseV6Data() json.RawMessage
}

// LeaseV6Data is b's BackendV6Data: nil unless b is a V6Publisher.
func LeaseV6Data(b Backend) json.RawMessage {
	if p, ok := b.(V6Publisher); ok {
		return p.LeaseV6Data()
	}
	return nil
}

// BulkChanges is how many peers one Apply (or one snapshot of leases) may
// change before the per-peer log lines go to debug level behind one
// summary line at info. An agent starting among thousands of hosts would
// otherwise write thousands of lines at once; normal churn, a few peers at
// a time, keeps one line per peer at info.
const BulkChanges = 100

// Factory builds a backend from its config. It fails, with a message that
// says why, when the host cannot run this backend (host-gw behind NAT, say).
type Factory func(cfg Config) (Backend, error)

// NoteRouteOps tells note of each route a kernel.Sync changed, in the
// words the backends' logs use ("route added", "route replaced" with what
// it was and what was wrong, "route removed"); names maps link indexes to
// device names for the rendering.
func NoteRouteOps(done []kernel.Op, names map[int]string, note func(msg string, args ...any)) {
	for _, op := range done {
		switch {
		case op.Kind == kernel.Delete:
			note("route removed", "route", op.Route.Format(names))
		case op.Prev != (kernel.Route{}):
			note("route replaced", "route", op.Route.Format(names), "was", op.Prev.Format(names),
				"wrong", kernel.RouteChange(op.Route, op.Prev, names))
		default:
			note("route added", "route", op.Route.Format(names))
		}
	}
}
