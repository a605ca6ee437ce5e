// Package status answers the operator's question "is the pod network on
// this host healthy, and if not, why?" without the agent's help: it reads
// the leases and the network config from the store and the kernel state of
// this host directly, so it works best exactly when the agent is down.
//
// The decisions are pure and tested without root:
//
//   - expect.go: asks the network's backend (backend.Descriptor.Expect)
//     what the kernel of this host must hold, for itself and for each
//     peer's lease, as values rendered in iproute2's text; the backends
//     derive them from the same plan they program;
//   - compare.go: whether a snapshot of the kernel holds each entry, and
//     what it holds instead;
//   - build.go: the report, one row per lease, with each problem explained
//     in words an operator can act on;
//   - explain.go: the verdict of --check's probes (route lookup, ICMP echo
//     to the peer's pod gateway, ping of its PublicIP, its VXLAN/UDP port,
//     a full-size echo with don't-fragment) turned into the same kind of
//     explanations.
//
// Only taking the snapshot and sending the probes talk to the kernel
// (the _linux.go files).
package status

import (
	"time"

	"github.com/weftnet/weft/internal/kernel"
)

// Report is everything `weft status` shows. Its JSON form (`-o json`) is a
// stable interface for scripts; docs/status.md lists the fields and the
// problem codes.
type Report struct {
	Time         time.Time `json:"time"`
	Network      string    `json:"network"`
	IPv6Network  string    `json:"ipv6_network,omitempty"` // when the config enables IPv6
	Backend      string    `json:"backend"`
	Store        string    `json:"store"`   // where leases came from, e.g. "etcd http://10.4.7.12:2379 /coreos.com/network"
	Host         Host      `json:"host"`    // this host
	Checked      bool      `json:"checked"` // --check probes ran
	OK           bool      `json:"ok"`      // no problem anywhere
	ProblemCount int       `json:"problem_count"`
	Leases       []Row     `json:"leases"`   // every lease, ordered by subnet
	Problems     []Problem `json:"problems"` // about this host itself, not one peer
	// Warnings are --check's findings about this host's kernel that do not
	// stop traffic now (docs/status.md); absent when there are none.
	Warnings     []Problem `json:"warnings,omitempty"`
	WarningCount int       `json:"warning_count,omitempty"`
}

// Host describes this host as status sees it.
type Host struct {
	PublicIP   string `json:"public_ip,omitempty"`
	Interface  string `json:"interface,omitempty"`   // the external interface
	MTU        int    `json:"mtu,omitempty"`         // the external interface's
	Subnet     string `json:"subnet,omitempty"`      // this host's lease, "" when it has none
	IPv6Subnet string `json:"ipv6_subnet,omitempty"` // the lease's IPv6 subnet, when dual-stack
	SubnetFile string `json:"subnet_file"`
	// PodMTU is FLANNEL_MTU from the subnet file; 0 when it was unreadable.
	PodMTU int `json:"pod_mtu,omitempty"`
	// Entries are the kernel entries this host needs for itself, not for a
	// peer: the vxlan device, udp's route for the whole network.
	Entries []Entry `json:"entries"`
}

// Row is one lease.
type Row struct {
	Subnet      string     `json:"subnet"`
	IPv6Subnet  string     `json:"ipv6_subnet,omitempty"` // dual-stack leases only
	PublicIP    string     `json:"public_ip"`
	PublicIPv6  string     `json:"public_ipv6,omitempty"`
	Backend     string     `json:"backend"`
	VtepMAC     string     `json:"vtep_mac,omitempty"`
	Reservation bool       `json:"reservation"`
	Node        bool       `json:"node,omitempty"`    // a Kubernetes Node's podCIDR (--kube-subnet-mgr): no expiry, no reservation
	Expires     *time.Time `json:"expires,omitempty"` // absent for a reservation or a node
	// ExpiresIn is seconds until expiry at Report.Time, negative once
	// expired; absent for a reservation or a node.
	ExpiresIn *int64 `json:"expires_in_seconds,omitempty"`
	Self      bool   `json:"self"`
	// Status is "ok", "refused" when this host's agent does not accept
	// the lease as a peer (Refused says why), or "problem" when Problems
	// is not empty.
	Status string `json:"status"`
	// Refused is why the agent's admission step refuses the lease, naming
	// the lease and, for a conflict, the lease it conflicts with; empty
	// for an accepted lease.
	Refused string `json:"refused,omitempty"`
	// Entries are the kernel entries this host needs for the peer; empty
	// for the own lease and for peers this host cannot program.
	Entries []Entry `json:"entries"`
	// Check is --check's probes over the lease's first family (IPv4, or
	// IPv6 for an IPv6-only lease), CheckIPv6 those over the IPv6 half
	// of a dual-stack lease; nil without --check, for the own lease, and
	// for a family the backend does not carry to the peer.
	Check     *Check    `json:"check,omitempty"`
	CheckIPv6 *Check    `json:"check_ipv6,omitempty"`
	Problems  []Problem `json:"problems"`

	// targets are what --check probes, one per family, filled by Build.
	targets []probeTarget
}

// Entry states.
const (
	StateOK      = "ok"
	StateMissing = "missing"
	StateWrong   = "wrong"
)

// Entry is one kernel entry: what is wanted, in iproute2's text, and what
// the kernel holds in its place.
type Entry struct {
	Kind  string `json:"kind"` // route, neigh, fdb, device
	Want  string `json:"want"`
	Have  string `json:"have,omitempty"` // what holds the entry's place; empty when nothing does
	State string `json:"state"`          // ok, missing or wrong

	want      Want
	haveRoute *kernel.Route // the route at Want's destination, if any
	haveNeigh *kernel.Neigh // the neighbour at Want's address, if any
	haveFDB   []kernel.FDB  // remotes of Want's MAC, else entries to Want's address
	haveLink  *Link         // the device, if it exists
}

// Problem is one thing wrong, in words.
type Problem struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Want    string `json:"want,omitempty"`
	Have    string `json:"have,omitempty"`
	Fix     string `json:"fix,omitempty"` // the command that puts it right, where one does
}

// Problem codes. They are part of the JSON interface: scripts may match on
// them, so they never change meaning.
const (
	CodeNoLease         = "no_lease"          // this host holds no lease
	CodeSubnetFile      = "subnet_file"       // subnet.env unreadable or disagreeing with the lease
	CodeInterface       = "interface"         // the external interface could not be determined
	CodeConfig          = "config"            // the network config's backend is not one of this build, or its options are invalid
	CodeDevice          = "device"            // a device this host needs is missing or down
	CodeOwnVtepMAC      = "own_vtep_mac"      // this host's VTEP MAC differs from its lease
	CodeMTU             = "mtu_mismatch"      // an MTU differs from what the backend sets, or large packets are lost
	CodeCNIBridge       = "cni_bridge"        // cni0's address is not this host's subnet
	CodeLeaseExpired    = "lease_expired"     // the lease's expiry is in the past
	CodeLeaseNotRenewed = "lease_not_renewed" // the lease is inside its renew margin: its agent stopped renewing
	CodeBackendMismatch = "backend_mismatch"  // the lease's backend is not the network's
	CodeVNIMismatch     = "vni_mismatch"      // a vxlan peer publishes another VNI
	CodeBadLease        = "bad_lease"         // the lease cannot be programmed (no PublicIP, no VtepMAC, ...)
	CodeDuplicateIP     = "duplicate_public_ip"
	CodeNoRoute         = "no_route"          // no route to the peer's subnet
	CodeWrongRoute      = "wrong_route"       // a route to the peer's subnet exists but goes elsewhere
	CodeWrongVtepMAC    = "wrong_vtep_mac"    // the neighbour entry's MAC is not the peer's VtepMAC
	CodeMissingNeigh    = "missing_neighbour" // no neighbour entry for the peer's VTEP
	CodeMissingFDB      = "missing_fdb"       // no FDB entry for the peer's VTEP
	CodeWrongFDB        = "wrong_fdb"         // the FDB entry sends to another address
	CodePublicIPDown    = "public_ip_unreachable"
	CodeUDPPortClosed   = "udp_port_unreachable"
	CodeGatewayNoAnswer = "gateway_unreachable" // the peer host answers, its pod gateway does not
	CodeProbeFailed     = "probe_failed"        // a probe could not be run at all
)

// Check is what --check found for one peer.
type Check struct {
	Family string `json:"family"` // "IPv4" or "IPv6": of Target and every probe
	Target string `json:"target"` // the peer's pod gateway, its subnet's first address
	// Path is the route the kernel picks for Target (ip route get), in
	// iproute2's text; empty when there is none.
	Path    string   `json:"path,omitempty"`
	NoRoute bool     `json:"no_route,omitempty"`
	Reply   bool     `json:"reply"`            // Target answered an ICMP echo
	RTTms   *float64 `json:"rtt_ms,omitempty"` // of that echo
	// PublicIPReply says whether the peer's PublicIP answered a ping; nil
	// when it was not tried (Target answered).
	PublicIPReply *bool `json:"public_ip_reply,omitempty"`
	// PortUnreachable says whether the peer answered a datagram to its
	// VXLAN/UDP port with ICMP port unreachable; nil when not tried.
	PortUnreachable *bool  `json:"port_unreachable,omitempty"`
	Port            int    `json:"port,omitempty"`
	FullSizeMTU     int    `json:"full_size_mtu,omitempty"` // size of the don't-fragment echo, FLANNEL_MTU
	FullSizeReply   *bool  `json:"full_size_reply,omitempty"`
	Error           string `json:"error,omitempty"` // a probe that could not run
}
