// Package vxlan is the vxlan backend: pod traffic between hosts is carried
// in VXLAN (UDP 8472 by default) through one device per host,
// flannel.<VNI>, bound to the external interface. It is wire- and
// store-compatible with flannel's vxlan, so weft and flannel hosts can share
// a cluster: the same device attributes, the same lease data
// ({"VNI":1,"VtepMAC":"..."}), and per peer the same three kernel entries:
//
//	ip neigh replace 10.244.3.0 lladdr <peer VtepMAC> dev flannel.1 nud permanent
//	bridge fdb replace <peer VtepMAC> dev flannel.1 dst <peer PublicIP> self permanent
//	ip route replace 10.244.3.0/24 via 10.244.3.0 dev flannel.1 onlink proto 87
//
// The route comes last (and goes first) so the kernel never has to resolve
// the onlink gateway itself. With DirectRouting, a peer on a directly
// connected network gets `ip route replace 10.244.3.0/24 via <PublicIP>`
// instead, and no neighbour or FDB entry.
//
// Unlike flannel, which replays lease events and only watches for the
// device's deletion, this backend reconciles: every Apply and every repair
// dumps the device's neighbours and FDB and the main table, and makes them
// exactly what the complete set of leases asks for. Run repairs on a timer
// and within milliseconds of a deleted neighbour, FDB entry, route or device.
//
// The VTEP MAC is chosen once and kept in a file in the state directory,
// and set explicitly whenever the device is created, so that it neither
// changes across restarts nor is rewritten by udev's MACAddressPolicy
// (flannel issues #1795, #1330): peers address our VTEP by the MAC in our
// lease, and a device with another MAC silently drops their traffic.
package vxlan

import (
	"cmp"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	vns "github.com/vishvananda/netns"

	"github.com/weftnet/weft/internal/atomicfile"
	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/kernel"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/metrics"
	"github.com/weftnet/weft/internal/netconf"
)

// BackendType is the lease BackendType of this backend, as flannel names it.
const BackendType = "vxlan"

const (
	// DefaultVNI is the VXLAN network identifier when the config names none.
	DefaultVNI = 1
	// KernelDefaultPort is the UDP port the kernel uses when the device is
	// created without one (Linux's pre-IANA VXLAN port, flannel's default).
	KernelDefaultPort = 8472
	// Overhead is what encapsulation takes from the MTU, as flannel counts
	// it: outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14).
	Overhead = 50
	// OverheadIPv6 is what encapsulation over an IPv6 underlay takes: the
	// outer IPv6 header is 40 bytes, so 70 in all. flannel takes 50 for
	// its flannel-v6 device too, which leaves full-size packets 20 bytes
	// too large for the underlay; weft takes 70 (docs/design-vxlan.md).
	OverheadIPv6 = 70
	// minIPv6MTU is the least MTU IPv6 runs on (RFC 8200); the kernel
	// takes IPv6 off a device set below it.
	minIPv6MTU = 1280
	// DefaultReconcilePeriod is how often Run re-applies by default.
	DefaultReconcilePeriod = 10 * time.Second
)

// Settings are the vxlan options of the network config's Backend object.
// Keys are matched case-insensitively and unknown keys are ignored, as
// flannel decodes them.
type Settings struct {
	VNI int
	// Port is the UDP port; 0 leaves it to the kernel (8472).
	Port     int
	GBP      bool
	Learning bool
	// MTU is the underlay MTU the overhead is taken from: the device and
	// pods get MTU - 50. 0 in the config means the external interface's.
	MTU           int
	DirectRouting bool
}

// ParseSettings decodes the Backend object raw (nil means all defaults),
// filling MTU from extMTU when it is not given.
func ParseSettings(raw json.RawMessage, extMTU int) (Settings, error) {
	s, err := parseOptions(raw)
	if err != nil {
		return Settings{}, err
	}
	if s.MTU == 0 {
		s.MTU = extMTU
	}
	if err := checkMTU(s.MTU); err != nil {
		return Settings{}, err
	}
	return s, nil
}

// parseOptions decodes and checks what the Backend object alone decides:
// MTU stays 0 when it is not given.
func parseOptions(raw json.RawMessage) (Settings, error) {
	s := Settings{VNI: DefaultVNI}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &s); err != nil {
			return Settings{}, fmt.Errorf("vxlan options %s: %w", raw, err)
		}
	}
	switch {
	case s.VNI < 0 || s.VNI > 1<<24-1:
		return Settings{}, fmt.Errorf("vxlan option VNI %d: must be between 0 and 16777215", s.VNI)
	case len(DeviceName(s.VNI)) > 15:
		return Settings{}, fmt.Errorf("vxlan option VNI %d: the device name %s would be longer than the kernel's 15 bytes; use a VNI below 10000000",
			s.VNI, DeviceName(s.VNI))
	case s.Port < 0 || s.Port > 65535:
		return Settings{}, fmt.Errorf("vxlan option Port %d: must be between 1 and 65535, or 0 for the kernel's default (%d)", s.Port, KernelDefaultPort)
	case s.MTU != 0:
		if err := checkMTU(s.MTU); err != nil {
			return Settings{}, err
		}
	}
	return s, nil
}

func checkMTU(mtu int) error {
	if mtu-Overhead < 68 || mtu > 65535 {
		return fmt.Errorf("vxlan MTU %d: must be between %d and 65535 so that the device gets at least IPv4's minimum of 68", mtu, 68+Overhead)
	}
	return nil
}

// DeviceName is the VXLAN device of vni, as flannel names it.
func DeviceName(vni int) string { return fmt.Sprintf("flannel.%d", vni) }

// DeviceNameV6 is the VXLAN device of vni that carries IPv6 pod traffic
// over the IPv6 underlay, as flannel names it.
func DeviceNameV6(vni int) string { return fmt.Sprintf("flannel-v6.%d", vni) }

// MACFileName is the name of the file in the state directory that holds
// the VTEP MAC of the device of vni.
func MACFileName(vni int) string { return macFileOf(DeviceName(vni)) }

// MACFileNameV6 is MACFileName for the IPv6 device of vni.
func MACFileNameV6(vni int) string { return macFileOf(DeviceNameV6(vni)) }

func macFileOf(dev string) string { return "weft-vtep-" + dev + ".mac" }

// Options are the knobs New leaves at their defaults.
type Options struct {
	// ReconcilePeriod is how often Run re-applies the last desired state;
	// 0 means the Config's, and DefaultReconcilePeriod when that is 0 too.
	ReconcilePeriod time.Duration
	// Handle programs the kernel; nil means a handle in the caller's
	// network namespace. The backend never closes it.
	Handle kernel.Handle
	// Netns is the namespace Handle works in, where Run subscribes to
	// deletions; nil means the caller's. It must be set with Handle unless
	// NoSubscribe is. The backend never closes it.
	Netns *vns.NsHandle
	// NoSubscribe makes Run repair on its timer only.
	NoSubscribe bool
}

// RepairCounts are the kernel changes Run had to make because the kernel
// drifted from the last Apply, by what was changed.
type RepairCounts struct {
	Device    uint64 // device re-created, or its MTU, MAC or up state fixed
	Address   uint64 // the device's address re-added, or a foreign one removed
	Neighbour uint64
	FDB       uint64
	Route     uint64
}

// Total is the sum of all kinds.
func (c RepairCounts) Total() uint64 { return c.Device + c.Address + c.Neighbour + c.FDB + c.Route }

type repairCounters struct {
	device, address, neighbour, fdb, route atomic.Uint64
}

// Backend is the vxlan data plane of one host.
//
// Its IPv6 side, when the config enables IPv6, is a Backend of its own
// (v6) that the IPv4 one drives: the same reconciliation on the device
// flannel-v6.<VNI>, fed each lease's IPv6 half (IPv6Subnet, PublicIPv6,
// BackendV6Data) as if it were a lease (v6Half), with the IPv6 underlay
// address as its external address. Its kernel entries, VTEP MAC and MAC
// file are its own; Run repairs both in one loop. On an IPv6-only network
// (EnableIPv4 false) the driving Backend has no device, publishes no
// BackendData, and passes everything to v6.
type Backend struct {
	ext     backend.ExternalInterface // for the IPv6 side: Addr and PublicIP are the IPv6 ones
	network netip.Prefix
	set     Settings
	ipv6    bool // this is the IPv6 side
	// noIPv4: the network is IPv6-only (EnableIPv4 false), so this
	// Backend has no device of its own and only drives v6.
	noIPv4    bool
	v6        *Backend        // the IPv6 side; nil when IPv6 is not enabled
	podMTU    int             // the MTU of pods, the least of both sides'
	dev       string          // flannel.<VNI>, or flannel-v6.<VNI>
	macFile   string          // "" when there is no state directory
	published json.RawMessage // backend data the store remembers for this host
	log       *slog.Logger
	opts      Options
	// mac is the VTEP MAC, settled by New; only Readdress changes it
	// (a clash with a peer's), under mu, with data.
	mac  kernel.MAC
	data json.RawMessage

	metrics *metrics.Metrics // counts Run's repairs by kind

	repairs repairCounters
	// reconciles counts Run's repair passes, changes or not, so that tests
	// can bound the passes the kernel's echo of Apply's writes causes.
	reconciles atomic.Uint64
	devIndex   atomic.Int32 // the device's current ifindex, for the watches; 0 before it exists

	// mu guards the fields below and is held across every kernel sync, so
	// that a repair planned from an older desired set never undoes a newer
	// Apply.
	mu      sync.Mutex
	own     lease.Lease // set by Start
	started bool
	applied bool                         // Apply ran at least once; before that Run touches nothing
	peers   []peer                       // usable vxlan peers of the last Apply
	known   map[netip.Prefix]programmed  // what the last sync programmed per peer, for logs
	ignored map[netip.Prefix]lease.Attrs // leases of another backend type, so each is logged once
	failing map[string]string            // entry → last error logged for it, so a repair logs each once
	names   map[int]string               // link names for route logs
	macs    macMemo                      // decoded BackendData of peers
	// inst is what the last sync left in the kernel; Apply plans against
	// it instead of reading thousands of entries back for every change.
	inst installed
	// wantIP and wantMAC map the neighbour addresses and VTEP MACs of
	// peers to their subnets, so that logs tell whose an entry is. prevIP
	// and prevMAC are the Apply before's, for entries of peers that have
	// just left.
	wantIP  map[netip.Addr]netip.Prefix
	wantMAC map[kernel.MAC]netip.Prefix
	prevIP  map[netip.Addr]netip.Prefix
	prevMAC map[kernel.MAC]netip.Prefix
	// plan is what the last sync asked of the kernel, by the key the
	// kernel reports each entry with, so that Run's watches tell in
	// constant time whether a reported entry differs from it.
	plan plan
}

// plan is the entries one sync asks for, by key.
type plan struct {
	neighs map[netip.Addr]kernel.Neigh
	fdbs   map[kernel.MAC]kernel.FDB
	routes map[netip.Prefix]kernel.Route
}

// installed is the kernel state a sync left: every entry it asked for, as
// the kernel took it. Valid only after a sync without a single failure and
// while the device keeps its index; a repair (Run) always reads the kernel
// and refreshes it, which is what catches changes made behind weft's back.
type installed struct {
	valid    bool
	devIndex int
	neighs   []kernel.Neigh
	fdbs     []kernel.FDB
	routes   []kernel.Route
}

// New builds the backend with default Options.
func New(cfg backend.Config) (backend.Backend, error) {
	return backend.Built(NewWithOptions(cfg, Options{}))
}

// NewWithOptions builds the backend: it decodes the options, settles the
// VTEP MAC (the state file's, else an existing device's, else a new random
// one, persisted), and creates or adopts the device flannel.<VNI> with that
// MAC, so that LeaseAttrs, called before Start, publishes what the kernel
// holds.
func NewWithOptions(cfg backend.Config, o Options) (*Backend, error) {
	if err := supported(); err != nil {
		return nil, err
	}
	v6only := cfg.Network != nil && !cfg.Network.EnableIPv4
	check := backend.CheckConfig
	if v6only {
		check = backend.CheckConfigIPv6Only
	}
	ext, err := check(BackendType, cfg)
	if err != nil {
		return nil, err
	}
	set, err := ParseSettings(cfg.Network.Backend, ext.MTU)
	if err != nil {
		return nil, err
	}
	if v6only && !ext.Addr6.IsValid() {
		// CheckConfigIPv6Only accepts --public-ipv6 alone; the device
		// needs a local address to send from.
		return nil, fmt.Errorf("vxlan needs a global IPv6 address on interface %s for %s to send from, on an IPv6-only network", ext.Name, DeviceNameV6(set.VNI))
	}
	if o.Handle != nil && o.Netns == nil && !o.NoSubscribe {
		return nil, errors.New("vxlan: Options.Handle needs Options.Netns (or NoSubscribe), so that deletions are watched where entries are programmed")
	}
	o.ReconcilePeriod = cfg.Period(o.ReconcilePeriod, DefaultReconcilePeriod)
	if o.Handle == nil {
		o.Handle = &netlink.Handle{}
	}
	b := &Backend{
		published: cfg.Published,
		ext:       ext,
		network:   cfg.Network.Network,
		set:       set,
		podMTU:    set.MTU - Overhead,
		dev:       DeviceName(set.VNI),
		log:       cfg.Logger(BackendType),
		opts:      o,
		names:     map[int]string{ext.Index: ext.Name},
		metrics:   cfg.Metrics,
	}
	if v6only {
		// The IPv6 side alone; this Backend drives it and publishes no
		// BackendData, as flannel's vxlan on an IPv6-only network.
		b.noIPv4, b.dev = true, ""
		if b.v6, err = newIPv6Side(cfg, ext, set, o, b.log); err != nil {
			return nil, err
		}
		b.podMTU = b.v6.podMTU
		return b, nil
	}
	if cfg.StateDir != "" {
		b.macFile = filepath.Join(cfg.StateDir, MACFileName(set.VNI))
	}
	if cfg.Network.EnableIPv6 {
		if b.v6, err = newIPv6Side(cfg, ext, set, o, b.log); err != nil {
			return nil, err
		}
		if b.v6 != nil {
			b.podMTU = b.v6.podMTU
		}
	}
	if err := b.setup(); err != nil {
		return nil, err
	}
	b.data = leaseData(set.VNI, b.mac)
	return b, nil
}

// newIPv6Side builds the IPv6 side of the backend: flannel-v6.<VNI> over
// ext's IPv6 address. Without one it returns nil and says at ERROR that
// IPv6 pod traffic has no way out, as a host without an IPv6 underlay
// cannot carry it; IPv4 works on.
func newIPv6Side(cfg backend.Config, ext backend.ExternalInterface, set Settings, o Options, log *slog.Logger) (*Backend, error) {
	if !ext.Addr6.IsValid() {
		log.Error("IPv6 is enabled, but interface "+ext.Name+" has no global IPv6 address to carry VXLAN over IPv6: "+
			"no "+DeviceNameV6(set.VNI)+" device, so pods' IPv6 traffic does not reach other hosts",
			"interface", ext.Name)
		return nil, nil
	}
	if mtu := set.MTU - OverheadIPv6; mtu < minIPv6MTU {
		return nil, fmt.Errorf("vxlan MTU %d: with IPv6 enabled it must be at least %d, so that %s gets IPv6's minimum of %d after %d for VXLAN over IPv6",
			set.MTU, minIPv6MTU+OverheadIPv6, DeviceNameV6(set.VNI), minIPv6MTU, OverheadIPv6)
	}
	ext6 := ext
	ext6.Addr, ext6.PublicIP = ext.Addr6, ext.PublicIPv6
	if !ext6.PublicIP.IsValid() {
		ext6.PublicIP = ext6.Addr
	}
	b := &Backend{
		published: cfg.PublishedV6,
		ext:       ext6,
		network:   cfg.Network.IPv6Network,
		set:       set,
		ipv6:      true,
		podMTU:    set.MTU - OverheadIPv6,
		dev:       DeviceNameV6(set.VNI),
		log:       log.With("family", "ipv6"),
		opts:      o,
		names:     map[int]string{ext.Index: ext.Name},
	}
	if cfg.StateDir != "" {
		b.macFile = filepath.Join(cfg.StateDir, MACFileNameV6(set.VNI))
	}
	if err := b.setup(); err != nil {
		return nil, err
	}
	b.data = leaseData(set.VNI, b.mac)
	return b, nil
}

// LeaseV6Data returns the BackendV6Data of this host, the VTEP MAC of
// flannel-v6.<VNI> in BackendData's form; nil without an IPv6 side.
func (b *Backend) LeaseV6Data() json.RawMessage {
	if b.v6 == nil {
		return nil
	}
	_, data := b.v6.LeaseAttrs()
	return data
}

// IPv6 is the IPv6 side, nil when IPv6 is not enabled (or the external
// interface has no IPv6 address).
func (b *Backend) IPv6() *Backend { return b.v6 }

// v6Half is l's IPv6 half as a lease of its own, the form the IPv6 side
// programs: IPv6Subnet as Subnet, PublicIPv6 as PublicIP, BackendV6Data
// as BackendData. ok is false for a lease with no IPv6 subnet.
func v6Half(l lease.Lease) (lease.Lease, bool) {
	if !l.IPv6Subnet.IsValid() {
		return lease.Lease{}, false
	}
	h := l
	h.Subnet, h.IPv6Subnet = l.IPv6Subnet, netip.Prefix{}
	h.Attrs.PublicIP, h.Attrs.PublicIPv6 = l.Attrs.PublicIPv6, netip.Addr{}
	h.Attrs.BackendData, h.Attrs.BackendV6Data = l.Attrs.BackendV6Data, nil
	return h, true
}

// v6Halves is v6Half of every lease that has an IPv6 half.
func v6Halves(leases []lease.Lease) []lease.Lease {
	out := make([]lease.Lease, 0, len(leases))
	for _, l := range leases {
		if h, ok := v6Half(l); ok {
			out = append(out, h)
		}
	}
	return out
}

// LeaseAttrs returns vxlan and {"VNI":<vni>,"VtepMAC":"<mac>"}, flannel's
// exact compact form.
func (b *Backend) LeaseAttrs() (string, json.RawMessage) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return BackendType, slices.Clone(b.data)
}

// MTU is the MTU of pods: the configured MTU minus the VXLAN overhead, as
// flannel writes it, or with IPv6 enabled minus the overhead over IPv6
// (70, not flannel's 50), since a pod has one MTU for both families.
func (b *Backend) MTU() int { return b.podMTU }

// deviceMTU is the MTU of this side's device: what is left of the
// configured MTU after its own encapsulation. The IPv4 device keeps
// flannel's; pods' smaller MTU fits through it.
func (b *Backend) deviceMTU() int {
	if b.ipv6 {
		return b.set.MTU - OverheadIPv6
	}
	return b.set.MTU - Overhead
}

// Device is the name of the VXLAN device.
func (b *Backend) Device() string { return b.dev }

// VtepMAC is the device's MAC, the one the lease publishes.
func (b *Backend) VtepMAC() kernel.MAC {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.mac
}

// Settings are the decoded options.
func (b *Backend) Settings() Settings { return b.set }

// Repairs is the total number of kernel changes Run had to make.
func (b *Backend) Repairs() uint64 { return b.RepairCounts().Total() }

// RepairCounts are Run's repairs by kind, of both sides.
func (b *Backend) RepairCounts() RepairCounts {
	c := RepairCounts{
		Device:    b.repairs.device.Load(),
		Address:   b.repairs.address.Load(),
		Neighbour: b.repairs.neighbour.Load(),
		FDB:       b.repairs.fdb.Load(),
		Route:     b.repairs.route.Load(),
	}
	if b.v6 != nil {
		c6 := b.v6.RepairCounts()
		c.Device, c.Address, c.Neighbour, c.FDB, c.Route = c.Device+c6.Device, c.Address+c6.Address,
			c.Neighbour+c6.Neighbour, c.FDB+c6.FDB, c.Route+c6.Route
	}
	return c
}

// backendData is the BackendData of a vxlan lease. Field order and names
// make json.Marshal produce flannel's form byte for byte.
type backendData struct {
	VNI     int
	VtepMAC string
}

func leaseData(vni int, mac kernel.MAC) json.RawMessage {
	out, err := json.Marshal(backendData{VNI: vni, VtepMAC: mac.String()})
	if err != nil {
		panic(err) // an int and a string always marshal
	}
	return out
}

// macMemo remembers the VtepMAC decoded from each BackendData, so that an
// Apply of thousands of unchanged leases decodes only the new ones. It
// forgets everything when it holds more than twice the leases of one Apply.
type macMemo map[string]macDecoded

type macDecoded struct {
	mac kernel.MAC
	err error
}

// parser returns parsePeerData remembering its answers; n is the number of
// leases about to be decoded.
func (m *macMemo) parser(n int) func(json.RawMessage) (kernel.MAC, error) {
	if *m == nil || len(*m) > 2*n+64 {
		*m = make(macMemo, n)
	}
	return func(raw json.RawMessage) (kernel.MAC, error) {
		if d, ok := (*m)[string(raw)]; ok {
			return d.mac, d.err
		}
		mac, err := parsePeerData(raw)
		(*m)[string(raw)] = macDecoded{mac, err}
		return mac, err
	}
}

// parsePeerData decodes a peer's BackendData and checks its VtepMAC.
func parsePeerData(raw json.RawMessage) (kernel.MAC, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return kernel.MAC{}, errors.New("it has no BackendData")
	}
	var d backendData
	if err := json.Unmarshal(raw, &d); err != nil {
		return kernel.MAC{}, fmt.Errorf("BackendData %s: %w", truncate(raw), err)
	}
	if d.VtepMAC == "" {
		return kernel.MAC{}, fmt.Errorf("BackendData %s has no VtepMAC", truncate(raw))
	}
	mac, err := kernel.ParseMAC(d.VtepMAC)
	if err != nil {
		return kernel.MAC{}, fmt.Errorf("BackendData %s: VtepMAC: %w", truncate(raw), err)
	}
	if !mac.Unicast() {
		return kernel.MAC{}, fmt.Errorf("BackendData %s: VtepMAC %s is not a unicast address", truncate(raw), mac)
	}
	return mac, nil
}

func truncate(raw []byte) string {
	if len(raw) > 120 {
		return string(raw[:120]) + "..."
	}
	return string(raw)
}

// peer is a vxlan lease this host programs.
type peer struct {
	Subnet   netip.Prefix // masked
	PublicIP netip.Addr
	MAC      kernel.MAC
}

// programmed is how a peer was last programmed, for logs.
type programmed struct {
	peer
	direct bool
}

// peersState is what one set of leases asks of this host.
type peersState struct {
	peers   []peer                       // sorted by subnet
	ignored map[netip.Prefix]lease.Attrs // leases of another backend type
	errs    []error                      // vxlan leases that get nothing, and why
	refused map[netip.Prefix]string      // the same leases by subnet: the reason alone
}

// desire picks the peers to program from leases: every vxlan lease but the
// own one whose subnet, PublicIP and VtepMAC are usable. Pure.
func desire(network netip.Prefix, own lease.Lease, ownPublicIP netip.Addr, ownMAC kernel.MAC, leases []lease.Lease) peersState {
	return desireWith(network, own, ownPublicIP, ownMAC, leases, parsePeerData)
}

// desireWith is desire with the decoder of BackendData given, so that the
// backend can remember what it decoded (see macMemo).
func desireWith(network netip.Prefix, own lease.Lease, ownPublicIP netip.Addr, ownMAC kernel.MAC, leases []lease.Lease,
	parse func(json.RawMessage) (kernel.MAC, error),
) peersState {
	st := peersState{ignored: make(map[netip.Prefix]lease.Attrs), refused: make(map[netip.Prefix]string)}
	byAddr := func(a, b lease.Lease) int { return a.Subnet.Addr().Compare(b.Subnet.Addr()) }
	// Stores deliver leases sorted already.
	if !slices.IsSortedFunc(leases, byAddr) {
		leases = slices.Clone(leases)
		slices.SortStableFunc(leases, byAddr)
	}
	st.peers = make([]peer, 0, len(leases))
	macOwner := make(map[kernel.MAC]netip.Prefix, len(leases))
	for _, l := range leases {
		subnet := l.Subnet.Masked()
		if subnet == own.Subnet.Masked() {
			continue
		}
		if l.Attrs.BackendType != BackendType {
			st.ignored[subnet] = l.Attrs
			continue
		}
		pub := l.Attrs.PublicIP
		mac, macErr := parse(l.Attrs.BackendData)
		reason := backend.PeerProblem(l, network, own, ownPublicIP)
		switch {
		case reason != "":
		case macErr != nil:
			reason = macErr.Error()
		case mac == ownMAC:
			reason = fmt.Sprintf("its VtepMAC %s is this host's own", mac)
		}
		if reason == "" {
			if other, dup := macOwner[mac]; dup {
				reason = fmt.Sprintf("its VtepMAC %s is also published by the peer with subnet %s", mac, other)
			}
		}
		if reason != "" {
			p := backend.PeerName(l)
			st.errs = append(st.errs, fmt.Errorf("peer %s (subnet %s): skipped: %s", p, subnet, reason))
			st.refused[subnet] = reason
			continue
		}
		macOwner[mac] = subnet
		st.peers = append(st.peers, peer{Subnet: subnet, PublicIP: pub, MAC: mac})
	}
	return st
}

// entries is the kernel state for peers on device devIndex. A peer in
// direct (subnet → the link its PublicIP is directly reachable on) gets a
// route via its PublicIP on that link and nothing else; the others get a
// neighbour and an FDB entry on the device and an onlink route through it.
// Pure.
func entries(peers []peer, devIndex int, direct map[netip.Prefix]int) (neighs []kernel.Neigh, fdbs []kernel.FDB, routes []kernel.Route) {
	for _, p := range peers {
		if link, ok := direct[p.Subnet]; ok {
			routes = append(routes, kernel.Route{Dst: p.Subnet, Gw: p.PublicIP, LinkIndex: link, Proto: kernel.ProtoWeft})
			continue
		}
		gw := p.Subnet.Addr()
		neighs = append(neighs, kernel.Neigh{LinkIndex: devIndex, IP: gw, MAC: p.MAC, Permanent: true})
		fdbs = append(fdbs, kernel.FDB{LinkIndex: devIndex, MAC: p.MAC, Dst: p.PublicIP, Permanent: true})
		routes = append(routes, kernel.Route{Dst: p.Subnet, Gw: gw, LinkIndex: devIndex, OnLink: true, Proto: kernel.ProtoWeft})
	}
	// By MAC, as kernel.PlanFDB merges sorted lists without maps (stable:
	// of two peers claiming one MAC, the later still wins).
	slices.SortStableFunc(fdbs, func(a, b kernel.FDB) int {
		return cmp.Or(cmp.Compare(a.LinkIndex, b.LinkIndex), slices.Compare(a.MAC[:], b.MAC[:]))
	})
	return neighs, fdbs, routes
}

// deviceAttrs are the VXLAN attributes that decide whether an existing
// device can be reused.
type deviceAttrs struct {
	Type      string // the link kind; "vxlan"
	VNI       int
	VtepIndex int
	Local     netip.Addr
	Group     netip.Addr
	Port      int // 0: the kernel's default
	GBP       bool
	Learning  bool
	L2miss    bool
	L3miss    bool
}

// incompatibility says why have cannot serve as the device want describes,
// or "" when it can. Pure.
func incompatibility(want, have deviceAttrs) string {
	port := func(p int) int {
		if p == 0 {
			return KernelDefaultPort
		}
		return p
	}
	var diffs []string
	add := func(what string, w, h any) { diffs = append(diffs, fmt.Sprintf("%s %v, want %v", what, h, w)) }
	if have.Type != want.Type {
		return fmt.Sprintf("it is a %s device, not vxlan", have.Type)
	}
	if have.VNI != want.VNI {
		add("vni", want.VNI, have.VNI)
	}
	if have.VtepIndex != want.VtepIndex {
		add("dev index", want.VtepIndex, have.VtepIndex)
	}
	if have.Local != want.Local {
		add("local", want.Local, have.Local)
	}
	if have.Group != want.Group {
		add("group", want.Group, have.Group)
	}
	if port(have.Port) != port(want.Port) {
		add("dstport", port(want.Port), port(have.Port))
	}
	if have.GBP != want.GBP {
		add("gbp", want.GBP, have.GBP)
	}
	if have.Learning != want.Learning {
		add("learning", want.Learning, have.Learning)
	}
	if have.L2miss != want.L2miss {
		add("l2miss", want.L2miss, have.L2miss)
	}
	if have.L3miss != want.L3miss {
		add("l3miss", want.L3miss, have.L3miss)
	}
	return strings.Join(diffs, "; ")
}

// chooseMAC settles the VTEP MAC: the state file's when it holds a usable
// one, else the existing device's (adopted from flannel or from a weft that
// had no state file), else the one this host published before (the store
// remembers it across a reboot that wiped both), else gen's. It returns
// where the MAC came from: "file", "device", "published" or "generated".
// Pure.
func chooseMAC(file kernel.MAC, fileErr error, device, published kernel.MAC, gen func() kernel.MAC) (kernel.MAC, string) {
	switch {
	case fileErr == nil && file.Unicast():
		return file, "file"
	case device.Unicast():
		return device, "device"
	case published.Unicast():
		return published, "published"
	default:
		return gen(), "generated"
	}
}

// randomMAC is a random locally administered unicast address.
func randomMAC() kernel.MAC {
	var m kernel.MAC
	_, _ = rand.Read(m[:]) // crypto/rand.Read never fails
	m[0] = (m[0] & 0xfe) | 0x02
	return m
}

// readMACFile reads a MAC written by writeMACFile. A missing file is an
// error wrapping fs.ErrNotExist.
func readMACFile(path string) (kernel.MAC, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return kernel.MAC{}, err
	}
	s := strings.TrimSpace(string(raw))
	m, err := kernel.ParseMAC(s)
	if err != nil {
		return kernel.MAC{}, fmt.Errorf("%s: %w", path, err)
	}
	if !m.Unicast() {
		return kernel.MAC{}, fmt.Errorf("%s: %s is not a unicast address", path, m)
	}
	return m, nil
}

// writeMACFile replaces path with mac atomically (temporary file, fsync,
// rename), creating its directory.
func writeMACFile(path string, mac kernel.MAC) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return atomicfile.Write(path, []byte(mac.String()+"\n"), 0o644)
}

// isNotExist reports whether err says a file is missing.
func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// Descriptor describes vxlan to the rest of weft.
func Descriptor() backend.Descriptor {
	return backend.Descriptor{
		Name:         BackendType,
		LeaseTypes:   []string{BackendType},
		IPv6:         true,
		New:          New,
		CheckOptions: func(raw json.RawMessage) error { _, err := parseOptions(raw); return err },
		Expect:       expect,
		LeaseMAC: func(l lease.Lease) (kernel.MAC, bool) {
			data := l.Attrs.BackendData
			if !l.Subnet.IsValid() {
				// An IPv6-only lease's VTEP is flannel-v6's.
				data = l.Attrs.BackendV6Data
			}
			mac, err := parsePeerData(data)
			return mac, err == nil
		},
		LeaseCheck: leaseCheck,
		Devices: []backend.DeviceFact{
			{Kind: "vxlan", Name: "flannel.", Prefix: true},
			{Kind: "vxlan", Name: "flannel-v6.", Prefix: true},
		},
		// The MAC files, and the temporary files writeMACFile leaves when
		// it is interrupted before its rename.
		StateFiles: []string{"weft-vtep-flannel.*.mac", "weft-vtep-flannel-v6.*.mac", ".weft-vtep-*.tmp"},
	}
}

// leaseCheck is vxlan's part of admission: a peer's identity is its
// VtepMAC (two peers with one MAC would share one FDB entry, so the later
// one would redirect the other's traffic), and a peer publishing another
// VNI than this network's is refused, since its device drops what this
// host sends. A lease whose BackendData names no VNI (none of flannel's
// releases writes one without it) is taken to use the network's. With
// IPv6 enabled, a BackendV6Data is held to the same rules: a lease that
// publishes one with no usable VtepMAC or another VNI is refused (a lease
// with none keeps its IPv4 side; the IPv6 side skips it and says why). On
// an IPv6-only network BackendV6Data is all a lease has, and all that is
// judged.
func leaseCheck(cfg *netconf.Config) (backend.LeaseCheck, error) {
	set, err := parseOptions(cfg.Backend)
	if err != nil {
		return nil, err
	}
	check := func(raw json.RawMessage) (kernel.MAC, error) {
		mac, err := parsePeerData(raw)
		if err != nil {
			return mac, err
		}
		var d struct{ VNI *int }
		// parsePeerData has decoded the same bytes into a struct.
		_ = json.Unmarshal(raw, &d)
		if d.VNI != nil && *d.VNI != set.VNI {
			return mac, fmt.Errorf("it publishes VNI %d but this network uses VNI %d", *d.VNI, set.VNI)
		}
		return mac, nil
	}
	if !cfg.EnableIPv4 {
		// An IPv6-only lease publishes BackendV6Data alone; it names
		// the peer's VTEP.
		return func(l lease.Lease) (string, error) {
			mac, err := check(l.Attrs.BackendV6Data)
			if err != nil {
				return "", fmt.Errorf("BackendV6Data: %w", err)
			}
			return "VtepMAC " + mac.String(), nil
		}, nil
	}
	return func(l lease.Lease) (string, error) {
		mac, err := check(l.Attrs.BackendData)
		if err != nil {
			return "", err
		}
		if cfg.EnableIPv6 && l.IPv6Subnet.IsValid() && len(l.Attrs.BackendV6Data) > 0 {
			if _, err := check(l.Attrs.BackendV6Data); err != nil {
				return "", fmt.Errorf("BackendV6Data: %w", err)
			}
		}
		return "VtepMAC " + mac.String(), nil
	}, nil
}

// expect is vxlan's Expectation: the device with its MAC and address, and
// per peer the entries desire and entries plan.
func expect(cfg *netconf.Config, ext backend.ExternalInterface) (backend.Expectation, error) {
	set, err := parseOptions(cfg.Backend)
	if err != nil {
		return backend.Expectation{}, err
	}
	port := set.Port
	if port == 0 {
		port = KernelDefaultPort
	}
	underlay := set.MTU
	basis := fmt.Sprintf("the configured MTU %d minus %d for VXLAN", set.MTU, Overhead)
	if underlay == 0 {
		underlay = ext.MTU
		basis = fmt.Sprintf("%s's MTU %d minus %d for VXLAN", ext.Name, ext.MTU, Overhead)
	}
	if !cfg.EnableIPv4 {
		return expectIPv6Only(cfg, set, underlay, basis, port)
	}
	overhead := Overhead
	if cfg.EnableIPv6 {
		// Pods get the IPv6 device's MTU; the IPv4 device keeps its own.
		overhead = OverheadIPv6
		basis = strings.Replace(basis, fmt.Sprintf("minus %d for VXLAN", Overhead), fmt.Sprintf("minus %d for VXLAN over IPv6", OverheadIPv6), 1)
	}
	podMTU, dev4MTU, dev6MTU := 0, 0, 0
	if underlay != 0 {
		podMTU, dev4MTU, dev6MTU = underlay-overhead, underlay-Overhead, underlay-OverheadIPv6
	}
	overlays := []string{DeviceName(set.VNI)}
	if cfg.EnableIPv6 {
		overlays = append(overlays, DeviceNameV6(set.VNI))
	}
	return backend.Expectation{
		PodMTU:        podMTU,
		MTUBasis:      basis,
		Port:          port,
		PortUser:      "VXLAN device",
		GatewayHint:   "; also check there that its VXLAN device's MAC is the VtepMAC its lease publishes",
		Overlays:      overlays,
		DirectRouting: set.DirectRouting,
		Wants: func(own lease.Lease, ownPublicIP netip.Addr, leases []lease.Lease, direct map[netip.Addr]string) backend.Wants {
			w := wants(cfg.Network, set, DeviceName(set.VNI), dev4MTU, own, ownPublicIP, leases, direct)
			if cfg.EnableIPv6 {
				addIPv6Wants(&w, cfg.IPv6Network, set, dev6MTU, own, leases, direct)
			}
			return w
		},
	}, nil
}

// expectIPv6Only is expect on an IPv6-only network: flannel-v6 alone,
// pods at the underlay's MTU minus 70, and each peer's entries under its
// IPv6 subnet (its lease.Key).
func expectIPv6Only(cfg *netconf.Config, set Settings, underlay int, basis string, port int) (backend.Expectation, error) {
	basis = strings.Replace(basis, fmt.Sprintf("minus %d for VXLAN", Overhead), fmt.Sprintf("minus %d for VXLAN over IPv6", OverheadIPv6), 1)
	mtu := 0
	if underlay != 0 {
		mtu = underlay - OverheadIPv6
	}
	dev := DeviceNameV6(set.VNI)
	return backend.Expectation{
		PodMTU:        mtu,
		MTUBasis:      basis,
		Port:          port,
		PortUser:      "VXLAN device",
		GatewayHint:   "; also check there that its " + dev + " device's MAC is the VtepMAC its lease publishes in BackendV6Data",
		Overlays:      []string{dev},
		DirectRouting: set.DirectRouting,
		Wants: func(own lease.Lease, _ netip.Addr, leases []lease.Lease, direct map[netip.Addr]string) backend.Wants {
			own6, _ := v6Half(own)
			return wants(cfg.IPv6Network, set, dev, mtu, own6, own.Attrs.PublicIPv6, v6Halves(leases), direct)
		},
	}, nil
}

// addIPv6Wants adds to w, the IPv4 side's Wants, what the IPv6 side asks:
// flannel-v6 with its address, and each peer's IPv6 entries under the
// peer's lease subnet, after its IPv4 ones, so that status judges both
// families of a peer in one row. A peer whose IPv6 half the IPv6 side
// skips keeps its IPv4 entries alone. Pure.
func addIPv6Wants(w *backend.Wants, network netip.Prefix, set Settings, devMTU int, own lease.Lease, leases []lease.Lease, direct map[netip.Addr]string) {
	own6, _ := v6Half(own)
	w6 := wants(network, set, DeviceNameV6(set.VNI), devMTU, own6, own.Attrs.PublicIPv6, v6Halves(leases), direct)
	for _, hw := range w6.Host {
		// Without an own IPv6 subnet the device has no address to want.
		if hw.Kind != backend.KindAddr || own.IPv6Subnet.IsValid() {
			w.Host = append(w.Host, hw)
		}
	}
	for _, l := range leases {
		subnet := l.Subnet.Masked()
		pw, ok := w.Peers[subnet]
		if !ok || pw.Refused != "" || !l.IPv6Subnet.IsValid() {
			continue
		}
		pw6, ok := w6.Peers[l.IPv6Subnet.Masked()]
		if !ok {
			continue
		}
		pw.Entries = append(pw.Entries, pw6.Entries...)
		if pw.Mismatch == "" && pw6.Mismatch != "" {
			pw.Mismatch = "IPv6: " + pw6.Mismatch
		}
		w.Peers[subnet] = pw
	}
}

// wantsDevIndex is the index wants gives the VXLAN device; the devices of
// direct routes get the ones below it. Only names reach the Wants.
const wantsDevIndex = -1

// wants turns desire's and entries' plan into Wants, grouped by peer in
// the order they are programmed: neighbour, FDB entry, route. Pure.
func wants(network netip.Prefix, set Settings, dev string, devMTU int, own lease.Lease, ownPublicIP netip.Addr, leases []lease.Lease,
	direct map[netip.Addr]string,
) backend.Wants {
	ownMAC, _ := parsePeerData(own.Attrs.BackendData) // zero when undecodable: any MAC matches then
	w := backend.Wants{Host: []backend.Want{{Kind: backend.KindDevice, Dev: dev, MTU: devMTU, MAC: ownMAC}}}
	if own.Subnet.IsValid() {
		w.Host = append(w.Host, backend.Want{Kind: backend.KindAddr, Dev: dev, Dst: backend.DeviceAddr(own.Subnet)})
	}

	st := desire(network, own, ownPublicIP, ownMAC, leases)
	names := map[int]string{wantsDevIndex: dev}
	var directIdx map[netip.Prefix]int
	if set.DirectRouting {
		directIdx = make(map[netip.Prefix]int)
		byName := make(map[string]int)
		for _, p := range st.peers {
			name, ok := direct[p.PublicIP]
			if !ok {
				continue
			}
			idx, ok := byName[name]
			if !ok {
				idx = wantsDevIndex - 1 - len(byName)
				byName[name], names[idx] = idx, name
			}
			directIdx[p.Subnet] = idx
		}
	}
	neighs, fdbs, routes := entries(st.peers, wantsDevIndex, directIdx)

	bySubnet := make(map[netip.Prefix][]backend.Want, len(st.peers))
	subnetOfGw := make(map[netip.Addr]netip.Prefix, len(st.peers))
	subnetOfMAC := make(map[kernel.MAC]netip.Prefix, len(st.peers))
	for _, p := range st.peers {
		subnetOfGw[p.Subnet.Addr()] = p.Subnet
		subnetOfMAC[p.MAC] = p.Subnet
	}
	for _, n := range neighs {
		s := subnetOfGw[n.IP]
		bySubnet[s] = append(bySubnet[s], backend.EntryWants(names, nil, []kernel.Neigh{n}, nil)...)
	}
	for _, f := range fdbs {
		s := subnetOfMAC[f.MAC]
		bySubnet[s] = append(bySubnet[s], backend.EntryWants(names, nil, nil, []kernel.FDB{f})...)
	}
	for _, r := range routes {
		bySubnet[r.Dst] = append(bySubnet[r.Dst], backend.EntryWants(names, []kernel.Route{r}, nil, nil)...)
	}

	w.Peers = make(map[netip.Prefix]backend.PeerWants, len(st.peers)+len(st.refused))
	for subnet, es := range bySubnet {
		w.Peers[subnet] = backend.PeerWants{Entries: es}
	}
	for subnet, reason := range st.refused {
		// Another lease for the subnet may have been usable.
		if _, ok := w.Peers[subnet]; !ok {
			w.Peers[subnet] = backend.PeerWants{Refused: reason}
		}
	}
	// desire programs a peer of another VNI like any other, but its
	// device drops what this host sends it.
	for _, l := range leases {
		subnet := l.Subnet.Masked()
		pw, ok := w.Peers[subnet]
		if !ok || pw.Refused != "" || l.Attrs.BackendType != BackendType {
			continue
		}
		var d backendData
		if json.Unmarshal(l.Attrs.BackendData, &d) == nil && d.VNI != set.VNI {
			pw.Mismatch = fmt.Sprintf("the lease publishes VNI %d but the network uses VNI %d", d.VNI, set.VNI)
			w.Peers[subnet] = pw
		}
	}
	return w
}
