package backend

import (
	"encoding/json"
	"net/netip"

	"github.com/weftnet/weft/internal/kernel"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/netconf"
)

// Descriptor is everything the rest of weft knows about one backend: the
// agent builds it with New, configcmd and status check its options with
// CheckOptions, status asks Expect what this host's kernel should hold,
// and cleanup removes its Devices and StateFiles. Each backend package
// exports one, and the table in package backends lists them all.
type Descriptor struct {
	// Name is the network config's Backend.Type, lower case.
	Name string
	// LeaseTypes are the BackendType values the leases of its peers carry
	// (flannel's udp leases carry none, "").
	LeaseTypes []string
	// New builds the backend.
	New Factory
	// CheckOptions validates the network config's Backend object (nil
	// means no options) as far as it can without a host: every error names
	// the option at fault.
	CheckOptions func(raw json.RawMessage) error
	// Expect says what the backend, configured by cfg on the host whose
	// external interface is ext, asks of that host's kernel. ext.Name is
	// "" and ext.MTU 0 when they are unknown; the Wants then match any
	// device and any MTU. It fails when cfg's Backend options are invalid.
	// Pure.
	Expect func(cfg *netconf.Config, ext ExternalInterface) (Expectation, error)
	// LeaseMAC returns the MAC a lease of this backend publishes (vxlan's
	// VtepMAC); nil when its leases carry none.
	LeaseMAC func(l lease.Lease) (kernel.MAC, bool)
	// LeaseCheck returns, for a network configured by cfg, what the
	// admission step (package admit) asks of every lease of LeaseTypes
	// beyond the rules common to all backends. Nil asks nothing. It fails
	// when cfg's Backend options are invalid. Pure.
	LeaseCheck func(cfg *netconf.Config) (LeaseCheck, error)
	// IPv6 says whether the backend programs the IPv6 side of a
	// dual-stack network (routes to peers' IPv6Subnets); the agent leases
	// and publishes IPv6 whatever it says. NoIPv6 is why it does not, in
	// one sentence for the agent's ERROR line, when IPv6 is false.
	IPv6   bool
	NoIPv6 string
	// Devices are the devices it creates, for cleanup.
	Devices []DeviceFact
	// StateFiles are glob patterns, relative to the state directory, of
	// the files it leaves there, for cleanup.
	StateFiles []string
}

// LeaseCheck judges one lease's BackendData for a configured backend. It
// returns the lease's identity, a value no two peers may share (vxlan:
// "VtepMAC aa:bb:cc:dd:ee:ff"), "" for none, or an error saying why the
// lease cannot be a peer of this network (vxlan: no usable VtepMAC, or
// another VNI than the config's, with both VNIs).
type LeaseCheck func(l lease.Lease) (identity string, err error)

// DeviceFact names devices a backend creates: those of link type Kind
// whose name is Name, or starts with Name when Prefix is set.
type DeviceFact struct {
	Kind   string // as netlink reports it: "vxlan", "tuntap"
	Name   string
	Prefix bool
}

// Matches reports whether a device of link type kind named name is one.
func (d DeviceFact) Matches(kind, name string) bool {
	if kind != d.Kind {
		return false
	}
	if d.Prefix {
		return len(name) > len(d.Name) && name[:len(d.Name)] == d.Name
	}
	return name == d.Name
}

// Expectation is one configured backend's model of a host's kernel, for
// `weft status`. The texts complete status's explanations.
type Expectation struct {
	// PodMTU is the MTU pods get (FLANNEL_MTU); 0 when unknown.
	PodMTU int
	// MTUBasis says how PodMTU follows from the configuration, e.g.
	// "eth0's MTU 1500 minus 50 for VXLAN".
	MTUBasis string
	// Port is the UDP port peers receive on; 0 for none.
	Port int
	// PortUser names what receives on Port ("VXLAN device").
	PortUser string
	// GatewayHint is added to the advice for a peer whose host answers
	// but whose pod gateway does not; it starts with "; ".
	GatewayHint string
	// Overlays are the devices whose neighbour and FDB entries the Wants
	// refer to.
	Overlays []string
	// DirectRouting says whether Wants depends on which peers are
	// directly reachable (its direct argument); status only asks the
	// kernel when it does.
	DirectRouting bool
	// Wants returns the entries for this host, whose lease is own (zero
	// when unknown) and whose PublicIP is ownPublicIP, given every lease.
	// direct maps the PublicIPs of peers reachable without a gateway to
	// the device they are reached on.
	Wants func(own lease.Lease, ownPublicIP netip.Addr, leases []lease.Lease, direct map[netip.Addr]string) Wants
}

// Wants are the kernel entries a backend asks for one set of leases.
type Wants struct {
	// Host are the entries this host needs for itself (devices, their
	// addresses, a route for the whole network).
	Host []Want
	// Peers holds, by masked subnet, every lease of this backend's types
	// other than own. Leases of other types are absent.
	Peers map[netip.Prefix]PeerWants
}

// PeerWants is what a backend asks for one peer.
type PeerWants struct {
	Entries []Want
	// Refused says why the backend programs nothing for the peer, in the
	// words of its logs; "" when it programs the Entries.
	Refused string
	// Mismatch says why the Entries, though programmed, cannot carry
	// traffic because the peer was configured otherwise (vxlan: another
	// VNI); "" when they can.
	Mismatch string
	// RefusedV6 says why the backend programs nothing for the peer's IPv6
	// subnet while Entries carry its IPv4 one, in the words of its logs;
	// "" when it programs both, or when IPv6 is not in play (a config
	// without it, or a peer still on an IPv4-only config).
	RefusedV6 string
}
