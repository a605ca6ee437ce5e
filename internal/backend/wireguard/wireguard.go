// Package wireguard is the wireguard backend: pod traffic between hosts is
// encrypted with WireGuard and carried in UDP (port 51820 by default)
// through one device per host, flannel-wg. It keeps flannel's contract, so
// a flannel user switches by changing nothing: the same Backend options
// (ListenPort, ListenPortV6, PSK, PersistentKeepaliveInterval, MTU, Mode),
// the same device name, the same lease data ({"PublicKey":"<base64>",
// "Port":51820}), the same private key file (/run/flannel/wgkey, or
// $WIREGUARD_KEY_FILE) and the same kernel state:
//
//	flannel-wg: mtu <MTU − 80>, inet 10.244.1.0/32
//	ip route replace 10.244.0.0/16 dev flannel-wg proto 87
//
// and one WireGuard peer per lease: the peer's public key, endpoint
// PublicIP:Port, allowed IPs its subnet, the PSK and keepalive.
//
// Unlike flannel, which needs the wireguard kernel module, the device runs
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
	"errors"
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
	// DeviceName is flannel's WireGuard device (IPv4 or single-device
	// modes).
	DeviceName = "flannel-wg"
	// DefaultListenPort and DefaultListenPortV6 are flannel's ports.
	DefaultListenPort   = 51820
	DefaultListenPortV6 = 51821
	// Overhead is what flannel takes from the MTU for WireGuard: outer
	// IPv6 (40, so that an IPv6 underlay fits too) + UDP (8) + WireGuard's
	// header and tag (32).
	Overhead = 80
	// KeyFileName is the private key's file in the state directory
	// (/run/flannel/wgkey, as flannel keeps it).
	KeyFileName = "wgkey"
	// KeyFileEnv names the file instead, as flannel reads it.
	KeyFileEnv = "WIREGUARD_KEY_FILE"
	// StatusSocketName is the UAPI socket in the state directory through
	// which `weft status` (and wg, pointed at it) reads the device: its
	// peers, their endpoints and last handshakes. It is not under
	// /var/run/wireguard, where every network namespace of a host would
	// share one name.
	StatusSocketName = "flannel-wg.sock"
	// DefaultReconcilePeriod is how often Run re-checks the device.
	DefaultReconcilePeriod = 10 * time.Second
)

// Modes flannel knows. This build carries IPv4 only, where separate,
// auto and ipv4 all mean one device over the IPv4 underlay.
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
	case s.Mode == ModeIPv6:
		return Settings{}, fmt.Errorf("wireguard option Mode %q: this build carries IPv4 only; use %q", s.Mode, ModeSeparate)
	case s.Mode != ModeSeparate && s.Mode != ModeAuto && s.Mode != ModeIPv4:
		return Settings{}, fmt.Errorf("wireguard option Mode %q: must be %q, %q, %q or %q", s.Mode, ModeSeparate, ModeAuto, ModeIPv4, ModeIPv6)
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

func truncate(raw []byte) string {
	if len(raw) > 120 {
		return string(raw[:120]) + "..."
	}
	return string(raw)
}

// leaseData is the BackendData this host publishes, in flannel's form.
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
func ParsePeerData(raw json.RawMessage) (peerData, error) {
	var d struct {
		PublicKey string
		Port      int
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return peerData{}, errors.New("BackendData is empty; a wireguard lease needs a PublicKey")
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return peerData{}, fmt.Errorf("BackendData %s: %w", truncate(raw), err)
	}
	if d.PublicKey == "" {
		return peerData{}, fmt.Errorf("BackendData %s has no PublicKey", truncate(raw))
	}
	k, err := ParseKey(d.PublicKey)
	if err != nil {
		return peerData{}, fmt.Errorf("BackendData %s: PublicKey: %w", truncate(raw), err)
	}
	if k.IsZero() {
		return peerData{}, fmt.Errorf("BackendData %s: PublicKey is all zeroes", truncate(raw))
	}
	if d.Port < 0 || d.Port > 65535 {
		return peerData{}, fmt.Errorf("BackendData %s: Port %d is not a UDP port", truncate(raw), d.Port)
	}
	return peerData{Key: k, Port: d.Port}, nil
}

// peer is one WireGuard peer this host configures.
type peer struct {
	Subnet   netip.Prefix // masked; its allowed IPs
	Endpoint netip.AddrPort
	Key      Key
}

// peersState is what one set of leases asks of this host.
type peersState struct {
	peers   []peer                       // sorted by subnet
	ignored map[netip.Prefix]lease.Attrs // leases of another backend type
	errs    []error                      // wireguard leases that get no peer, and why
	refused map[netip.Prefix]string      // the same by subnet: the reason alone
}

// desire computes the peers for leases: every wireguard lease other than
// own with a usable public key, reached at its PublicIP on the port it
// publishes (listenPort when it publishes none). A lease whose key is this
// host's or an earlier lease's is refused: WireGuard knows a peer by its
// key, so two leases with one key would be one peer whose allowed IPs and
// endpoint flip between them. Pure.
func desire(network netip.Prefix, own lease.Lease, ownPublicIP netip.Addr, ownKey Key, listenPort int, leases []lease.Lease) peersState {
	st := peersState{ignored: make(map[netip.Prefix]lease.Attrs), refused: make(map[netip.Prefix]string)}
	sorted := slices.Clone(leases)
	slices.SortStableFunc(sorted, func(a, b lease.Lease) int {
		return cmp.Or(a.Subnet.Addr().Compare(b.Subnet.Addr()), cmp.Compare(a.Subnet.Bits(), b.Subnet.Bits()))
	})
	seenSubnet := make(map[netip.Prefix]bool)
	seenKey := make(map[Key]netip.Prefix)
	for _, l := range sorted {
		subnet := l.Subnet.Masked()
		if subnet == own.Subnet.Masked() {
			continue
		}
		if l.Attrs.BackendType != BackendType {
			st.ignored[subnet] = l.Attrs
			continue
		}
		reason := backend.PeerProblem(l, network, own, ownPublicIP)
		var d peerData
		if reason == "" {
			var err error
			if d, err = ParsePeerData(l.Attrs.BackendData); err != nil {
				reason = err.Error()
			}
		}
		switch {
		case reason != "":
		case seenSubnet[subnet]:
			reason = "another lease has the same subnet"
		case d.Key == ownKey:
			reason = "it publishes this host's own public key"
		default:
			if other, dup := seenKey[d.Key]; dup {
				reason = fmt.Sprintf("it publishes the public key of the peer with subnet %s", other)
			}
		}
		if reason != "" {
			st.errs = append(st.errs, fmt.Errorf("peer %s (subnet %s): not reachable over wireguard: %s", backend.PeerName(l), subnet, reason))
			if !seenSubnet[subnet] {
				st.refused[subnet] = reason
			}
			continue
		}
		port := d.Port
		if port == 0 {
			port = listenPort
		}
		seenSubnet[subnet] = true
		seenKey[d.Key] = subnet
		st.peers = append(st.peers, peer{Subnet: subnet, Endpoint: netip.AddrPortFrom(l.Attrs.PublicIP, uint16(port)), Key: d.Key})
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
	fmt.Fprintf(b, "replace_allowed_ips=true\nallowed_ip=%s\n", p.Subnet)
}

// peerChange is one difference between two peer sets.
type peerChange struct {
	kind string // "added", "removed", "changed"
	peer peer
	was  peer // for "changed"
}

// diffPeers lists how next differs from prev, by subnet, in subnet order.
// A peer whose key changed (it rotated its key) is "changed": its old key
// goes and its new key comes.
func diffPeers(prev, next []peer) []peerChange {
	was := make(map[netip.Prefix]peer, len(prev))
	for _, p := range prev {
		was[p.Subnet] = p
	}
	var out []peerChange
	for _, p := range next {
		o, ok := was[p.Subnet]
		switch {
		case !ok:
			out = append(out, peerChange{kind: "added", peer: p})
		case o != p:
			out = append(out, peerChange{kind: "changed", peer: p, was: o})
		}
		delete(was, p.Subnet)
	}
	for _, p := range prev {
		if _, gone := was[p.Subnet]; gone {
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
		NoIPv6:       "weft's wireguard backend does not program IPv6 yet (flannel's does); use host-gw (hosts on one L2 segment) for dual-stack",
		Name:         BackendType,
		LeaseTypes:   []string{BackendType},
		New:          New,
		CheckOptions: func(raw json.RawMessage) error { _, err := parseOptions(raw); return err },
		Expect:       expect,
		LeaseCheck:   leaseCheck,
		Devices:      []backend.DeviceFact{{Kind: "tuntap", Name: DeviceName}},
		// The key file, and the temporary file atomicfile leaves when it is
		// interrupted before its rename.
		StateFiles: []string{KeyFileName, "." + KeyFileName + ".tmp-*", StatusSocketName},
	}
}

// leaseCheck is wireguard's part of admission: a peer's identity is its
// public key (two peers with one key would be one WireGuard peer), and a
// lease without a usable key cannot be a peer.
func leaseCheck(cfg *netconf.Config) (backend.LeaseCheck, error) {
	if _, err := parseOptions(cfg.Backend); err != nil {
		return nil, err
	}
	return func(l lease.Lease) (string, error) {
		d, err := ParsePeerData(l.Attrs.BackendData)
		if err != nil {
			return "", err
		}
		return "PublicKey " + d.Key.String(), nil
	}, nil
}

// expect is wireguard's Expectation: flannel-wg and one route for the
// whole network through it; the peers live in the device, not in kernel
// tables.
func expect(cfg *netconf.Config, ext backend.ExternalInterface) (backend.Expectation, error) {
	s, err := parseOptions(cfg.Backend)
	if err != nil {
		return backend.Expectation{}, err
	}
	mtu, basis := 0, ""
	switch {
	case s.MTU != 0:
		mtu, basis = s.MTU-Overhead, fmt.Sprintf("the MTU option %d minus %d for WireGuard", s.MTU, Overhead)
	case ext.MTU != 0:
		mtu, basis = ext.MTU-Overhead, fmt.Sprintf("%s's MTU %d minus %d for WireGuard", ext.Name, ext.MTU, Overhead)
	}
	return backend.Expectation{
		PodMTU:   mtu,
		MTUBasis: basis,
		Port:     s.ListenPort,
		PortUser: "WireGuard (in the agent)",
		Wants: func(own lease.Lease, ownPublicIP netip.Addr, leases []lease.Lease, _ map[netip.Addr]string) backend.Wants {
			return wants(cfg.Network, mtu, s.ListenPort, own, ownPublicIP, leases)
		},
	}, nil
}

// wants is what the backend asks of the kernel, as Wants: the device and
// its route for the host, and no kernel entry per peer. Pure.
func wants(network netip.Prefix, mtu, port int, own lease.Lease, ownPublicIP netip.Addr, leases []lease.Lease) backend.Wants {
	names := map[int]string{1: DeviceName}
	w := backend.Wants{
		Host: append([]backend.Want{{Kind: backend.KindDevice, Dev: DeviceName, MTU: mtu}},
			backend.EntryWants(names, []kernel.Route{networkRoute(network.Masked(), 1)}, nil, nil)...),
	}
	// The own key is unknown here; a peer publishing it is refused by the
	// agent, and shown as a peer by status.
	st := desire(network.Masked(), own, ownPublicIP, Key{}, port, leases)
	w.Peers = make(map[netip.Prefix]backend.PeerWants, len(st.peers)+len(st.refused))
	for _, p := range st.peers {
		w.Peers[p.Subnet] = backend.PeerWants{}
	}
	for subnet, reason := range st.refused {
		if _, ok := w.Peers[subnet]; !ok {
			w.Peers[subnet] = backend.PeerWants{Refused: reason}
		}
	}
	return w
}

// networkRoute is the one route wireguard programs, as flannel does: the
// whole network into flannel-wg (ip route replace NETWORK dev flannel-wg
// proto 87). The device sends each packet to the peer whose allowed IPs
// hold its destination.
func networkRoute(network netip.Prefix, devIndex int) kernel.Route {
	return kernel.Route{Dst: network, LinkIndex: devIndex, Proto: kernel.ProtoWeft}
}
