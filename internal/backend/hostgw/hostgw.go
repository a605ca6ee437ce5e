// Package hostgw is the host-gw backend: every host routes each peer's pod
// subnet straight to that peer's address on the shared L2 segment,
//
//	ip route replace 10.244.3.0/24 via 192.168.1.3 dev eth0 proto 87
//
// with no encapsulation, so it only works when all hosts are on one L2
// network and no NAT sits between them. It is wire-compatible with
// flannel's host-gw: the same lease attributes, the same routes.
//
// Unlike flannel, which adds and deletes routes per lease event and only
// re-adds the ones it remembers, this backend reconciles: Apply receives
// every lease, and the main table is made to hold exactly one route per
// host-gw peer and no other route this backend owns. It owns every route
// with a gateway whose destination lies inside the cluster network and
// does not overlap this host's own subnet, which is also what flannel's
// host-gw leaves behind, so routes of peers that left while no agent ran
// (flannel issue #2554) go away at the first Apply. Run repairs drift on a
// timer and within milliseconds of a route deletion or change the kernel
// reports.
//
// A dual-stack network (EnableIPv6) gets the same for IPv6, as flannel's
// host-gw programs it: each peer's IPv6Subnet via its PublicIPv6,
//
//	ip -6 route replace fd00:50:0:3::/64 via fd00:4:7::23 dev eth0 proto 87
//
// owned, planned, repaired and cleaned up by the same rules inside the
// IPv6Network. An IPv6-only network ("EnableIPv4": false, Kubernetes
// mode) gets the IPv6 routes alone. Each family needs the hosts on one L2 segment on its own: a
// peer whose PublicIPv6 is not on a network of the external interface
// gets its IPv4 route and an error naming the IPv6 side. A peer whose
// lease has no IPv6 subnet (its agent still on an IPv4-only config) gets
// its IPv4 route alone, said once in the log.
package hostgw

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	vns "github.com/vishvananda/netns"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/kernel"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/metrics"
	"github.com/weftnet/weft/internal/netconf"
)

// BackendType is the lease BackendType of this backend, as flannel names it.
const BackendType = "host-gw"

// DefaultReconcilePeriod is how often Run re-applies by default; flannel's
// host-gw checks its routes every 10 s as well.
const DefaultReconcilePeriod = 10 * time.Second

// Options are the knobs New leaves at their defaults.
type Options struct {
	// ReconcilePeriod is how often Run re-applies the last desired state;
	// 0 means the Config's, and DefaultReconcilePeriod when that is 0 too.
	ReconcilePeriod time.Duration
	// Handle programs the routes; nil means a handle in the caller's
	// network namespace. The backend never closes it.
	Handle kernel.RouteHandle
	// Netns is the namespace Handle works in, where Run subscribes to route
	// deletions; nil means the caller's. It must be set with Handle unless
	// NoSubscribe is, so that the subscription watches the table that
	// Handle programs. The backend never closes it.
	Netns *vns.NsHandle
	// NoSubscribe makes Run repair on its timer only.
	NoSubscribe bool
}

// Backend is the host-gw data plane of one host.
type Backend struct {
	ext     backend.ExternalInterface
	network netip.Prefix
	// network6 is the IPv6Network when the config enables IPv6, else
	// invalid, which owns and plans no IPv6 route.
	network6 netip.Prefix
	log      *slog.Logger
	opts     Options
	names    map[int]string // link names for logs: only the external interface
	metrics  *metrics.Metrics

	repairs atomic.Uint64
	// reconciles counts Run's repair passes, changes or not, so that tests
	// can bound the passes the kernel's echo of Apply's writes causes.
	reconciles atomic.Uint64

	// mu guards the fields below. It is also held across every kernel sync,
	// so that Apply and Run's repairs never interleave: a repair planned
	// from an older desired set must not run after, and undo, a newer Apply.
	mu      sync.Mutex
	own     lease.Lease // set by Start
	started bool
	applied bool                          // Apply ran at least once; before that Run touches nothing
	desired []kernel.Route                // from the last Apply
	peerOf  map[netip.Prefix]netip.Addr   // desired route Dst → the peer's PublicIP, for logs and errors
	plan    map[netip.Prefix]kernel.Route // desired routes by Dst, which route notifications are compared with
	ignored map[netip.Prefix]lease.Attrs  // leases of another backend type, by subnet, so each is logged once
	noV6    map[netip.Prefix]netip.Addr   // dual-stack only: peers without an IPv6 subnet, so each is logged once
	failing map[netip.Prefix]string       // Dst → last error a repair logged for it, so a dead peer is not logged every period
	// installed is what the last kernel sync left, when it completed
	// without a failure (nil otherwise). Apply plans against it instead of
	// dumping the whole table for every change; Run's repairs always read
	// the table, which is what catches changes made behind weft's back.
	installed []kernel.Route
}

// New builds the backend with default Options.
func New(cfg backend.Config) (backend.Backend, error) {
	return backend.Built(NewWithOptions(cfg, Options{}))
}

// NewWithOptions builds the backend. It refuses a host whose PublicIP is
// not the external interface's address: peers route to PublicIP directly,
// so it must be on the shared segment, which a NATed address is not.
func NewWithOptions(cfg backend.Config, o Options) (*Backend, error) {
	if err := supported(); err != nil {
		return nil, err
	}
	if err := checkConfig(cfg); err != nil {
		return nil, err
	}
	if o.Handle != nil && o.Netns == nil && !o.NoSubscribe {
		return nil, errors.New("host-gw: Options.Handle needs Options.Netns (or NoSubscribe), so that route deletions are watched where routes are programmed")
	}
	o.ReconcilePeriod = cfg.Period(o.ReconcilePeriod, DefaultReconcilePeriod)
	if o.Handle == nil {
		// A zero Handle opens a socket per request in the caller's
		// namespace and holds nothing that needs closing.
		o.Handle = &netlink.Handle{}
	}
	if !cfg.Ext.PublicIP.IsValid() {
		cfg.Ext.PublicIP = cfg.Ext.Addr
	}
	if !cfg.Ext.PublicIPv6.IsValid() {
		cfg.Ext.PublicIPv6 = cfg.Ext.Addr6
	}
	var network6 netip.Prefix
	if cfg.Network.EnableIPv6 {
		network6 = cfg.Network.IPv6Network
	}
	return &Backend{
		ext:      cfg.Ext,
		network:  cfg.Network.Network,
		network6: network6,
		log:      cfg.Logger(BackendType),
		metrics:  cfg.Metrics,
		opts:     o,
		names:    map[int]string{cfg.Ext.Index: cfg.Ext.Name},
	}, nil
}

func checkConfig(cfg backend.Config) error {
	if cfg.Network != nil && !cfg.Network.EnableIPv4 {
		ext, err := backend.CheckConfigIPv6Only(BackendType, cfg)
		if err != nil {
			return err
		}
		if ext.Addr6.IsValid() && ext.PublicIPv6 != ext.Addr6 {
			return fmt.Errorf("host-gw needs --public-ipv6 %s to be an address of interface %s (it has %s): "+
				"peers route pod subnets straight to this address, so it must be reachable on the same L2 segment", ext.PublicIPv6, ext.Name, ext.Addr6)
		}
		return nil
	}
	ext, err := backend.CheckConfig(BackendType, cfg)
	if err != nil {
		return err
	}
	if ext.PublicIP != ext.Addr {
		return fmt.Errorf("host-gw needs --public-ip %s to be an address of interface %s (it has %s): "+
			"peers route pod subnets straight to this address, so it must be reachable on the same L2 segment; "+
			"this host is probably behind NAT — use vxlan", ext.PublicIP, ext.Name, ext.Addr)
	}
	return nil
}

// LeaseAttrs returns host-gw and no backend data, as flannel publishes.
func (b *Backend) LeaseAttrs() (string, json.RawMessage) { return BackendType, nil }

// MTU is the external interface's: host-gw adds no header.
func (b *Backend) MTU() int { return b.ext.MTU }

// Start remembers the own lease; host-gw needs no device.
func (b *Backend) Start(ctx context.Context, own lease.Lease) error {
	if b.network.IsValid() && (!own.Subnet.IsValid() || !b.network.Contains(own.Subnet.Addr())) {
		return fmt.Errorf("host-gw: own lease %s is not inside the network %s", own.Subnet, b.network)
	}
	if (own.IPv6Subnet.IsValid() || !b.network.IsValid()) && !b.network6.Contains(own.IPv6Subnet.Addr()) {
		return fmt.Errorf("host-gw: own lease's IPv6 subnet %s is not inside the IPv6Network %s", own.IPv6Subnet, b.network6)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.own = own
	b.started = true
	return nil
}

// Repairs counts the route changes Run had to make because the kernel
// drifted from the last Apply: routes someone deleted or altered, or
// routes that could not be installed before and now could.
func (b *Backend) Repairs() uint64 { return b.repairs.Load() }

// owns reports whether r is a route this backend may replace or delete:
// via a gateway, inside the network (but not the whole network), and not
// overlapping the own subnet; or the same for IPv6, inside the
// IPv6Network and apart from the own IPv6 subnet. Callers hold mu.
func (b *Backend) owns(r kernel.Route) bool {
	return owns(b.network, b.network6, b.own, r)
}

func owns(network, network6 netip.Prefix, own lease.Lease, r kernel.Route) bool {
	return kernel.PeerRouteOwner(network, own.Subnet)(r) || kernel.PeerRouteOwner(network6, own.IPv6Subnet)(r)
}

// desiredState is what one set of leases asks of the kernel.
type desiredState struct {
	routes  []kernel.Route
	peerOf  map[netip.Prefix]netip.Addr
	ignored map[netip.Prefix]lease.Attrs // leases of another backend type
	errs    []error                      // host-gw leases that get no route, and why
	refused map[netip.Prefix]string      // the same leases by subnet: the reason alone
	// byPeer are the routes of each peer, by its (IPv4) subnet: the IPv4
	// route, then the IPv6 one when there is one.
	byPeer map[netip.Prefix][]kernel.Route
	// refusedV6 are the peers, by subnet, whose IPv4 route is planned but
	// whose IPv6 half gets none, and why; noV6 the peers, with their
	// PublicIP, whose lease has no IPv6 subnet at all. Both stay empty
	// unless network6 is valid.
	refusedV6 map[netip.Prefix]string
	noV6      map[netip.Prefix]netip.Addr
}

// desire computes the routes for leases: one per host-gw peer other than
// own, via the peer's PublicIP on ext, and with network6 valid (the
// config enables IPv6) one more to its IPv6Subnet via its PublicIPv6.
// Pure.
func desire(network, network6 netip.Prefix, own lease.Lease, ext backend.ExternalInterface, leases []lease.Lease) desiredState {
	st := desiredState{
		peerOf:    make(map[netip.Prefix]netip.Addr),
		ignored:   make(map[netip.Prefix]lease.Attrs),
		refused:   make(map[netip.Prefix]string),
		byPeer:    make(map[netip.Prefix][]kernel.Route),
		refusedV6: make(map[netip.Prefix]string),
		noV6:      make(map[netip.Prefix]netip.Addr),
	}
	// An IPv6-only network (network invalid) plans the IPv6 half alone,
	// and a peer whose IPv6 half is refused is refused as a whole.
	v6only := !network.IsValid()
	for _, l := range leases {
		subnet := l.Key().Masked()
		if subnet == own.Key().Masked() {
			continue
		}
		if l.Attrs.BackendType != BackendType {
			st.ignored[subnet] = l.Attrs
			continue
		}
		peer := l.Attrs.PublicIP
		if !v6only {
			reason := backend.PeerProblem(l, network, own, ext.PublicIP)
			if reason != "" {
				pub := backend.PeerName(l)
				st.errs = append(st.errs, fmt.Errorf("peer %s (subnet %s): no route: %s", pub, subnet, reason))
				st.refused[subnet] = reason
				continue
			}
			r := kernel.Route{
				Dst:       subnet,
				Gw:        peer,
				LinkIndex: ext.Index,
				Proto:     kernel.ProtoWeft,
			}
			st.routes = append(st.routes, r)
			st.peerOf[subnet] = peer
			st.byPeer[subnet] = append(st.byPeer[subnet], r)
		}
		if !network6.IsValid() {
			continue
		}
		if !l.IPv6Subnet.IsValid() {
			st.noV6[subnet] = peer
			continue
		}
		subnet6 := l.IPv6Subnet.Masked()
		if reason := backend.PeerV6Problem(l, network6, own, ext.PublicIPv6); reason != "" {
			if v6only {
				st.errs = append(st.errs, fmt.Errorf("peer %s (IPv6 subnet %s): no route: %s", backend.PeerName(l), subnet6, reason))
				st.refused[subnet] = reason
				continue
			}
			st.errs = append(st.errs, fmt.Errorf("peer %s (subnet %s, IPv6 subnet %s): no IPv6 route: %s", backend.PeerName(l), subnet, subnet6, reason))
			st.refusedV6[subnet] = reason
			continue
		}
		r6 := kernel.Route{
			Dst:       subnet6,
			Gw:        l.Attrs.PublicIPv6,
			LinkIndex: ext.Index,
			Proto:     kernel.ProtoWeft,
		}
		st.routes = append(st.routes, r6)
		st.peerOf[subnet6] = l.Attrs.PublicIPv6
		st.byPeer[subnet] = append(st.byPeer[subnet], r6)
	}
	return st
}

// Descriptor describes host-gw to the rest of weft.
func Descriptor() backend.Descriptor {
	return backend.Descriptor{
		Name:         BackendType,
		LeaseTypes:   []string{BackendType},
		IPv6:         true,
		New:          New,
		CheckOptions: func(raw json.RawMessage) error { _, err := ParseSettings(raw); return err },
		Expect:       expect,
	}
}

// Settings are host-gw's options: there are none, but the Backend object
// must still be an object.
type Settings struct{}

// ParseSettings checks the Backend object raw (nil means none) as
// flannel decodes it: keys are matched case-insensitively and unknown
// keys are ignored, so any JSON object will do.
func ParseSettings(raw json.RawMessage) (Settings, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return Settings{}, nil
	}
	var s Settings
	if err := json.Unmarshal(raw, &s); err != nil {
		return Settings{}, fmt.Errorf("host-gw options %s: %w", raw, err)
	}
	return s, nil
}

// expect is host-gw's Expectation: no device, and per peer the route
// desire plans, on the external interface.
func expect(cfg *netconf.Config, ext backend.ExternalInterface) (backend.Expectation, error) {
	if _, err := ParseSettings(cfg.Backend); err != nil {
		return backend.Expectation{}, err
	}
	return backend.Expectation{
		PodMTU:   ext.MTU,
		MTUBasis: fmt.Sprintf("%s's MTU", ext.Name),
		Wants: func(own lease.Lease, ownPublicIP netip.Addr, leases []lease.Lease, _ map[netip.Addr]string) backend.Wants {
			var network6 netip.Prefix
			if cfg.EnableIPv6 {
				network6 = cfg.IPv6Network
			}
			return wants(cfg.Network, network6, ext, own, ownPublicIP, leases)
		},
	}, nil
}

// wants turns desire's plan into Wants, naming the external interface: a
// dual-stack peer's IPv4 and IPv6 routes both under its subnet. Pure.
func wants(network, network6 netip.Prefix, ext backend.ExternalInterface, own lease.Lease, ownPublicIP netip.Addr, leases []lease.Lease) backend.Wants {
	ext.PublicIP = ownPublicIP
	// This host's own PublicIPv6 is its lease's: what peers route to.
	ext.PublicIPv6 = own.Attrs.PublicIPv6
	st := desire(network, network6, own, ext, leases)
	names := map[int]string{ext.Index: ext.Name}
	w := backend.Wants{Peers: make(map[netip.Prefix]backend.PeerWants, len(st.byPeer)+len(st.refused))}
	for subnet, rs := range st.byPeer {
		pw := w.Peers[subnet]
		pw.Entries = append(pw.Entries, backend.EntryWants(names, rs, nil, nil)...)
		pw.RefusedV6 = st.refusedV6[subnet]
		w.Peers[subnet] = pw
	}
	for subnet, reason := range st.refused {
		// Another lease for the subnet may have been usable.
		if _, ok := w.Peers[subnet]; !ok {
			w.Peers[subnet] = backend.PeerWants{Refused: reason}
		}
	}
	return w
}
