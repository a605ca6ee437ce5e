package lab

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"

	"github.com/weftnet/weft/internal/backend/wireguard"
	"github.com/weftnet/weft/internal/netconf"
)

// Defaults mirror a common flannel-on-etcd deployment: an underlay
// 10.4.7.0/24 with etcd on .12 and hosts from .21 up, pods in 172.7.0.0/16.
const (
	DefaultPrefix     = "weft"
	DefaultHosts      = 3
	DefaultPods       = 2
	DefaultBackend    = "host-gw"
	DefaultEtcdPrefix = "/coreos.com/network"
	DefaultStateRoot  = "/run/weft-lab"

	MaxHosts    = 200
	MaxPods     = 50
	MaxSegments = 8

	// HealthPort is where each agent serves /healthz and /readyz, on the
	// host namespace's loopback.
	HealthPort = 2401
	// ProbePort is the TCP port of the echo server the checks start in
	// every pod.
	ProbePort = 7777
)

// The lab's address families (Spec.IPFamily), named as `--ip-family`
// takes them.
const (
	FamilyIPv4 = "ipv4" // the classic lab: IPv4 underlay and pods
	// FamilyDual adds IPv6: a ULA on every underlay interface beside its
	// IPv4 address, "EnableIPv6" with IPv6Network in the network config,
	// and pods with an address of each family.
	FamilyDual = "dual"
	// FamilyIPv6 is an IPv6-only cluster on an IPv6-only underlay:
	// "EnableIPv4": false. It needs the Kubernetes store, as in flannel
	// (an etcd lease key always names an IPv4 subnet).
	FamilyIPv6 = "ipv6"
)

var (
	DefaultNetwork = netip.MustParsePrefix("172.7.0.0/16")
	// DefaultIPv6Network is the pods' IPv6 network of a dual or IPv6
	// lab, the one flannel's documentation uses; its /64 subnets are
	// flannel's default IPv6SubnetLen.
	DefaultIPv6Network = netip.MustParsePrefix("fd00:10:244::/56")

	underlayNet   = netip.MustParsePrefix("10.4.7.0/24")
	etcdAddr      = netip.MustParseAddr("10.4.7.12")
	firstHostIP   = netip.MustParseAddr("10.4.7.21")
	healthIP      = netip.MustParseAddr("127.0.0.1")
	prefixSyntax  = regexp.MustCompile(`^[a-z][a-z0-9]{0,11}$`)
	backendSyntax = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
)

// Spec is what a lab is made of; zero fields take the defaults.
type Spec struct {
	Prefix     string       // namespace and state-dir prefix, [a-z][a-z0-9]{0,11}
	Hosts      int          // number of hosts, 1..MaxHosts
	Pods       int          // pods per host, 0..MaxPods (zero means none)
	Backend    string       // Backend.Type in the network config
	Network    netip.Prefix // the cluster network
	EtcdPrefix string       // flannel's --etcd-prefix
	StateRoot  string       // parent of the per-prefix state directory

	// Segments is the number of L2 segments the hosts are spread over,
	// 1..MaxSegments and at most Hosts. With more than one, a router
	// namespace joins them and host-gw is refused (see Plan).
	Segments int
	// DirectRouting sets vxlan's "DirectRouting": true in the network
	// config; only valid with the vxlan backend.
	DirectRouting bool
	// WireGuardMode sets wireguard's "Mode" in the network config
	// (separate, auto, ipv4 or ipv6; "" leaves flannel's default,
	// separate); only valid with the wireguard backend.
	WireGuardMode string `json:",omitempty"`
	// AgentArgs are extra flags for every agent (e.g. --ip-masq), appended
	// after the lab's own so that they win.
	AgentArgs []string `json:",omitempty"`
	// IPMasq runs the agents with --ip-masq, leaves the CNI delegate's
	// ipMasq to flannel's default, and adds an "internet" host outside
	// the cluster on segment 1, so the checks show pod→pod keeping its
	// source and pod→internet masqueraded.
	IPMasq bool `json:",omitempty"`
	// Store is where agents keep leases: StoreEtcd (also when empty) or
	// StoreKube, a Kubernetes control plane on the underlay (see Kube).
	Store string `json:",omitempty"`
	// IPFamily is FamilyIPv4 (also when empty), FamilyDual or FamilyIPv6.
	IPFamily string `json:",omitempty"`
	// IPv6Network is the pods' IPv6 network with FamilyDual or
	// FamilyIPv6 (default DefaultIPv6Network).
	IPv6Network netip.Prefix `json:",omitempty"`
}

// HasIPv4 reports whether the lab's underlay and pods have IPv4.
func (s Spec) HasIPv4() bool { return s.IPFamily != FamilyIPv6 }

// HasIPv6 reports whether the lab's underlay and pods have IPv6.
func (s Spec) HasIPv6() bool { return s.IPFamily == FamilyDual || s.IPFamily == FamilyIPv6 }

// withDefaults fills zero fields except Pods: a lab without pods is a
// valid request (the command line defaults to DefaultPods).
func (s Spec) withDefaults() Spec {
	if s.Prefix == "" {
		s.Prefix = DefaultPrefix
	}
	if s.Hosts == 0 {
		s.Hosts = DefaultHosts
	}
	if s.Backend == "" {
		s.Backend = DefaultBackend
	}
	if s.Segments == 0 {
		s.Segments = 1
	}
	if !s.Network.IsValid() {
		s.Network = DefaultNetwork
	}
	if s.EtcdPrefix == "" {
		s.EtcdPrefix = DefaultEtcdPrefix
	}
	if s.StateRoot == "" {
		s.StateRoot = DefaultStateRoot
	}
	if s.IPFamily == "" {
		s.IPFamily = FamilyIPv4
	}
	if s.HasIPv6() && !s.IPv6Network.IsValid() {
		s.IPv6Network = DefaultIPv6Network
	}
	return s
}

// Topology is the complete, precomputed description of one lab: every
// name, address and path that the kernel and process code use. It is a
// pure function of the Spec (see Plan), so the naming rules are tested
// without root.
type Topology struct {
	Spec     Spec
	StateDir string // /run/weft-lab/<prefix>
	Underlay Underlay
	Segments []Segment // Segments[0] is the underlay's own sw0
	Router   Router    // zero with one segment
	Internet Internet  // zero unless Spec.IPMasq
	Kube     Kube      // zero unless Spec.Store is StoreKube
	Etcd     Etcd
	Hosts    []Host
}

// Underlay is the namespace that plays the switches between hosts, and
// the machine etcd runs on.
type Underlay struct {
	NS     string       // <prefix>-ul
	Bridge string       // the switch of segment 1
	Addr   netip.Prefix // the bridge's address, where etcd listens; invalid in an IPv6 lab
	// Gateway is the underlay namespace's default route, the router's
	// address on segment 1, so that etcd answers hosts on the other
	// segments; invalid with one segment.
	Gateway netip.Addr
	// Addr6 and Gateway6 are their IPv6 twins (see mirror6), valid in a
	// dual or IPv6 lab.
	Addr6    netip.Prefix
	Gateway6 netip.Addr
}

// Segment is one L2 segment: a switch (bridge) in the underlay namespace
// and a /24. Only segment 1's switch has an address (etcd's); the others
// are plain switches, so the underlay namespace reaches their hosts only
// through the router, like any machine on segment 1.
type Segment struct {
	Index   int          // 1-based
	Net     netip.Prefix // 10.4.7.0/24, 10.4.8.0/24, ...
	Bridge  string       // sw0, sw1, ... in the underlay namespace
	Gateway netip.Addr   // the router's leg on it (.1); invalid with one segment
	// Net6 and Gateway6 are the segment's IPv6 twins (fd00:10:4:7::/64,
	// ::1), valid in a dual or IPv6 lab.
	Net6     netip.Prefix
	Gateway6 netip.Addr
}

// Router is the namespace that routes between the segments: one leg on
// each segment's switch, ip_forward on.
type Router struct {
	NS   string // <prefix>-rt; empty when the lab has one segment
	Legs []Leg
}

// Leg is one router interface, a veth pair from the router namespace to a
// segment's switch.
type Leg struct {
	Segment int
	Iface   string       // in the router namespace: seg1, seg2, ...
	Wire    string       // the veth end on the switch in the underlay: rt-s1, ...
	Bridge  string       // the switch it is attached to
	Addr    netip.Prefix // 10.4.7.1/24, 10.4.8.1/24, ...
	Addr6   netip.Prefix // fd00:10:4:7::1/64, ... in a dual or IPv6 lab
}

// Etcd is the lab's datastore process.
type Etcd struct {
	ClientURL string // http://10.4.7.12:2379
	PeerURL   string // http://10.4.7.12:2380
	Dir       string // state dir of the process (log, pid)
	DataDir   string
	LogFile   string
	PIDFile   string
	ConfigKey string // <etcd prefix>/config
	Config    string // the network config JSON stored at ConfigKey
}

// Host is one virtual machine: a namespace with eth0 on the underlay and
// an agent.
type Host struct {
	Name       string       // h1
	NS         string       // <prefix>-h1
	Iface      string       // eth0, the host's uplink
	Wire       string       // name of the veth end in the underlay namespace
	Segment    int          // 1-based index into Topology.Segments
	Bridge     string       // the switch Wire is attached to: its segment's
	Addr       netip.Prefix // 10.4.7.21/24 on eth0; also --public-ip; invalid in an IPv6 lab
	Gateway    netip.Addr   // default route via the router; invalid with one segment
	Addr6      netip.Prefix // fd00:10:4:7::21/64 beside 10.4.7.21 (mirror6) in a dual or IPv6 lab; also --public-ipv6
	Gateway6   netip.Addr   // the router's IPv6 address with segments
	Health     netip.AddrPort
	Dir        string // <state>/h1
	SubnetFile string
	AgentLog   string
	AgentPID   string
	CNIDataDir string // flannel plugin's saved delegate configs
	IPAMDir    string // host-local's allocations
	CNICache   string // libcni's result cache
	ConfList   string // the conflist, written for people to read
	Pods       []Pod
}

// Pod is one pod namespace attached through CNI.
type Pod struct {
	Name        string // h1p2
	NS          string // <prefix>-h1p2
	Host        string // h1
	ContainerID string
	IfName      string
}

// Plan validates the spec and computes the lab's topology.
func Plan(s Spec) (Topology, error) {
	s = s.withDefaults()
	if !prefixSyntax.MatchString(s.Prefix) {
		return Topology{}, fmt.Errorf("lab prefix %q: want a lower-case letter then up to 11 letters or digits", s.Prefix)
	}
	if s.Hosts < 1 || s.Hosts > MaxHosts {
		return Topology{}, fmt.Errorf("lab hosts %d: want 1..%d", s.Hosts, MaxHosts)
	}
	if s.Pods < 0 || s.Pods > MaxPods {
		return Topology{}, fmt.Errorf("lab pods %d: want 0..%d per host", s.Pods, MaxPods)
	}
	if !backendSyntax.MatchString(s.Backend) {
		return Topology{}, fmt.Errorf("lab backend %q: want a backend type such as host-gw or vxlan", s.Backend)
	}
	if s.Segments < 1 || s.Segments > MaxSegments {
		return Topology{}, fmt.Errorf("lab segments %d: want 1..%d", s.Segments, MaxSegments)
	}
	if s.Segments > s.Hosts {
		return Topology{}, fmt.Errorf("lab segments %d: more than the %d hosts; every segment needs a host", s.Segments, s.Hosts)
	}
	if s.Segments > 1 && s.Backend == "host-gw" {
		return Topology{}, fmt.Errorf("lab backend host-gw with %d segments: host-gw routes each peer's subnet via the peer's own address, "+
			"which must be on the same L2 segment (the kernel refuses a gateway that is not directly connected), "+
			"so hosts behind the router would be unreachable; use the vxlan backend with DirectRouting: "+
			"direct routes within a segment, VXLAN across the router", s.Segments)
	}
	if err := validateStore(s); err != nil {
		return Topology{}, err
	}
	if err := validateFamily(s); err != nil {
		return Topology{}, err
	}
	if s.DirectRouting && s.Backend != "vxlan" {
		return Topology{}, fmt.Errorf("lab direct routing: a vxlan option, not one of backend %s", s.Backend)
	}
	if s.WireGuardMode != "" {
		if s.Backend != wireguard.BackendType {
			return Topology{}, fmt.Errorf("lab wireguard mode: a wireguard option, not one of backend %s", s.Backend)
		}
		if err := wireguard.Descriptor().CheckOptions(s.backendOptions()); err != nil {
			return Topology{}, fmt.Errorf("lab wireguard mode: %w", err)
		}
	}
	if !s.Network.Addr().Is4() || s.Network.Bits() > 22 || s.Network.Masked() != s.Network {
		return Topology{}, fmt.Errorf("lab network %s: want a masked IPv4 network of /22 or larger", s.Network)
	}
	segs := planSegments(s.Segments)
	for _, sg := range segs {
		if s.Network.Overlaps(sg.Net) {
			return Topology{}, fmt.Errorf("lab network %s overlaps the underlay %s", s.Network, sg.Net)
		}
	}
	if s.Network.Overlaps(netip.PrefixFrom(healthIP, 8)) {
		return Topology{}, fmt.Errorf("lab network %s overlaps loopback", s.Network)
	}
	if len(s.EtcdPrefix) < 2 || s.EtcdPrefix[0] != '/' || s.EtcdPrefix[len(s.EtcdPrefix)-1] == '/' {
		return Topology{}, fmt.Errorf("lab etcd prefix %q: want an absolute key without trailing slash", s.EtcdPrefix)
	}
	if !filepath.IsAbs(s.StateRoot) {
		return Topology{}, fmt.Errorf("lab state root %q: want an absolute path", s.StateRoot)
	}

	state := filepath.Join(s.StateRoot, s.Prefix)
	cfg, err := networkConfig(s)
	if err != nil {
		return Topology{}, err
	}
	t := Topology{
		Spec:     s,
		StateDir: state,
		Underlay: Underlay{
			NS:       s.Prefix + "-ul",
			Bridge:   segs[0].Bridge,
			Addr:     netip.PrefixFrom(etcdAddr, underlayNet.Bits()),
			Gateway:  segs[0].Gateway,
			Addr6:    netip.PrefixFrom(mirror6(etcdAddr), 64),
			Gateway6: segs[0].Gateway6,
		},
		Segments: segs,
		Etcd: Etcd{
			ClientURL: "http://" + netip.AddrPortFrom(etcdAddr, 2379).String(),
			PeerURL:   "http://" + netip.AddrPortFrom(etcdAddr, 2380).String(),
			Dir:       filepath.Join(state, "etcd"),
			DataDir:   filepath.Join(state, "etcd", "data"),
			LogFile:   filepath.Join(state, "etcd", "etcd.log"),
			PIDFile:   filepath.Join(state, "etcd", "etcd.pid"),
			ConfigKey: s.EtcdPrefix + "/config",
			Config:    cfg,
		},
	}
	if len(segs) > 1 {
		t.Router.NS = s.Prefix + "-rt"
		for _, sg := range segs {
			k := strconv.Itoa(sg.Index)
			t.Router.Legs = append(t.Router.Legs, Leg{
				Segment: sg.Index,
				Iface:   "seg" + k,
				Wire:    "rt-s" + k,
				Bridge:  sg.Bridge,
				Addr:    netip.PrefixFrom(sg.Gateway, sg.Net.Bits()),
				Addr6:   netip.PrefixFrom(sg.Gateway6, sg.Net6.Bits()),
			})
		}
	}
	for i := 1; i <= s.Hosts; i++ {
		name := "h" + strconv.Itoa(i)
		dir := filepath.Join(state, name)
		sg := segs[segmentOf(i, s.Hosts, s.Segments)-1]
		h := Host{
			Name:       name,
			NS:         s.Prefix + "-" + name,
			Iface:      "eth0",
			Wire:       "ve-" + name, // at most 7 bytes, well under IFNAMSIZ
			Segment:    sg.Index,
			Bridge:     sg.Bridge,
			Addr:       netip.PrefixFrom(hostAddr(sg, i), sg.Net.Bits()),
			Gateway:    sg.Gateway,
			Addr6:      netip.PrefixFrom(mirror6(hostAddr(sg, i)), sg.Net6.Bits()),
			Gateway6:   sg.Gateway6,
			Health:     netip.AddrPortFrom(healthIP, HealthPort),
			Dir:        dir,
			SubnetFile: filepath.Join(dir, "subnet.env"),
			AgentLog:   filepath.Join(dir, "agent.log"),
			AgentPID:   filepath.Join(dir, "agent.pid"),
			CNIDataDir: filepath.Join(dir, "cni"),
			IPAMDir:    filepath.Join(dir, "ipam"),
			CNICache:   filepath.Join(dir, "cni-cache"),
			ConfList:   filepath.Join(dir, "10-flannel.conflist"),
		}
		for j := 1; j <= s.Pods; j++ {
			pname := name + "p" + strconv.Itoa(j)
			h.Pods = append(h.Pods, Pod{
				Name:        pname,
				NS:          s.Prefix + "-" + pname,
				Host:        name,
				ContainerID: s.Prefix + "-" + pname,
				IfName:      "eth0",
			})
		}
		t.Hosts = append(t.Hosts, h)
	}
	if s.IPMasq {
		inet := netip.AddrFrom4([4]byte{10, 4, 7, 99})
		t.Internet = Internet{NS: s.Prefix + "-inet", Wire: "ve-inet", Addr: netip.PrefixFrom(inet, 24), Addr6: netip.PrefixFrom(mirror6(inet), 64)}
	}
	t.keepFamilies()
	t.Kube = planKube(t)
	return t, nil
}

// validateFamily checks the IP family and the IPv6 network it implies.
func validateFamily(s Spec) error {
	switch s.IPFamily {
	case FamilyIPv4, FamilyDual:
	case FamilyIPv6:
		if s.Store != StoreKube {
			return fmt.Errorf("lab ip family %s (IPv6-only) needs --store kube: the network config's \"EnableIPv4\": false is for Kubernetes mode only, as in flannel (an etcd lease key always names an IPv4 subnet)", s.IPFamily)
		}
	default:
		return fmt.Errorf("lab ip family %q: want %s, %s or %s", s.IPFamily, FamilyIPv4, FamilyDual, FamilyIPv6)
	}
	if !s.HasIPv6() {
		return nil
	}
	n := s.IPv6Network
	if !n.Addr().Is6() || n.Addr().Is4In6() || n.Masked() != n || n.Bits() > 56 {
		return fmt.Errorf("lab IPv6 network %s: want a masked IPv6 network of /56 or larger (it holds one /64 per host)", n)
	}
	if n.Overlaps(netip.PrefixFrom(mirror6(underlayNet.Addr()), 48).Masked()) {
		return fmt.Errorf("lab IPv6 network %s overlaps the underlay fd00:10:4::/48", n)
	}
	return nil
}

// keepFamilies clears the addresses of a family the lab does not have:
// the IPv6 ones of an IPv4 lab, the IPv4 ones of an IPv6 lab.
func (t *Topology) keepFamilies() {
	v4, v6 := t.Spec.HasIPv4(), t.Spec.HasIPv6()
	keep := func(p *netip.Prefix, a *netip.Addr, ok bool) {
		if !ok {
			*p, *a = netip.Prefix{}, netip.Addr{}
		}
	}
	var none netip.Addr
	keep(&t.Underlay.Addr, &t.Underlay.Gateway, v4)
	keep(&t.Underlay.Addr6, &t.Underlay.Gateway6, v6)
	for i := range t.Segments {
		sg := &t.Segments[i]
		keep(&sg.Net, &sg.Gateway, v4)
		keep(&sg.Net6, &sg.Gateway6, v6)
	}
	for i := range t.Router.Legs {
		keep(&t.Router.Legs[i].Addr, &none, v4)
		keep(&t.Router.Legs[i].Addr6, &none, v6)
	}
	for i := range t.Hosts {
		h := &t.Hosts[i]
		keep(&h.Addr, &h.Gateway, v4)
		keep(&h.Addr6, &h.Gateway6, v6)
	}
	if t.Internet.NS != "" {
		keep(&t.Internet.Addr, &none, v4)
		keep(&t.Internet.Addr6, &none, v6)
	}
}

// mirror6 is the IPv6 twin of an underlay IPv4 address: each octet's
// decimal digits read as hex in fd00:<o1>:<o2>:<o3>::<o4>, so that
// 10.4.7.21 becomes fd00:10:4:7::21 and an address names its host in
// either family.
func mirror6(a netip.Addr) netip.Addr {
	o := a.As4()
	var b [16]byte
	b[0], b[1] = 0xfd, 0x00
	for i, v := range o {
		g := decHex(v)
		pos := 2 + 2*i
		if i == 3 {
			pos = 14
		}
		b[pos], b[pos+1] = byte(g>>8), byte(g)
	}
	return netip.AddrFrom16(b)
}

// decHex reads v's decimal digits as a hex number: 21 → 0x21.
func decHex(v byte) uint16 {
	var g uint16
	for _, d := range strconv.Itoa(int(v)) {
		g = g<<4 | uint16(d-'0')
	}
	return g
}

// planSegments lays out n segments: segment k is 10.4.(6+k).0/24 on
// switch sw(k-1), so segment 1 is the classic 10.4.7.0/24 on sw0. The
// router takes .1 on each, which a one-segment lab does not have.
func planSegments(n int) []Segment {
	segs := make([]Segment, n)
	base := underlayNet.Addr().As4()
	for i := range segs {
		a := base
		a[2] += byte(i)
		sn := netip.PrefixFrom(netip.AddrFrom4(a), underlayNet.Bits())
		segs[i] = Segment{Index: i + 1, Net: sn, Bridge: "sw" + strconv.Itoa(i), Net6: netip.PrefixFrom(mirror6(sn.Addr()), 64)}
		if n > 1 {
			segs[i].Gateway = sn.Addr().Next()
			segs[i].Gateway6 = mirror6(segs[i].Gateway)
		}
	}
	return segs
}

// segmentOf places host i (1-based) of hosts on one of n segments in
// contiguous blocks of near-equal size (4 hosts on 2: h1 h2 | h3 h4; 3 on
// 2: h1 h2 | h3), so that neighbours by number share a switch. With n <=
// hosts no segment is left empty.
func segmentOf(i, hosts, n int) int {
	return (i-1)*n/hosts + 1
}

// hostAddr is host i's address on its segment: the last byte is 20+i on
// every segment (h3 on segment 2 is 10.4.8.23), so an address names its
// host wherever it sits.
func hostAddr(sg Segment, i int) netip.Addr {
	a := sg.Net.Addr().As4()
	a[3] = firstHostIP.As4()[3] + byte(i-1)
	return netip.AddrFrom4(a)
}

// networkConfig renders the value stored at <etcd prefix>/config, in the
// spelling flannel's documentation and users use: with IPv6,
// "EnableIPv6" and "IPv6Network" after "Network", and an IPv6-only lab
// has "EnableIPv4": false and no Network.
func networkConfig(s Spec) (string, error) {
	b, err := json.Marshal(s.Backend)
	if err != nil {
		return "", fmt.Errorf("render network config: %w", err)
	}
	var fields string
	if s.HasIPv4() {
		fields = fmt.Sprintf(`"Network": %q, `, s.Network.String())
	} else {
		fields = `"EnableIPv4": false, `
	}
	if s.HasIPv6() {
		fields += fmt.Sprintf(`"EnableIPv6": true, "IPv6Network": %q, `, s.IPv6Network.String())
	}
	if s.DirectRouting {
		return fmt.Sprintf(`{%s"Backend": {"Type": %s, "DirectRouting": true}}`, fields, b), nil
	}
	if s.WireGuardMode != "" {
		return fmt.Sprintf(`{%s"Backend": {"Type": %s, "Mode": %q}}`, fields, b, s.WireGuardMode), nil
	}
	return fmt.Sprintf(`{%s"Backend": {"Type": %s}}`, fields, b), nil
}

// backendOptions is the options the lab writes into the network config's
// Backend object, beside its Type.
func (s Spec) backendOptions() json.RawMessage {
	if s.WireGuardMode != "" {
		b, _ := json.Marshal(map[string]string{"Mode": s.WireGuardMode})
		return b
	}
	return nil
}

// Pods returns every pod of the lab, host by host.
func (t Topology) Pods() []Pod {
	var ps []Pod
	for _, h := range t.Hosts {
		ps = append(ps, h.Pods...)
	}
	return ps
}

// Host returns the host with the given short name (h1).
func (t Topology) Host(name string) (Host, bool) {
	for _, h := range t.Hosts {
		if h.Name == name {
			return h, true
		}
	}
	return Host{}, false
}

// Namespaces returns every namespace of the lab in teardown order: pods,
// then hosts, then the router (if any), then the underlay.
func (t Topology) Namespaces() []string {
	var ns []string
	for _, p := range t.Pods() {
		ns = append(ns, p.NS)
	}
	for _, h := range t.Hosts {
		ns = append(ns, h.NS)
	}
	if t.Router.NS != "" {
		ns = append(ns, t.Router.NS)
	}
	if t.Internet.NS != "" {
		ns = append(ns, t.Internet.NS)
	}
	return append(ns, t.Underlay.NS)
}

// ResolveNS maps what a user types after `weft lab exec` (ul, rt, h2, h2p1, or
// a full namespace name of this lab) to a namespace name. It does not
// check that the namespace exists.
func ResolveNS(prefix, name string) (string, error) {
	full := name
	if !IsLabNS(prefix, full) {
		full = prefix + "-" + name
	}
	if !IsLabNS(prefix, full) {
		return "", fmt.Errorf("%q is not a lab namespace: want ul, rt, hN or hNpM", name)
	}
	return full, nil
}

// IsLabNS reports whether a namespace name is one that a lab with this
// prefix creates. Teardown deletes only such names, so it never touches a
// namespace of another lab or of anyone else, even one sharing the prefix
// ("weft-h1x", "weft-ul2", "weft-a-h1" do not match "weft").
func IsLabNS(prefix, name string) bool {
	if len(name) <= len(prefix)+1 || name[:len(prefix)] != prefix || name[len(prefix)] != '-' {
		return false
	}
	return labSuffix.MatchString(name[len(prefix)+1:])
}

var labSuffix = regexp.MustCompile(`^(ul|rt|inet|h[1-9][0-9]*(p[1-9][0-9]*)?)$`)

// EtcdArgs is the command line (after the weft binary) of the etcd process.
func (t Topology) EtcdArgs() []string {
	return []string{"lab", "_etcd",
		"--data-dir=" + t.Etcd.DataDir,
		"--listen-client=" + t.Etcd.ClientURL,
		"--listen-peer=" + t.Etcd.PeerURL,
	}
}

// AgentArgs is the command line (after the weft binary) of a host's agent:
// "agent" and flanneld's flags, pointing at the lab's etcd (or, in a
// Kubernetes lab, its apiserver) and state directory. AgentCommand turns it
// into what the lab runs.
func (t Topology) AgentArgs(h Host) []string {
	if t.Spec.Store == StoreKube {
		return t.kubeAgentArgs(h)
	}
	args := []string{"agent",
		"--etcd-endpoints=" + t.Etcd.ClientURL,
		"--etcd-prefix=" + t.Spec.EtcdPrefix,
		"--iface=" + h.Iface,
	}
	if h.Addr.IsValid() {
		args = append(args, "--public-ip="+h.Addr.Addr().String())
	}
	if h.Addr6.IsValid() {
		args = append(args, "--public-ipv6="+h.Addr6.Addr().String())
	}
	return append(append(args,
		"--subnet-file="+h.SubnetFile,
		"--state-dir="+h.Dir,
		"--healthz-ip="+h.Health.Addr().String(),
		"--healthz-port="+strconv.Itoa(int(h.Health.Port())),
		"--log-format=text",
	), t.agentExtra()...)
}

func (t Topology) agentExtra() []string {
	var extra []string
	if t.Spec.IPMasq {
		extra = append(extra, "--ip-masq")
	}
	return append(extra, t.Spec.AgentArgs...)
}

// Internet is a host outside the cluster on segment 1 that answers the
// pods' probes: what "the internet" is to a pod in an --ip-masq lab.
type Internet struct {
	NS    string       // <prefix>-inet
	Wire  string       // its veth end on the switch
	Addr  netip.Prefix // 10.4.7.99/24; invalid in an IPv6 lab
	Addr6 netip.Prefix // fd00:10:4:7::99/64 in a dual or IPv6 lab
}

// ConfList renders the host's CNI network configuration: kube-flannel's
// conflist with paths moved into the lab's state directory so that nothing
// lands in the machine's /run/flannel or /var/lib/cni.
//
// The flannel plugin refuses "ipam" inside the delegate, so host-local's
// dataDir goes in the top-level ipam object, which the plugin merges into
// the delegate's. ipMasq is set false because the lab's traffic stays
// inside the cluster network: flannel's default (ipMasq = !FLANNEL_IPMASQ)
// would have the bridge plugin SNAT pod-to-remote-pod traffic to the host
// address, which is exactly what the checks must rule out, and it needs
// iptables, which a lab machine may not have.
func (t Topology) ConfList(h Host) ([]byte, error) {
	type delegate struct {
		HairpinMode      bool `json:"hairpinMode"`
		IsDefaultGateway bool `json:"isDefaultGateway"`
		IPMasq           bool `json:"ipMasq"`
	}
	type ipam struct {
		Type    string `json:"type"`
		DataDir string `json:"dataDir"`
	}
	type plugin struct {
		Type       string   `json:"type"`
		SubnetFile string   `json:"subnetFile"`
		DataDir    string   `json:"dataDir"`
		IPAM       ipam     `json:"ipam"`
		Delegate   delegate `json:"delegate"`
	}
	type conflist struct {
		Name       string   `json:"name"`
		CNIVersion string   `json:"cniVersion"`
		Plugins    []plugin `json:"plugins"`
	}
	b, err := json.MarshalIndent(conflist{
		Name:       "cbr0",
		CNIVersion: "1.0.0",
		Plugins: []plugin{{
			Type:       "flannel",
			SubnetFile: h.SubnetFile,
			DataDir:    h.CNIDataDir,
			IPAM:       ipam{Type: "host-local", DataDir: h.IPAMDir},
			Delegate:   delegate{HairpinMode: true, IsDefaultGateway: true, IPMasq: false},
		}},
	}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("render conflist for %s: %w", h.Name, err)
	}
	return append(b, '\n'), nil
}

// AgentBinaryName is the agent-only binary (cmd/weft-agent). When it sits
// beside the weft binary, as `make build` leaves them, the lab's agents run
// it, as real hosts do; otherwise they run `weft agent`.
const AgentBinaryName = "weft-agent"

// AgentCommand returns the program and arguments that run an agent whose
// `weft` command line is args ("agent", flags...), given the weft binary.
func AgentCommand(weftBinary string, args []string) (string, []string) {
	p := filepath.Join(filepath.Dir(weftBinary), AgentBinaryName)
	if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 && len(args) > 0 && args[0] == "agent" {
		return p, args[1:]
	}
	return weftBinary, args
}

// wireGuardDevices are the devices a wireguard lab's agents run, by the
// Mode the lab writes (flannel's default, separate, when it writes none).
func wireGuardDevices(s Spec) []wireguard.DevSpec {
	cfg := &netconf.Config{EnableIPv4: s.HasIPv4(), Network: s.Network, EnableIPv6: s.HasIPv6(), IPv6Network: s.IPv6Network, Backend: s.backendOptions()}
	devs, _ := wireguard.DevicesOf(cfg) // Plan checked the options
	return devs
}
