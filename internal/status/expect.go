package status

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/weftnet/weft/internal/kernel"
	"github.com/weftnet/weft/internal/lease"
)

// Entry kinds.
const (
	KindRoute  = "route"
	KindNeigh  = "neigh"
	KindFDB    = "fdb"
	KindDevice = "device"
	KindAddr   = "addr"
)

// Want is one kernel entry this host should hold. Which fields count
// depends on Kind:
//
//	route   Dst, Gw (zero: directly connected), Dev ("" matches any), OnLink
//	neigh   IP, MAC, Dev; always PERMANENT
//	fdb     MAC, IP (the remote, "dst"), Dev; always permanent
//	device  Dev, MTU (0: any), MAC (zero: any), and up
//	addr    Dst (the address with its prefix length) on Dev
type Want struct {
	Kind   string
	Dst    netip.Prefix
	Gw     netip.Addr
	Dev    string
	OnLink bool
	IP     netip.Addr
	MAC    kernel.MAC
	MTU    int
}

// String renders w as iproute2 shows such an entry (ip route, ip neigh,
// bridge fdb, ip link, ip addr), so an operator can grep for it.
func (w Want) String() string {
	switch w.Kind {
	case KindRoute:
		return routeText(w.Dst, w.Gw, w.Dev, w.OnLink)
	case KindNeigh:
		return fmt.Sprintf("%s dev %s lladdr %s PERMANENT", w.IP, w.Dev, w.MAC)
	case KindFDB:
		return fmt.Sprintf("%s dev %s dst %s self permanent", w.MAC, w.Dev, w.IP)
	case KindDevice:
		return deviceText(w.Dev, w.MTU, w.MAC, true)
	case KindAddr:
		return fmt.Sprintf("%s dev %s", w.Dst, w.Dev)
	}
	return w.Kind + "?"
}

func routeText(dst netip.Prefix, gw netip.Addr, dev string, onlink bool) string {
	var b strings.Builder
	b.WriteString(dst.String())
	if gw.IsValid() {
		b.WriteString(" via " + gw.String())
	}
	if dev != "" {
		b.WriteString(" dev " + dev)
	}
	if onlink {
		b.WriteString(" onlink")
	}
	return b.String()
}

func deviceText(dev string, mtu int, mac kernel.MAC, up bool) string {
	var b strings.Builder
	b.WriteString(dev)
	if mtu != 0 {
		b.WriteString(" mtu " + strconv.Itoa(mtu))
	}
	if !mac.IsZero() {
		b.WriteString(" lladdr " + mac.String())
	}
	if up {
		b.WriteString(" up")
	} else {
		b.WriteString(" down")
	}
	return b.String()
}

// Env is what the expectations depend on besides the lease.
type Env struct {
	Network netip.Prefix
	// ExtDev and ExtMTU describe the external interface; "" and 0 when it
	// is unknown, and then routes match on any device.
	ExtDev string
	ExtMTU int
	VXLAN  VXLAN // the network's vxlan options, when its backend is vxlan
	UDP    UDP   // the network's udp options, when its backend is udp
	// Direct maps a peer PublicIP to the device it is directly reachable
	// on (ip route get gives no gateway), for vxlan's DirectRouting.
	Direct map[netip.Addr]string
}

// VXLAN are the vxlan options of the network config's Backend object that
// decide kernel entries, with flannel's defaults.
type VXLAN struct {
	VNI           int
	Port          int // 0: the kernel's default, 8472
	MTU           int // the underlay MTU the overhead is taken from; 0: the external interface's
	DirectRouting bool
}

// Flannel's vxlan numbers.
const (
	vxlanOverhead    = 50   // outer IPv4 + UDP + VXLAN + inner Ethernet
	vxlanDefaultPort = 8472 // the kernel's, used when the config names none
	udpOverhead      = 28   // IPv4 + UDP
	udpDefaultPort   = 8285
	udpDevice        = "flannel0"
)

// ParseVXLAN decodes the vxlan options as flannel does (encoding/json:
// case-insensitive keys, unknown keys ignored). raw may be nil.
func ParseVXLAN(raw json.RawMessage) (VXLAN, error) {
	v := VXLAN{VNI: 1}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &v); err != nil {
			return VXLAN{}, fmt.Errorf("vxlan options %s: %w", raw, err)
		}
	}
	if v.VNI < 0 || v.VNI > 1<<24-1 {
		return VXLAN{}, fmt.Errorf("vxlan option VNI %d: must be between 0 and 16777215", v.VNI)
	}
	if v.Port < 0 || v.Port > 65535 {
		return VXLAN{}, fmt.Errorf("vxlan option Port %d: not a port", v.Port)
	}
	return v, nil
}

// Device is the VXLAN device's name, flannel.<VNI>.
func (v VXLAN) Device() string { return "flannel." + strconv.Itoa(v.VNI) }

// UDPPort is the port VXLAN packets go to.
func (v VXLAN) UDPPort() int {
	if v.Port == 0 {
		return vxlanDefaultPort
	}
	return v.Port
}

// UDP are the udp backend's options.
type UDP struct {
	Port int // default 8285
}

// ParseUDP decodes the udp options; raw may be nil.
func ParseUDP(raw json.RawMessage) (UDP, error) {
	u := UDP{Port: udpDefaultPort}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &u); err != nil {
			return UDP{}, fmt.Errorf("udp options %s: %w", raw, err)
		}
	}
	if u.Port <= 0 || u.Port > 65535 {
		return UDP{}, fmt.Errorf("udp option Port %d: not a port", u.Port)
	}
	return u, nil
}

// leaseError says why a lease gets no kernel entries; code is one of the
// Code constants.
type leaseError struct {
	code string
	msg  string
}

func (e *leaseError) Error() string { return e.msg }

func badLease(format string, args ...any) error {
	return &leaseError{code: CodeBadLease, msg: fmt.Sprintf(format, args...)}
}

// Expectation is what one backend asks of this host's kernel.
type Expectation struct {
	// LeaseTypes are the BackendType values its peers publish; flannel's
	// udp publishes none ("").
	LeaseTypes []string
	// Host returns the entries this host needs for itself, given its own
	// lease.
	Host func(env Env, own lease.Lease) []Want
	// Peer returns the entries this host needs for one peer's lease, or an
	// error (a *leaseError) saying why the lease cannot be programmed.
	Peer func(env Env, peer lease.Lease) ([]Want, error)
	// PodMTU is the MTU the backend gives pods (FLANNEL_MTU); 0 when
	// unknown.
	PodMTU func(env Env) int
	// Port is the UDP port peers receive on, probed by --check; 0 for
	// none.
	Port func(env Env) int
}

// Expectations is the table of backends status knows, by the network
// config's lower-case Backend.Type. Adding a backend is adding a row.
func Expectations() map[string]Expectation {
	return map[string]Expectation{
		"host-gw": {
			LeaseTypes: []string{"host-gw"},
			Host:       func(Env, lease.Lease) []Want { return nil },
			Peer:       HostGWPeer,
			PodMTU:     func(env Env) int { return env.ExtMTU },
			Port:       func(Env) int { return 0 },
		},
		"vxlan": {
			LeaseTypes: []string{"vxlan"},
			Host:       VXLANHost,
			Peer:       VXLANPeer,
			PodMTU:     vxlanPodMTU,
			Port:       func(env Env) int { return env.VXLAN.UDPPort() },
		},
		"udp": {
			LeaseTypes: []string{"", "udp"},
			Host:       UDPHost,
			Peer:       UDPPeer,
			PodMTU: func(env Env) int {
				if env.ExtMTU == 0 {
					return 0
				}
				return env.ExtMTU - udpOverhead
			},
			Port: func(env Env) int { return env.UDP.Port },
		},
	}
}

// checkPeer holds what every backend needs of a peer lease: an IPv4 subnet
// inside the network and an IPv4 PublicIP.
func checkPeer(env Env, l lease.Lease) error {
	s := l.Subnet
	switch {
	case !s.IsValid() || !s.Addr().Is4():
		return badLease("the lease has no IPv4 subnet")
	case env.Network.IsValid() && (s.Bits() <= env.Network.Bits() || !env.Network.Contains(s.Addr())):
		return badLease("subnet %s is not inside the network %s: the lease was made for another network config; delete it (etcdctl del) if that host is gone", s, env.Network)
	case !l.Attrs.PublicIP.IsValid() || !l.Attrs.PublicIP.Is4() || l.Attrs.PublicIP.IsUnspecified():
		return badLease("the lease has no IPv4 PublicIP, so no host can route to it")
	}
	return nil
}

// HostGWPeer: one route, straight to the peer's PublicIP on the external
// interface:
//
//	10.244.3.0/24 via 192.168.1.3 dev eth0
func HostGWPeer(env Env, l lease.Lease) ([]Want, error) {
	if err := checkPeer(env, l); err != nil {
		return nil, err
	}
	return []Want{{Kind: KindRoute, Dst: l.Subnet.Masked(), Gw: l.Attrs.PublicIP, Dev: env.ExtDev}}, nil
}

// vxlanData is a vxlan lease's BackendData.
type vxlanData struct {
	VNI     int
	VtepMAC string
}

// VtepMAC decodes the VtepMAC and VNI a vxlan lease publishes.
func VtepMAC(l lease.Lease) (kernel.MAC, int, error) {
	raw := l.Attrs.BackendData
	if len(raw) == 0 || string(raw) == "null" {
		return kernel.MAC{}, 0, errors.New("the lease has no BackendData, so no VtepMAC")
	}
	var d vxlanData
	if err := json.Unmarshal(raw, &d); err != nil {
		return kernel.MAC{}, 0, fmt.Errorf("BackendData %s: %w", raw, err)
	}
	mac, err := kernel.ParseMAC(d.VtepMAC)
	if err != nil {
		return kernel.MAC{}, d.VNI, fmt.Errorf("BackendData %s: VtepMAC %q: %w", raw, d.VtepMAC, err)
	}
	if !mac.Unicast() {
		return kernel.MAC{}, d.VNI, fmt.Errorf("BackendData %s: VtepMAC %s is not a unicast address", raw, mac)
	}
	return mac, d.VNI, nil
}

// VXLANPeer: a neighbour entry for the peer subnet's network address with
// the peer's VtepMAC, an FDB entry sending that MAC to the PublicIP, and an
// onlink route through the device,
//
//	10.244.3.0 dev flannel.1 lladdr aa:bb:cc:dd:ee:ff PERMANENT
//	aa:bb:cc:dd:ee:ff dev flannel.1 dst 192.168.1.3 self permanent
//	10.244.3.0/24 via 10.244.3.0 dev flannel.1 onlink
//
// or, with DirectRouting and a peer on a directly connected network, only
// a route to its PublicIP.
func VXLANPeer(env Env, l lease.Lease) ([]Want, error) {
	if err := checkPeer(env, l); err != nil {
		return nil, err
	}
	mac, vni, err := VtepMAC(l)
	if err != nil {
		return nil, badLease("%v", err)
	}
	if vni != env.VXLAN.VNI {
		return nil, &leaseError{code: CodeVNIMismatch, msg: fmt.Sprintf(
			"the lease publishes VNI %d but the network uses VNI %d: that host runs with another Backend config; make the configs agree and restart its agent", vni, env.VXLAN.VNI)}
	}
	subnet := l.Subnet.Masked()
	if env.VXLAN.DirectRouting {
		if dev, ok := env.Direct[l.Attrs.PublicIP]; ok {
			return []Want{{Kind: KindRoute, Dst: subnet, Gw: l.Attrs.PublicIP, Dev: dev}}, nil
		}
	}
	dev := env.VXLAN.Device()
	gw := subnet.Addr()
	return []Want{
		{Kind: KindNeigh, IP: gw, MAC: mac, Dev: dev},
		{Kind: KindFDB, MAC: mac, IP: l.Attrs.PublicIP, Dev: dev},
		{Kind: KindRoute, Dst: subnet, Gw: gw, Dev: dev, OnLink: true},
	}, nil
}

// VXLANHost: the device, up, with the MAC the own lease publishes and the
// MTU the backend sets, holding the own subnet's network address:
//
//	flannel.1 mtu 1450 lladdr aa:bb:cc:dd:ee:ff up
//	10.244.1.0/32 dev flannel.1
func VXLANHost(env Env, own lease.Lease) []Want {
	dev := env.VXLAN.Device()
	mac, _, _ := VtepMAC(own) // a zero MAC (undecodable own lease) is not compared
	ws := []Want{{Kind: KindDevice, Dev: dev, MTU: vxlanPodMTU(env), MAC: mac}}
	if own.Subnet.IsValid() {
		ws = append(ws, Want{Kind: KindAddr, Dev: dev, Dst: netip.PrefixFrom(own.Subnet.Addr(), 32)})
	}
	return ws
}

func vxlanPodMTU(env Env) int {
	mtu := env.VXLAN.MTU
	if mtu == 0 {
		mtu = env.ExtMTU
	}
	if mtu == 0 {
		return 0
	}
	return mtu - vxlanOverhead
}

// UDPPeer: nothing in the kernel; the udp proxy process reads the leases
// itself. The lease must still be usable.
func UDPPeer(env Env, l lease.Lease) ([]Want, error) {
	return nil, checkPeer(env, l)
}

// UDPHost: the TUN device and one route for the whole network through it:
//
//	flannel0 mtu 1472 up
//	10.244.0.0/16 dev flannel0
func UDPHost(env Env, own lease.Lease) []Want {
	mtu := 0
	if env.ExtMTU != 0 {
		mtu = env.ExtMTU - udpOverhead
	}
	return []Want{
		{Kind: KindDevice, Dev: udpDevice, MTU: mtu},
		{Kind: KindRoute, Dst: env.Network, Dev: udpDevice},
	}
}
