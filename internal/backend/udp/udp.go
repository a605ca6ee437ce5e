// Package udp is the udp backend: flannel's original data plane, which
// carries pod traffic between hosts in user space. Each host has a TUN
// device, flannel0, that the kernel routes the whole cluster network into:
//
//	flannel0: tun, mtu <ext MTU − 28>, inet 10.244.1.0/32
//	ip route replace 10.244.0.0/16 dev flannel0 proto 87
//
// The backend reads each IP packet from flannel0, looks up the lease whose
// subnet holds the destination, and sends the packet, unchanged but for its
// TTL, as the payload of a UDP datagram to that peer's PublicIP on port
// 8285 (the Port option), from a socket bound to the external interface's
// address. Datagrams that arrive on that socket are written into flannel0,
// and the kernel forwards them to the pod. This is flannel's wire format,
// so weft and flannel udp hosts share a cluster.
//
// The lease carries only PublicIP, as flannel's udp leases do: no
// BackendType, no BackendData. Leases with no BackendType or "udp" are
// peers; leases of other types are ignored, with one log line each.
//
// The two directions run on separate goroutines and move packets in
// batches: the socket reads and writes up to 64 datagrams per recvmmsg and
// sendmmsg, flannel0 is drained of everything queued per wake-up, and
// buffers are allocated once, so the hot path allocates nothing. The peer
// table is immutable and swapped atomically by Apply; lookups take no lock.
// See docs/design-udp.md.
//
// flannel0 is persistent (TUNSETPERSIST): when the agent stops, the device,
// its address and the Network route stay, the kernel drops what is routed
// into it until an agent attaches again, and a restarted agent attaches
// without any route churn. Flannel's device disappears with its process,
// which takes the Network route with it, so pod traffic then leaks to the
// default route instead of being dropped.
package udp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
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
	"github.com/weftnet/weft/internal/tun"
)

// BackendType is this backend's name in the network config. It is not
// published in leases: flannel's udp leases carry no BackendType.
const BackendType = "udp"

const (
	// DefaultPort is flannel's udp port.
	DefaultPort = 8285
	// DeviceName is flannel's TUN device (flannel asks the kernel for
	// "flannel%d", which is flannel0 on any host that runs one agent).
	DeviceName = "flannel0"
	// Overhead is what encapsulation adds: an IPv4 and a UDP header.
	Overhead = 28
	// DefaultReconcilePeriod is how often Run re-checks the device,
	// address and route when no notification arrived.
	DefaultReconcilePeriod = 10 * time.Second
	// batchSize is the most packets one syscall moves.
	batchSize = 64
	// txQueueLen is flannel0's queue, in packets, between the kernel and
	// the backend's reads. A TUN device drops what does not fit instead of
	// pushing back on the sender, and TCP sends each 64 KiB write as a
	// burst of 45 packets. With the kernel's default for TUN devices, 500,
	// about 5% of a single TCP stream's packets were dropped and
	// retransmitted on the 2-core test machine, at half the throughput;
	// with 1000 (the Ethernet default) under 0.3%.
	txQueueLen = 1000
)

// Options are the knobs New leaves at their defaults.
type Options struct {
	// ReconcilePeriod is how often Run re-checks flannel0, its address and
	// the Network route; 0 means DefaultReconcilePeriod.
	ReconcilePeriod time.Duration
	// Handle configures flannel0 and the route; nil means a handle in the
	// caller's network namespace. The backend never closes it.
	Handle *netlink.Handle
	// Netns is the namespace Handle works in. flannel0 and the UDP socket
	// are created there, and Run watches for deletions there; nil means
	// the caller's. It must be set with Handle. The backend never closes it.
	Netns *vns.NsHandle
	// NoSubscribe makes Run repair on its timer only, and when reading
	// flannel0 fails.
	NoSubscribe bool
	// Queues is how many queues of flannel0 to attach (IFF_MULTI_QUEUE),
	// each read by a goroutine of its own; 0 or 1 means one.
	Queues int
	// NoOffload asks for no offloads on flannel0 or the socket: the
	// batched data path of one packet per read of flannel0 (--udp-offload=false).
	NoOffload bool

	// openTun and probeSock replace tun.Open and probeSocket, so that tests
	// play a kernel that refuses offloads (see fastPath).
	openTun   func(name string, o tun.Options) (tun.Device, error)
	probeSock func(c *net.UDPConn) sockOffloads
}

// config is the udp part of the network config's Backend object.
type config struct {
	Port int
}

// parseConfig decodes the Backend object as flannel does, with
// encoding/json: keys match case-insensitively, unknown keys are ignored.
func parseConfig(raw json.RawMessage) (config, error) {
	c := config{}
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &c); err != nil {
			return config{}, fmt.Errorf("udp backend options %s: %w", raw, err)
		}
	}
	switch {
	case c.Port == 0:
		c.Port = DefaultPort
	case c.Port < 0 || c.Port > 65535:
		return config{}, fmt.Errorf("udp backend option Port %d is not a UDP port (1-65535)", c.Port)
	}
	return c, nil
}

// Descriptor describes udp to the rest of weft.
func Descriptor() backend.Descriptor {
	return backend.Descriptor{
		NoIPv6:       "flannel's udp backend is IPv4-only, and so is weft's; use host-gw (hosts on one L2 segment) for dual-stack",
		Name:         BackendType,
		LeaseTypes:   []string{"", BackendType},
		New:          New,
		CheckOptions: func(raw json.RawMessage) error { _, err := parseConfig(raw); return err },
		Expect:       expect,
		Devices:      []backend.DeviceFact{{Kind: "tuntap", Name: DeviceName}},
	}
}

// expect is udp's Expectation: flannel0 and one route for the whole
// network through it; nothing per peer, whose packets the backend sends
// itself.
func expect(cfg *netconf.Config, ext backend.ExternalInterface) (backend.Expectation, error) {
	c, err := parseConfig(cfg.Backend)
	if err != nil {
		return backend.Expectation{}, err
	}
	mtu := 0
	if ext.MTU != 0 {
		mtu = ext.MTU - Overhead
	}
	return backend.Expectation{
		PodMTU:   mtu,
		MTUBasis: fmt.Sprintf("%s's MTU %d minus %d for UDP", ext.Name, ext.MTU, Overhead),
		Port:     c.Port,
		PortUser: "udp proxy",
		Wants: func(own lease.Lease, ownPublicIP netip.Addr, leases []lease.Lease, _ map[netip.Addr]string) backend.Wants {
			return wants(cfg.Network, mtu, c.Port, own, ownPublicIP, leases)
		},
	}, nil
}

// wants is what desire plans, as Wants: the device and its route for the
// host, and no kernel entry per peer. Pure.
func wants(network netip.Prefix, mtu, port int, own lease.Lease, ownPublicIP netip.Addr, leases []lease.Lease) backend.Wants {
	names := map[int]string{1: DeviceName}
	w := backend.Wants{
		Host: append([]backend.Want{{Kind: backend.KindDevice, Dev: DeviceName, MTU: mtu}},
			backend.EntryWants(names, []kernel.Route{networkRoute(network.Masked(), 1)}, nil, nil)...),
	}
	st := desire(network.Masked(), own, ownPublicIP, port, leases)
	w.Peers = make(map[netip.Prefix]backend.PeerWants, len(st.table.peers)+len(st.refused))
	for _, p := range st.table.peers {
		w.Peers[p.subnet] = backend.PeerWants{}
	}
	for subnet, reason := range st.refused {
		// Another lease for the subnet may have been usable.
		if _, ok := w.Peers[subnet]; !ok {
			w.Peers[subnet] = backend.PeerWants{Refused: reason}
		}
	}
	return w
}

// networkRoute is the one route udp programs: the whole network into
// flannel0 (ip route replace NETWORK dev flannel0 proto 87).
func networkRoute(network netip.Prefix, devIndex int) kernel.Route {
	return kernel.Route{Dst: network, LinkIndex: devIndex, Proto: kernel.ProtoWeft}
}

// Backend is the udp data plane of one host.
type Backend struct {
	ext     backend.ExternalInterface
	network netip.Prefix
	port    int
	mtu     int // flannel0's: ext MTU − Overhead
	log     *slog.Logger
	opts    Options
	metrics *metrics.Metrics

	ownLease atomic.Pointer[lease.Lease] // set once Start succeeded
	peers    atomic.Pointer[peerTable]   // read by the packet loops without locks
	stats    atomicStats
	repairs  atomic.Uint64

	// amu guards Apply's bookkeeping, so that Apply never waits for a
	// reconcile's netlink calls.
	amu     sync.Mutex
	applied *peerTable                   // what the last Apply published, for its diff
	ignored map[netip.Prefix]lease.Attrs // leases of another backend type, by subnet, so each is logged once

	// mu guards the fields below and is held across every reconcile, so
	// that the device is never opened or configured twice at once.
	mu       sync.Mutex
	own      lease.Lease // set by Start, then fixed
	started  bool
	closed   bool
	dev      tun.Device   // the attached flannel0 (its first queue)
	extra    []tun.Device // its other queues, with Options.Queues
	devIndex int          // its ifindex when attached
	broken   bool         // reading dev failed: it must be reopened
	sock     *net.UDPConn // bound to ext Addr:port
	loops    *loops       // set while Run runs; nil before and after
	failing  string       // the last reconcile error logged, so a lasting one is logged once

	cur      atomic.Pointer[devRef] // dev, for the socket loop
	curIndex atomic.Int32           // devIndex, for the notification filters

	fast fastPath // path.go: the offloads the kernel granted
}

// devRef boxes a Device so it can be swapped atomically.
type devRef struct{ dev tun.Device }

// New builds the backend with the Options the agent's flags ask for
// (cfg.UDP: --udp-offload, --udp-queues).
func New(cfg backend.Config) (backend.Backend, error) {
	return backend.Built(NewWithOptions(cfg, Options{NoOffload: cfg.UDP.NoOffload, Queues: cfg.UDP.Queues}))
}

// NewWithOptions builds the backend. It touches nothing in the kernel:
// Start creates flannel0 and the socket.
func NewWithOptions(cfg backend.Config, o Options) (*Backend, error) {
	if err := supported(); err != nil {
		return nil, err
	}
	ext, err := backend.CheckConfig(BackendType, cfg)
	if err != nil {
		return nil, err
	}
	if ext.MTU-Overhead < 68 {
		return nil, fmt.Errorf("udp: interface %s has MTU %d; flannel0 would get %d, below IPv4's minimum of 68", ext.Name, ext.MTU, ext.MTU-Overhead)
	}
	c, err := parseConfig(cfg.Network.Backend)
	if err != nil {
		return nil, err
	}
	if o.Handle != nil && o.Netns == nil {
		return nil, errors.New("udp: Options.Handle needs Options.Netns, so that flannel0 and the socket are created where Handle configures them")
	}
	o.ReconcilePeriod = cfg.Period(o.ReconcilePeriod, DefaultReconcilePeriod)
	if o.Handle == nil {
		// A zero Handle opens a socket per request in the caller's
		// namespace and holds nothing that needs closing.
		o.Handle = &netlink.Handle{}
	}
	return &Backend{
		ext:     ext,
		network: cfg.Network.Network.Masked(),
		port:    c.Port,
		mtu:     ext.MTU - Overhead,
		log:     cfg.Logger(BackendType),
		opts:    o,
		metrics: cfg.Metrics,
		fast:    fastPath{openTun: o.openTun, probeSock: o.probeSock, off: o.NoOffload},
	}, nil
}

// LeaseAttrs returns no backend type and no data: flannel's udp leases
// carry only PublicIP, and flannel hosts expect exactly that.
func (b *Backend) LeaseAttrs() (string, json.RawMessage) { return "", nil }

// MTU is flannel0's: the external interface's minus the IPv4 and UDP
// headers each packet travels in.
func (b *Backend) MTU() int { return b.mtu }

// Port is the UDP port this host listens on and sends to.
func (b *Backend) Port() int { return b.port }

// Repairs counts the changes reconciles made because the kernel drifted:
// a recreated device, a restored address, MTU, up flag or route.
func (b *Backend) Repairs() uint64 { return b.repairs.Load() }

// Stats returns the data path's counters so far.
func (b *Backend) Stats() Stats { return b.stats.load() }

// Apply publishes a new peer table built from leases: every udp lease but
// our own. Packets to subnets that are not in it are answered with ICMP
// net unreachable from then on. It logs one line per peer added, changed
// or removed, and one per lease of another backend type when it first
// appears. Invalid udp leases get an error each, joined; the others are
// published regardless.
func (b *Backend) Apply(ctx context.Context, leases []lease.Lease) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	own := b.ownLease.Load()
	if own == nil {
		return errors.New("udp: Apply before Start")
	}
	st := desire(b.network, *own, b.ext.PublicIP, b.port, leases)

	b.amu.Lock()
	defer b.amu.Unlock()
	b.peers.Store(st.table)
	for _, c := range diffPeers(b.applied, st.table) {
		args := []any{"subnet", c.peer.subnet, "peer", c.peer.publicIP(), "port", c.peer.ep.port}
		if c.kind == "changed" {
			args = append(args, "was", c.was.publicIP())
		}
		b.log.Info("peer "+c.kind, args...)
	}
	b.applied = st.table
	backend.NoteIgnored(b.log, BackendType, b.ignored, st.ignored)
	b.ignored = st.ignored
	return errors.Join(st.errs...)
}

// atomicStats is Stats shared by the loops and readers.
type atomicStats struct {
	tunPackets, sent, sendErrors, noLease, icmpSent atomic.Uint64
	received, delivered, deliverErrors              atomic.Uint64
	ttlExpired, oversized, malformed                atomic.Uint64
}

// add adds one batch's counts.
func (a *atomicStats) add(s *Stats) {
	for _, f := range [...]struct {
		c *atomic.Uint64
		v uint64
	}{
		{&a.tunPackets, s.TunPackets}, {&a.sent, s.Sent}, {&a.sendErrors, s.SendErrors},
		{&a.noLease, s.NoLease}, {&a.icmpSent, s.ICMPSent},
		{&a.received, s.Received}, {&a.delivered, s.Delivered}, {&a.deliverErrors, s.DeliverErrors},
		{&a.ttlExpired, s.TTLExpired}, {&a.oversized, s.Oversized}, {&a.malformed, s.Malformed},
	} {
		if f.v != 0 {
			f.c.Add(f.v)
		}
	}
	*s = Stats{}
}

func (a *atomicStats) load() Stats {
	return Stats{
		TunPackets: a.tunPackets.Load(), Sent: a.sent.Load(), SendErrors: a.sendErrors.Load(),
		NoLease: a.noLease.Load(), ICMPSent: a.icmpSent.Load(),
		Received: a.received.Load(), Delivered: a.delivered.Load(), DeliverErrors: a.deliverErrors.Load(),
		TTLExpired: a.ttlExpired.Load(), Oversized: a.oversized.Load(), Malformed: a.malformed.Load(),
	}
}
