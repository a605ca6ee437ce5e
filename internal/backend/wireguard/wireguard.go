// Package wireguard is the wireguard backend: pod traffic between hosts is
// encrypted with WireGuard and carried in UDP (port 51820 by default)
// through flannel-wg, and in a dual-stack network through flannel-wg-v6
// too. It keeps flannel's contract, so a flannel user switches by changing
// nothing: the same Backend options (ListenPort, ListenPortV6, PSK,
// PersistentKeepaliveInterval, MTU, Mode), the same device names, the same
// lease data ({"PublicKey":"<base64>","Port":51820}, and BackendV6Data
// {"PublicKey":"<base64>","Port":51821}), the same private key file
// (/run/flannel/wgkey, or $WIREGUARD_KEY_FILE; both devices use its key)
// and the same kernel state:
//
//	flannel-wg: mtu <MTU − 80>, inet 10.244.1.0/32
//	ip route replace 10.244.0.0/16 dev flannel-wg proto 87
//	flannel-wg-v6: mtu <MTU − 80>, inet6 fd00:10:244:1::/128   (Mode separate)
//	ip -6 route replace fd00:10:244::/56 dev flannel-wg-v6 proto 87
//
// and one WireGuard peer per lease and device: the peer's public key, its
// endpoint, allowed IPs its subnet(s), the PSK and keepalive. Mode says
// how the families are carried (see Devices and desire): "separate" (the
// default) runs one device per family, each reaching peers over its own
// family's underlay; "auto", "ipv4" and "ipv6" run flannel-wg alone,
// carrying both families to one endpoint per peer.
//
// Unlike flannel, which needs the wireguard kernel module, the devices run
// in the agent's process: golang.zx2c4.com/wireguard's device, configured
// through its UAPI text (IpcSet), over a TUN device with TSO/USO offloads
// and its batched UDP bind. No module, no wireguard-tools, no second
// process. See docs/design-wireguard.md.
package wireguard

import (
	"bytes"
	"cmp"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/kernel"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/netconf"
)

// BackendType is the lease BackendType of this backend, as flannel names it.
const BackendType = "wireguard"

const (
	// DeviceName is flannel's WireGuard device: IPv4's in Mode separate,
	// both families' in the single-device modes.
	DeviceName = "flannel-wg"
	// DeviceNameV6 is IPv6's device in Mode separate.
	DeviceNameV6 = "flannel-wg-v6"
	// DefaultListenPort and DefaultListenPortV6 are flannel's ports.
	DefaultListenPort   = 51820
	DefaultListenPortV6 = 51821
	// Overhead is what flannel takes from the MTU for WireGuard, on both
	// devices and whatever the underlay: outer IPv6 (40) + UDP (8) +
	// WireGuard's header and tag (32). That is exact over an IPv6 underlay
	// and leaves 20 bytes unused over IPv4 (outer header 20); taking 80
	// everywhere is what lets the single-device modes send one packet to
	// a peer over either family, and keeps pods' MTU one number.
	Overhead = 80
	// minIPv6MTU is IPv6's minimum link MTU: a device below it gets no
	// IPv6 from the kernel.
	minIPv6MTU = 1280
	// KeyFileName is the private key's file in the state directory
	// (/run/flannel/wgkey, as flannel keeps it).
	KeyFileName = "wgkey"
	// KeyFileEnv names the file instead, as flannel reads it.
	KeyFileEnv = "WIREGUARD_KEY_FILE"
	// StatusSocketName is the UAPI socket in the state directory through
	// which `weft status` (and wg, pointed at it) reads the device: its
	// peers, their endpoints and last handshakes. It is not under
	// /var/run/wireguard, where every network namespace of a host would
	// share one name. flannel-wg-v6 has its own, StatusSocketNameV6.
	StatusSocketName   = "flannel-wg.sock"
	StatusSocketNameV6 = "flannel-wg-v6.sock"
	// DefaultReconcilePeriod is how often Run re-checks the device.
	DefaultReconcilePeriod = 10 * time.Second
)

// Modes flannel knows: which devices carry which pod family, and over
// which underlay family each peer is reached (see Devices and
// pickEndpoint).
const (
	ModeSeparate = "separate"
	ModeAuto     = "auto"
	ModeIPv4     = "ipv4"
	ModeIPv6     = "ipv6"
)

// Key is a Curve25519 key as WireGuard uses it.
type Key [32]byte

// String is the key in base64, as wg and flannel write it.
func (k Key) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// hex is the key as the UAPI wants it.
func (k Key) hex() string { return hex.EncodeToString(k[:]) }

// IsZero reports whether k is all zeroes (no key).
func (k Key) IsZero() bool { return k == Key{} }

// ParseKey decodes a base64 WireGuard key.
func ParseKey(s string) (Key, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return Key{}, fmt.Errorf("not base64: %w", err)
	}
	if len(b) != len(Key{}) {
		return Key{}, fmt.Errorf("%d bytes, want 32", len(b))
	}
	return Key(b), nil
}

// NewPrivateKey returns a fresh private key, clamped as Curve25519 wants.
func NewPrivateKey() (Key, error) {
	var k Key
	if _, err := rand.Read(k[:]); err != nil {
		return Key{}, fmt.Errorf("generate a WireGuard key: %w", err)
	}
	k[0] &= 248
	k[31] = (k[31] & 127) | 64
	return k, nil
}

// PublicKey derives the public key of the private key k.
func (k Key) PublicKey() (Key, error) {
	priv, err := ecdh.X25519().NewPrivateKey(k[:])
	if err != nil {
		return Key{}, err
	}
	return Key(priv.PublicKey().Bytes()), nil
}

// Settings are the wireguard options of the network config's Backend
// object. Keys match case-insensitively and unknown keys are ignored, as
// flannel decodes them.
type Settings struct {
	ListenPort   int
	ListenPortV6 int
	// PSK is a base64 WireGuard key shared by all hosts; "" for none.
	PSK string
	// PersistentKeepaliveInterval is in seconds; 0 turns keepalives off.
	PersistentKeepaliveInterval int64
	// MTU is the underlay MTU the overhead is taken from; 0 in the config
	// means the external interface's.
	MTU  int
	Mode string

	psk Key // PSK decoded
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

// parseOptions decodes and checks what the Backend object alone decides;
// MTU stays 0 when it is not given. Every error names the option.
func parseOptions(raw json.RawMessage) (Settings, error) {
	s := Settings{}
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &s); err != nil {
			return Settings{}, fmt.Errorf("wireguard options %s: %w", truncate(raw), err)
		}
	}
	if s.ListenPort == 0 {
		s.ListenPort = DefaultListenPort
	}
	if s.ListenPortV6 == 0 {
		s.ListenPortV6 = DefaultListenPortV6
	}
	if s.Mode == "" {
		s.Mode = ModeSeparate
	}
	switch {
	case s.ListenPort < 1 || s.ListenPort > 65535:
		return Settings{}, fmt.Errorf("wireguard option ListenPort %d: must be between 1 and 65535", s.ListenPort)
	case s.ListenPortV6 < 1 || s.ListenPortV6 > 65535:
		return Settings{}, fmt.Errorf("wireguard option ListenPortV6 %d: must be between 1 and 65535", s.ListenPortV6)
	case s.PersistentKeepaliveInterval < 0 || s.PersistentKeepaliveInterval > 65535:
		return Settings{}, fmt.Errorf("wireguard option PersistentKeepaliveInterval %d: must be between 0 (off) and 65535 seconds", s.PersistentKeepaliveInterval)
	case s.Mode != ModeSeparate && s.Mode != ModeAuto && s.Mode != ModeIPv4 && s.Mode != ModeIPv6:
		return Settings{}, fmt.Errorf("wireguard option Mode %q: must be %q (one device per family), %q, %q or %q (one device for both)", s.Mode, ModeSeparate, ModeAuto, ModeIPv4, ModeIPv6)
	case s.MTU != 0:
		if err := checkMTU(s.MTU); err != nil {
			return Settings{}, err
		}
	}
	if s.PSK != "" {
		k, err := ParseKey(s.PSK)
		if err != nil {
			// The key itself is a secret: name the option, not its value.
			return Settings{}, fmt.Errorf("wireguard option PSK: %w (want a key as `wg genpsk` prints it)", err)
		}
		s.psk = k
	}
	return s, nil
}

func checkMTU(mtu int) error {
	if mtu-Overhead < 68 || mtu > 65535 {
		return fmt.Errorf("wireguard option MTU %d: must be between %d and 65535 so that flannel-wg gets at least IPv4's minimum of 68", mtu, 68+Overhead)
	}
	return nil
}

// CheckFamilies says why Mode or MTU cannot serve the address families
// cfg enables: the single-device modes that name a family need it
// enabled (their endpoints are that family's PublicIPs, which hosts
// publish only then), and a device that carries IPv6 needs IPv6's minimum
// MTU of 1280 after the overhead. Every error names the option.
func (s Settings) CheckFamilies(cfg *netconf.Config) error {
	switch {
	case s.Mode == ModeIPv4 && !cfg.EnableIPv4:
		return fmt.Errorf(`wireguard option Mode %q: the network config disables IPv4 ("EnableIPv4": false), so no host publishes an IPv4 PublicIP to reach it at; use %q, %q or %q`, s.Mode, ModeSeparate, ModeAuto, ModeIPv6)
	case s.Mode == ModeIPv6 && !cfg.EnableIPv6:
		return fmt.Errorf(`wireguard option Mode %q: the network config does not enable IPv6 ("EnableIPv6": true with an IPv6Network), so no host publishes a PublicIPv6 to reach it at; use %q, %q or %q`, s.Mode, ModeSeparate, ModeAuto, ModeIPv4)
	case cfg.EnableIPv6 && s.MTU != 0 && s.MTU-Overhead < minIPv6MTU:
		return fmt.Errorf("wireguard option MTU %d: with IPv6 enabled it must be at least %d, so that the device carrying IPv6 gets IPv6's minimum of %d after %d for WireGuard (set MTU, or use an interface with a larger MTU)",
			s.MTU, minIPv6MTU+Overhead, minIPv6MTU, Overhead)
	}
	return nil
}

func truncate(raw []byte) string {
	if len(raw) > 120 {
		return string(raw[:120]) + "..."
	}
	return string(raw)
}

// leaseData is the BackendData (or BackendV6Data) this host publishes, in
// flannel's form.
func leaseData(pub Key, port int) json.RawMessage {
	b, _ := json.Marshal(struct {
		PublicKey string
		Port      int
	}{pub.String(), port})
	return b
}

// peerData is what a peer's BackendData says: its public key and the port
// it listens on (0 when it names none: flannel before per-host ports,
// whose hosts all listen on the configured port).
type peerData struct {
	Key  Key
	Port int
}

// ParsePeerData decodes a wireguard lease's BackendData.
func ParsePeerData(raw json.RawMessage) (peerData, error) { return parsePeerData("BackendData", raw) }

// ParsePeerV6Data decodes a wireguard lease's BackendV6Data, the same
// form: the key and port of the peer's device that carries IPv6.
func ParsePeerV6Data(raw json.RawMessage) (peerData, error) {
	return parsePeerData("BackendV6Data", raw)
}

// parsePeerData decodes raw, the lease field named field; errors name it.
func parsePeerData(field string, raw json.RawMessage) (peerData, error) {
	var d struct {
		PublicKey string
		Port      int
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return peerData{}, fmt.Errorf("%s is empty; a wireguard lease needs a PublicKey", field)
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return peerData{}, fmt.Errorf("%s %s: %w", field, truncate(raw), err)
	}
	if d.PublicKey == "" {
		return peerData{}, fmt.Errorf("%s %s has no PublicKey", field, truncate(raw))
	}
	k, err := ParseKey(d.PublicKey)
	if err != nil {
		return peerData{}, fmt.Errorf("%s %s: PublicKey: %w", field, truncate(raw), err)
	}
	if k.IsZero() {
		return peerData{}, fmt.Errorf("%s %s: PublicKey is all zeroes", field, truncate(raw))
	}
	if d.Port < 0 || d.Port > 65535 {
		return peerData{}, fmt.Errorf("%s %s: Port %d is not a UDP port", field, truncate(raw), d.Port)
	}
	return peerData{Key: k, Port: d.Port}, nil
}

// DevSpec is one WireGuard device a host runs.
type DevSpec struct {
	Name string
	Port int // its UDP listen port
	// Networks are routed into it (ip route replace NET dev NAME), and
	// it holds the own subnet of each one's family as a /32 or /128.
	Networks []netip.Prefix
	// Socket is its status socket's file name in the state directory.
	Socket string
}

// Devices are the devices Mode asks for, given the enabled families'
// networks (network invalid in an IPv6-only network, network6 invalid
// without IPv6): in Mode separate flannel-wg for IPv4 on ListenPort and
// flannel-wg-v6 for IPv6 on ListenPortV6, as flannel makes them; in the
// other modes flannel-wg alone on ListenPort, for both. Pure.
func (s Settings) Devices(network, network6 netip.Prefix) []DevSpec {
	v4 := DevSpec{Name: DeviceName, Port: s.ListenPort, Socket: StatusSocketName}
	if s.Mode != ModeSeparate {
		for _, n := range []netip.Prefix{network, network6} {
			if n.IsValid() {
				v4.Networks = append(v4.Networks, n.Masked())
			}
		}
		return []DevSpec{v4}
	}
	var out []DevSpec
	if network.IsValid() {
		v4.Networks = []netip.Prefix{network.Masked()}
		out = append(out, v4)
	}
	if network6.IsValid() {
		out = append(out, DevSpec{Name: DeviceNameV6, Port: s.ListenPortV6, Socket: StatusSocketNameV6, Networks: []netip.Prefix{network6.Masked()}})
	}
	return out
}

// DevicesOf are the devices a host configured by cfg runs, for status
// and the lab. It fails when cfg's Backend options are invalid.
func DevicesOf(cfg *netconf.Config) ([]DevSpec, error) {
	s, err := parseOptions(cfg.Backend)
	if err != nil {
		return nil, err
	}
	network, network6 := enabled(cfg)
	return s.Devices(network, network6), nil
}

// KeyHalf says which half of a lease publishes the key and port of the
// peer's device named dev in a network configured by cfg: IPv6's
// (BackendV6Data) for flannel-wg-v6, and for flannel-wg in an IPv6-only
// network; IPv4's (BackendData) otherwise.
func KeyHalf(cfg *netconf.Config, dev string) (ipv6 bool) {
	return dev == DeviceNameV6 || !cfg.EnableIPv4
}

// pickEndpoint is the address a single device (the modes but separate)
// reaches a peer at, of pub4 and pub6, the peer's PublicIP and PublicIPv6
// (invalid when that half is not a peer). A peer with one of them is
// reached at it, whatever the mode. With both, ipv4 and ipv6 take their
// family's, and auto decides as flannel does: IPv4 when the peer's is not
// a private address and this host has one (own4); else IPv6 when both
// the peer's and this host's (own6) are global, not private; else IPv4.
// Pure.
func pickEndpoint(mode string, pub4, pub6, own4, own6 netip.Addr) netip.Addr {
	switch {
	case !pub6.IsValid():
		return pub4
	case !pub4.IsValid():
		return pub6
	case mode == ModeIPv6:
		return pub6
	case mode == ModeIPv4:
		return pub4
	case !pub4.IsPrivate() && own4.IsValid():
		return pub4
	case !pub6.IsPrivate() && own6.IsValid() && !own6.IsPrivate():
		return pub6
	}
	return pub4
}

// peer is one WireGuard peer of one device.
type peer struct {
	// ID is the peer's lease, by its key (lease.Key, masked): its IPv4
	// subnet, or its IPv6 subnet in an IPv6-only network.
	ID       netip.Prefix
	Allowed  []netip.Prefix // its allowed IPs: the masked subnets it carries on this device
	Endpoint netip.AddrPort
	Key      Key
}

func (p peer) equal(o peer) bool {
	return p.ID == o.ID && p.Endpoint == o.Endpoint && p.Key == o.Key && slices.Equal(p.Allowed, o.Allowed)
}

// plan is what desire needs to know of this host.
type plan struct {
	set Settings
	// network and network6 are the enabled families' networks; each is
	// invalid when its family is not.
	network, network6          netip.Prefix
	own                        lease.Lease
	ownPublicIP, ownPublicIPv6 netip.Addr
	ownKey                     Key
}

// peersState is what one set of leases asks of this host.
type peersState struct {
	devs    map[string][]peer            // by device name, each sorted by ID
	ignored map[netip.Prefix]lease.Attrs // leases of another backend type
	errs    []error                      // wireguard leases, or halves, that get no peer, and why
	// refused is, by lease key, why a lease gets no peer at all;
	// refusedV6 why a dual-stack lease's IPv6 half gets none while its
	// IPv4 half does (backend.PeerWants.RefusedV6).
	refused, refusedV6 map[netip.Prefix]string
}

// halves is what judge finds of one lease's two halves.
type halves struct {
	ok4, ok6        bool
	d4, d6          peerData
	reason, reason6 string // why the lease, or its IPv6 half alone, is no peer
}

// judge decides which halves of l can be peers. In a network with IPv4,
// the IPv4 half is the lease: its problems refuse it whole, and a bad
// IPv6 half is refused alone. In an IPv6-only network the IPv6 half is
// the lease. A lease without an IPv6 subnet in a dual-stack network (a
// host on an IPv4-only config) has no IPv6 half to judge. Pure.
func (p plan) judge(l lease.Lease) halves {
	var h halves
	v4 := p.network.IsValid()
	if v4 {
		h.reason = backend.PeerProblem(l, p.network, p.own, p.ownPublicIP)
		if h.reason == "" {
			d, err := ParsePeerData(l.Attrs.BackendData)
			if err != nil {
				h.reason = err.Error()
			}
			h.d4, h.ok4 = d, err == nil
		}
		if h.reason != "" {
			return h
		}
	}
	if !p.network6.IsValid() || (v4 && !l.IPv6Subnet.IsValid()) {
		return h
	}
	why := backend.PeerV6Problem(l, p.network6, p.own, p.ownPublicIPv6)
	if why == "" {
		h.d6, why = p.v6Data(l, h)
	}
	h.ok6 = why == ""
	if v4 {
		h.reason6 = why
	} else {
		h.reason = why
	}
	return h
}

// v6Data is the key and port of the peer's device that carries IPv6, or
// why the lease names none this host can use. A single device (modes but
// separate) has one key: a lease publishing another in BackendV6Data
// than in BackendData cannot be one peer, and one publishing no
// BackendV6Data is its BackendData's device. Pure.
func (p plan) v6Data(l lease.Lease, h halves) (peerData, string) {
	single := p.set.Mode != ModeSeparate
	if len(bytes.TrimSpace(l.Attrs.BackendV6Data)) == 0 || string(bytes.TrimSpace(l.Attrs.BackendV6Data)) == "null" {
		if single && h.ok4 {
			return h.d4, ""
		}
		return peerData{}, "it publishes no BackendV6Data, the public key of the device that carries its IPv6"
	}
	d, err := ParsePeerV6Data(l.Attrs.BackendV6Data)
	switch {
	case err != nil:
		return peerData{}, err.Error()
	case single && h.ok4 && d.Key != h.d4.Key:
		return peerData{}, fmt.Sprintf("its BackendV6Data publishes the public key %s, its BackendData %s, but in mode %s one device (%s) carries both families to one key", d.Key, h.d4.Key, p.set.Mode, DeviceName)
	}
	return d, ""
}

// candidate is one peer a lease would be on one device; half6 marks the
// IPv6 half of a dual-stack lease on a device of its own, which can be
// refused alone.
type candidate struct {
	dev   string
	peer  peer
	half6 bool
}

// peersOf are the peers the admitted halves h of l make, device by
// device. A peer is reached on the port its lease publishes for that
// device, or this host's own port for it when it names none (flannel
// before per-host ports). Pure.
func (p plan) peersOf(l lease.Lease, h halves) []candidate {
	id := l.Key().Masked()
	orPort := func(port, def int) uint16 {
		if port == 0 {
			return uint16(def)
		}
		return uint16(port)
	}
	if p.set.Mode == ModeSeparate {
		var out []candidate
		if h.ok4 {
			out = append(out, candidate{dev: DeviceName, peer: peer{ID: id, Allowed: []netip.Prefix{l.Subnet.Masked()},
				Endpoint: netip.AddrPortFrom(l.Attrs.PublicIP, orPort(h.d4.Port, p.set.ListenPort)), Key: h.d4.Key}})
		}
		if h.ok6 {
			out = append(out, candidate{dev: DeviceNameV6, half6: p.network.IsValid(), peer: peer{ID: id, Allowed: []netip.Prefix{l.IPv6Subnet.Masked()},
				Endpoint: netip.AddrPortFrom(l.Attrs.PublicIPv6, orPort(h.d6.Port, p.set.ListenPortV6)), Key: h.d6.Key}})
		}
		return out
	}
	pr := peer{ID: id}
	var pub4, pub6 netip.Addr
	if h.ok4 {
		pr.Allowed = append(pr.Allowed, l.Subnet.Masked())
		pub4 = l.Attrs.PublicIP
	}
	if h.ok6 {
		pr.Allowed = append(pr.Allowed, l.IPv6Subnet.Masked())
		pub6 = l.Attrs.PublicIPv6
	}
	ep := pickEndpoint(p.set.Mode, pub4, pub6, p.ownPublicIP, p.ownPublicIPv6)
	d := h.d4
	if ep.Is6() {
		d = h.d6
	}
	pr.Key = d.Key
	pr.Endpoint = netip.AddrPortFrom(ep, orPort(d.Port, p.set.ListenPort))
	return []candidate{{dev: DeviceName, peer: pr}}
}

// desire computes the peers for leases: every wireguard lease other than
// own whose halves judge admits, on the devices Mode runs. A lease whose
// key is this host's or an earlier lease's on the same device is refused
// (its IPv6 half alone, when that is on a device of its own): WireGuard
// knows a peer by its key, so two leases with one key would be one peer
// whose allowed IPs and endpoint flip between them. Pure.
func desire(p plan, leases []lease.Lease) peersState {
	st := peersState{
		devs:      make(map[string][]peer),
		ignored:   make(map[netip.Prefix]lease.Attrs),
		refused:   make(map[netip.Prefix]string),
		refusedV6: make(map[netip.Prefix]string),
	}
	sorted := slices.Clone(leases)
	slices.SortStableFunc(sorted, func(a, b lease.Lease) int {
		return cmp.Or(a.Key().Addr().Compare(b.Key().Addr()), cmp.Compare(a.Key().Bits(), b.Key().Bits()))
	})
	ownID := p.own.Key().Masked()
	seenID := make(map[netip.Prefix]bool)
	seenKey := make(map[string]map[Key]netip.Prefix)
	keyProblem := func(c candidate) string {
		switch other, dup := seenKey[c.dev][c.peer.Key]; {
		case c.peer.Key == p.ownKey:
			return "it publishes this host's own public key"
		case dup:
			return fmt.Sprintf("it publishes the public key of the peer with subnet %s", other)
		}
		return ""
	}
	for _, l := range sorted {
		id := l.Key().Masked()
		if id == ownID {
			continue
		}
		if l.Attrs.BackendType != BackendType {
			st.ignored[id] = l.Attrs
			continue
		}
		h := p.judge(l)
		if h.reason == "" && seenID[id] {
			h.reason = "another lease has the same subnet"
		}
		var cands []candidate
		if h.reason == "" {
			cands = p.peersOf(l, h)
			for _, c := range cands {
				if why := keyProblem(c); why != "" && !c.half6 {
					h.reason = why
				}
			}
		}
		if h.reason != "" {
			st.errs = append(st.errs, fmt.Errorf("peer %s (subnet %s): not reachable over wireguard: %s", backend.PeerName(l), id, h.reason))
			if !seenID[id] {
				st.refused[id] = h.reason
			}
			continue
		}
		seenID[id] = true
		for _, c := range cands {
			if c.half6 {
				if why := keyProblem(c); why != "" {
					h.reason6 = why
					continue
				}
			}
			if seenKey[c.dev] == nil {
				seenKey[c.dev] = make(map[Key]netip.Prefix)
			}
			seenKey[c.dev][c.peer.Key] = id
			st.devs[c.dev] = append(st.devs[c.dev], c.peer)
		}
		if h.reason6 != "" {
			st.errs = append(st.errs, fmt.Errorf("peer %s (subnet %s, IPv6 subnet %s): no IPv6 over wireguard: %s", backend.PeerName(l), id, l.IPv6Subnet, h.reason6))
			st.refusedV6[id] = h.reason6
		}
	}
	return st
}

// deviceConfig is the UAPI text that configures a fresh device: the
// private key, the listen port, and every peer. Pure.
func deviceConfig(priv Key, port int, peers []peer, set Settings) string {
	var b strings.Builder
	fmt.Fprintf(&b, "private_key=%s\nlisten_port=%d\nreplace_peers=true\n", priv.hex(), port)
	for _, p := range peers {
		writePeer(&b, p, set)
	}
	return b.String()
}

// writePeer writes the UAPI lines that make p's key a peer exactly as p
// says, whether it existed before or not.
func writePeer(b *strings.Builder, p peer, set Settings) {
	fmt.Fprintf(b, "public_key=%s\n", p.Key.hex())
	if !set.psk.IsZero() {
		fmt.Fprintf(b, "preshared_key=%s\n", set.psk.hex())
	}
	fmt.Fprintf(b, "endpoint=%s\n", p.Endpoint)
	fmt.Fprintf(b, "persistent_keepalive_interval=%d\n", set.PersistentKeepaliveInterval)
	b.WriteString("replace_allowed_ips=true\n")
	for _, a := range p.Allowed {
		fmt.Fprintf(b, "allowed_ip=%s\n", a)
	}
}

// peerChange is one difference between two peer sets.
type peerChange struct {
	kind string // "added", "removed", "changed"
	peer peer
	was  peer // for "changed"
}

// diffPeers lists how next differs from prev, by lease, in lease order.
// A peer whose key changed (it rotated its key) is "changed": its old key
// goes and its new key comes.
func diffPeers(prev, next []peer) []peerChange {
	was := make(map[netip.Prefix]peer, len(prev))
	for _, p := range prev {
		was[p.ID] = p
	}
	var out []peerChange
	for _, p := range next {
		o, ok := was[p.ID]
		switch {
		case !ok:
			out = append(out, peerChange{kind: "added", peer: p})
		case !o.equal(p):
			out = append(out, peerChange{kind: "changed", peer: p, was: o})
		}
		delete(was, p.ID)
	}
	for _, p := range prev {
		if _, gone := was[p.ID]; gone {
			out = append(out, peerChange{kind: "removed", peer: p})
		}
	}
	return out
}

// updateConfig is the UAPI text that turns a device configured with prev
// into one configured with next, touching only the peers that differ: a
// peer that stays keeps its session, so an Apply that changes one lease
// costs the others nothing. Removals come first, so that a key that moved
// from one subnet to another is removed before it is added again. "" when
// nothing differs. Pure.
func updateConfig(prev, next []peer, set Settings) string {
	nextKeys := make(map[Key]bool, len(next))
	for _, p := range next {
		nextKeys[p.Key] = true
	}
	var rm, add strings.Builder
	for _, c := range diffPeers(prev, next) {
		switch c.kind {
		case "removed":
			if !nextKeys[c.peer.Key] {
				fmt.Fprintf(&rm, "public_key=%s\nremove=true\n", c.peer.Key.hex())
			}
		case "changed":
			if c.was.Key != c.peer.Key && !nextKeys[c.was.Key] {
				fmt.Fprintf(&rm, "public_key=%s\nremove=true\n", c.was.Key.hex())
			}
			writePeer(&add, c.peer, set)
		default:
			writePeer(&add, c.peer, set)
		}
	}
	return rm.String() + add.String()
}

// peerDrift is the UAPI text that makes a device whose peers are have
// hold want's instead: a wanted key it lacks, or holds with other allowed
// IPs, is set again; a key it holds that is not wanted is removed. The
// others, and every peer's session, are left alone, and so are
// endpoints: WireGuard moves a peer's endpoint to wherever its
// authenticated packets come from (roaming), which is not drift. fixed
// are the wanted peers it sets. "" when the device holds what is wanted.
// Pure.
func peerDrift(have []PeerStatus, want []peer, set Settings) (text string, fixed []peer, removed int) {
	held := make(map[Key][]netip.Prefix, len(have))
	for _, p := range have {
		held[p.Key] = slices.SortedFunc(slices.Values(p.AllowedIPs), comparePrefix)
	}
	var b strings.Builder
	wanted := make(map[Key]bool, len(want))
	for _, p := range want {
		wanted[p.Key] = true
		allowed, ok := held[p.Key]
		if ok && slices.Equal(allowed, slices.SortedFunc(slices.Values(p.Allowed), comparePrefix)) {
			continue
		}
		writePeer(&b, p, set)
		fixed = append(fixed, p)
	}
	var rm strings.Builder
	for _, p := range have {
		if !wanted[p.Key] {
			fmt.Fprintf(&rm, "public_key=%s\nremove=true\n", p.Key.hex())
			removed++
		}
	}
	return rm.String() + b.String(), fixed, removed
}

func comparePrefix(a, b netip.Prefix) int {
	return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
}

// PeerStatus is what the device reports of one peer (wg show).
type PeerStatus struct {
	Key           Key
	Endpoint      netip.AddrPort
	AllowedIPs    []netip.Prefix
	LastHandshake time.Time // zero: never
	RxBytes       uint64
	TxBytes       uint64
}

// DeviceStatus is what a device reports of itself and its peers.
type DeviceStatus struct {
	// PublicKey is the public key of the device's private key: the key
	// peers must encrypt to. The private key itself is not kept.
	PublicKey  Key
	ListenPort int
	Peers      []PeerStatus
}

// ParseIpcGet decodes a device's UAPI "get" answer. It ignores keys it
// does not know, as the format allows new ones.
func ParseIpcGet(text string) (DeviceStatus, error) {
	var st DeviceStatus
	var cur *PeerStatus
	var sec, nsec int64
	flush := func() {
		if cur != nil {
			if sec != 0 || nsec != 0 {
				cur.LastHandshake = time.Unix(sec, nsec)
			}
			st.Peers = append(st.Peers, *cur)
		}
		cur, sec, nsec = nil, 0, 0
	}
	hexKey := func(i int, k, v string) (Key, error) {
		b, err := hex.DecodeString(v)
		if err != nil || len(b) != 32 {
			return Key{}, fmt.Errorf("wireguard status line %d: %s is not 32 hex bytes", i+1, k)
		}
		return Key(b), nil
	}
	for i, line := range strings.Split(text, "\n") {
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return DeviceStatus{}, fmt.Errorf("wireguard status line %d %q: no '='", i+1, truncate([]byte(line)))
		}
		var err error
		switch {
		case k == "public_key":
			flush()
			var key Key
			if key, err = hexKey(i, k, v); err != nil {
				return DeviceStatus{}, err
			}
			cur = &PeerStatus{Key: key}
			continue
		case cur == nil && k == "private_key":
			var priv Key
			if priv, err = hexKey(i, k, v); err == nil && !priv.IsZero() {
				st.PublicKey, err = priv.PublicKey()
			}
		case cur == nil && k == "listen_port":
			st.ListenPort, err = strconv.Atoi(v)
		case cur == nil:
			// errno, fwmark, ...
		case k == "endpoint":
			cur.Endpoint, err = netip.ParseAddrPort(v)
		case k == "allowed_ip":
			var p netip.Prefix
			if p, err = netip.ParsePrefix(v); err == nil {
				cur.AllowedIPs = append(cur.AllowedIPs, p)
			}
		case k == "last_handshake_time_sec":
			sec, err = strconv.ParseInt(v, 10, 64)
		case k == "last_handshake_time_nsec":
			nsec, err = strconv.ParseInt(v, 10, 64)
		case k == "rx_bytes":
			cur.RxBytes, err = strconv.ParseUint(v, 10, 64)
		case k == "tx_bytes":
			cur.TxBytes, err = strconv.ParseUint(v, 10, 64)
		}
		if err != nil {
			return DeviceStatus{}, fmt.Errorf("wireguard status line %d %s: %w", i+1, k, err)
		}
	}
	flush()
	return st, nil
}

// Descriptor describes wireguard to the rest of weft.
func Descriptor() backend.Descriptor {
	return backend.Descriptor{
		Name:         BackendType,
		LeaseTypes:   []string{BackendType},
		IPv6:         true,
		New:          New,
		CheckOptions: func(raw json.RawMessage) error { _, err := parseOptions(raw); return err },
		Expect:       expect,
		LeaseCheck:   leaseCheck,
		Devices:      []backend.DeviceFact{{Kind: "tuntap", Name: DeviceName}, {Kind: "tuntap", Name: DeviceNameV6}},
		// The key file, the temporary file atomicfile leaves when it is
		// interrupted before its rename, and the status sockets.
		StateFiles: []string{KeyFileName, "." + KeyFileName + ".tmp-*", StatusSocketName, StatusSocketNameV6},
	}
}

// leaseCheck is wireguard's part of admission: a peer's identity is its
// public key (two peers with one key would be one WireGuard peer), and a
// lease without a usable key cannot be a peer. A bad BackendV6Data costs
// the lease its IPv6 half only, which the backend refuses and says why.
func leaseCheck(cfg *netconf.Config) (backend.LeaseCheck, error) {
	if _, err := parseOptions(cfg.Backend); err != nil {
		return nil, err
	}
	if !cfg.EnableIPv4 {
		// An IPv6-only lease publishes BackendV6Data alone; its key is
		// the peer's.
		return func(l lease.Lease) (string, error) {
			d, err := ParsePeerV6Data(l.Attrs.BackendV6Data)
			if err != nil {
				return "", fmt.Errorf("BackendV6Data: %w", err)
			}
			return "PublicKey " + d.Key.String(), nil
		}, nil
	}
	return func(l lease.Lease) (string, error) {
		d, err := ParsePeerData(l.Attrs.BackendData)
		if err != nil {
			return "", err
		}
		return "PublicKey " + d.Key.String(), nil
	}, nil
}

// enabled are cfg's networks as plan wants them: each invalid when its
// family is disabled.
func enabled(cfg *netconf.Config) (network, network6 netip.Prefix) {
	if cfg.EnableIPv4 {
		network = cfg.Network.Masked()
	}
	if cfg.EnableIPv6 {
		network6 = cfg.IPv6Network.Masked()
	}
	return network, network6
}

// expect is wireguard's Expectation: each device of the mode and the
// route of each of its networks through it; the peers live in the
// devices, not in kernel tables.
func expect(cfg *netconf.Config, ext backend.ExternalInterface) (backend.Expectation, error) {
	s, err := parseOptions(cfg.Backend)
	if err != nil {
		return backend.Expectation{}, err
	}
	if err := s.CheckFamilies(cfg); err != nil {
		return backend.Expectation{}, err
	}
	mtu, basis := 0, ""
	switch {
	case s.MTU != 0:
		mtu, basis = s.MTU-Overhead, fmt.Sprintf("the MTU option %d minus %d for WireGuard", s.MTU, Overhead)
	case ext.MTU != 0:
		mtu, basis = ext.MTU-Overhead, fmt.Sprintf("%s's MTU %d minus %d for WireGuard", ext.Name, ext.MTU, Overhead)
	}
	network, network6 := enabled(cfg)
	port := s.ListenPort
	if !network.IsValid() && s.Mode == ModeSeparate {
		port = s.ListenPortV6 // flannel-wg-v6 alone
	}
	return backend.Expectation{
		PodMTU:   mtu,
		MTUBasis: basis,
		Port:     port,
		PortUser: "WireGuard (in the agent)",
		Wants: func(own lease.Lease, ownPublicIP netip.Addr, leases []lease.Lease, _ map[netip.Addr]string) backend.Wants {
			return wants(plan{set: s, network: network, network6: network6, own: own, ownPublicIP: ownPublicIP, ownPublicIPv6: own.Attrs.PublicIPv6}, mtu, leases)
		},
	}, nil
}

// wants is what the backend asks of the kernel, as Wants: each device and
// its routes for the host, and no kernel entry per peer. Pure.
func wants(p plan, mtu int, leases []lease.Lease) backend.Wants {
	var w backend.Wants
	for i, d := range p.set.Devices(p.network, p.network6) {
		idx := i + 1
		names := map[int]string{idx: d.Name}
		w.Host = append(w.Host, backend.Want{Kind: backend.KindDevice, Dev: d.Name, MTU: mtu})
		var routes []kernel.Route
		for _, n := range d.Networks {
			routes = append(routes, networkRoute(n, idx))
		}
		w.Host = append(w.Host, backend.EntryWants(names, routes, nil, nil)...)
	}
	// The own key is unknown here; a peer publishing it is refused by the
	// agent, and shown as a peer by status.
	st := desire(p, leases)
	w.Peers = make(map[netip.Prefix]backend.PeerWants)
	for _, peers := range st.devs {
		for _, pr := range peers {
			w.Peers[pr.ID] = backend.PeerWants{RefusedV6: st.refusedV6[pr.ID]}
		}
	}
	for id, reason := range st.refused {
		if _, ok := w.Peers[id]; !ok {
			w.Peers[id] = backend.PeerWants{Refused: reason}
		}
	}
	return w
}

// networkRoute is a route wireguard programs, as flannel does: a whole
// network into the device that carries its family (ip route replace
// NETWORK dev flannel-wg proto 87). The device sends each packet to the
// peer whose allowed IPs hold its destination.
func networkRoute(network netip.Prefix, devIndex int) kernel.Route {
	return kernel.Route{Dst: network, LinkIndex: devIndex, Proto: kernel.ProtoWeft}
}
