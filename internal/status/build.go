package status

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/weftnet/weft/internal/admit"
	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/backend/backends"
	"github.com/weftnet/weft/internal/kernel"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/netconf"
	"github.com/weftnet/weft/internal/subnetenv"
)

// hint is how every message that blames a stopped agent ends.
const hint = "is weft running? (see `journalctl -u weft`)"

// Inputs is everything Build decides from.
type Inputs struct {
	Now    time.Time
	Config *netconf.Config
	Leases []lease.Lease
	Store  string // where the leases came from, for the header

	SubnetFile string
	SubnetEnv  subnetenv.Env
	SubnetErr  error // reading SubnetFile failed; SubnetEnv is zero then

	// Ext is the external interface as the agent would pick it; its Name
	// is empty when that failed, with ExtErr saying why.
	Ext    backend.ExternalInterface
	ExtErr error
	// PublicIP is this host's: --public-ip, else Ext's address; invalid
	// when unknown. PublicIPv6 is the same for IPv6 (--public-ipv6, else
	// Ext's global IPv6 address): what names this host on an IPv6-only
	// network.
	PublicIP   netip.Addr
	PublicIPv6 netip.Addr

	Kernel Kernel
	// Direct maps peer PublicIPs to the device they are directly reachable
	// on; only consulted for vxlan with DirectRouting.
	Direct map[netip.Addr]string
	// RenewMargin is --subnet-lease-renew-margin: agents renew this long
	// before expiry, so a lease closer to expiry has a silent agent.
	RenewMargin time.Duration
	// Kubernetes says the leases are Nodes' podCIDRs (--kube-subnet-mgr),
	// which never expire.
	Kubernetes bool
}

// Build compares the leases with the kernel and explains every difference.
// Pure: the same Inputs give the same Report.
func Build(in Inputs) Report {
	cfg := in.Config
	r := Report{
		Time:     in.Now,
		Network:  prefixOrEmpty(cfg.Network),
		Backend:  cfg.BackendType,
		Store:    in.Store,
		Leases:   []Row{},
		Problems: []Problem{},
	}
	r.Host = Host{
		Interface:  in.Ext.Name,
		MTU:        in.Ext.MTU,
		SubnetFile: in.SubnetFile,
		Entries:    []Entry{},
	}
	// On an IPv6-only network the host is named by its IPv6 address, as
	// its lease is (lease.PublicAddr).
	ownAddr := in.PublicIP
	if !cfg.EnableIPv4 {
		ownAddr = in.PublicIPv6
	}
	r.Host.PublicIP = addrOrEmpty(ownAddr)
	if in.SubnetErr == nil {
		r.Host.PodMTU = in.SubnetEnv.MTU
	}
	add := func(p Problem) { r.Problems = append(r.Problems, p) }

	if in.ExtErr != nil {
		add(Problem{Code: CodeInterface, Message: fmt.Sprintf(
			"cannot tell which interface carries traffic between hosts (%v); routes are checked without their device. Give status the agent's --iface/--public-ip flags", in.ExtErr)})
	}
	m := model{}
	var p *Problem
	m.desc, m.exp, p = expectation(cfg, in.Ext)
	m.known = p == nil
	if p != nil {
		add(*p)
	}

	own, ownOK := findOwn(in, add)
	if ownOK {
		r.Host.Subnet, r.Host.IPv6Subnet = keyAndV6(own)
	}
	if cfg.EnableIPv6 {
		r.IPv6Network = cfg.IPv6Network.String()
	}
	if !ownOK {
		own = lease.Lease{}
	}
	// The agent's own admission step, on the same leases: what it refuses
	// is shown as refused, and the backend plans only the rest.
	adm := admit.Decide(admit.Input{Config: cfg, Backend: m.desc, Own: own, OwnPublicIP: in.PublicIP, Leases: in.Leases})
	m.refused = make(map[refusedKey]admit.Refusal, len(adm.Refused))
	for _, r := range adm.Refused {
		m.refused[keyOf(r.Lease)] = r
	}
	m.refusedV6 = make(map[refusedKey]admit.Refusal, len(adm.RefusedV6))
	for _, r := range adm.RefusedV6 {
		m.refusedV6[keyOf(r.Lease)] = r
	}
	if m.known {
		m.own = own
		m.wants = m.exp.Wants(own, in.PublicIP, adm.Admitted, in.Direct)
	}
	if m.known && ownOK {
		for _, w := range m.wants.Host {
			e := Compare(w, &in.Kernel)
			r.Host.Entries = append(r.Host.Entries, e)
			for _, p := range entryProblems(e, lease.Lease{}, m.exp.MTUBasis) {
				add(p)
			}
		}
	}
	if in.SubnetErr == nil {
		for _, p := range subnetFileProblems(in, cfg, m) {
			add(p)
		}
	}
	if ownOK {
		for _, p := range bridgeProblems(in, own, m) {
			add(p)
		}
	}

	// Each family's public address names one host: two leases with one
	// PublicIP, or one PublicIPv6, claim the same host.
	byIP := make(map[netip.Addr][]netip.Prefix)
	for _, l := range in.Leases {
		for _, a := range publicAddrs(cfg, l) {
			byIP[a] = append(byIP[a], l.Key())
		}
	}
	for _, l := range in.Leases {
		self := ownOK && l.Key() == own.Key()
		row := buildRow(in, l, self, m)
		for _, a := range publicAddrs(cfg, l) {
			name, flag := "PublicIP", "--public-ip"
			if a.Is6() {
				name, flag = "PublicIPv6", "--public-ipv6"
			}
			for _, other := range byIP[a] {
				if other != l.Key() {
					row.Problems = append(row.Problems, Problem{Code: CodeDuplicateIP, Message: fmt.Sprintf(
						"%s %s is also in the lease of %s: two leases claim one host (a cloned machine, a wrong %s, or a stale lease from before a re-install); peers route only one of them correctly. Delete the stale lease",
						name, a, other, flag)})
				}
			}
		}
		r.Leases = append(r.Leases, row)
	}
	finish(&r)
	return r
}

// finish sets the statuses and totals from the problems found so far.
func finish(r *Report) {
	n := len(r.Problems)
	for i := range r.Leases {
		row := &r.Leases[i]
		n += len(row.Problems)
		row.Status = "ok"
		switch {
		case row.Refused != "":
			row.Status = "refused"
		case len(row.Problems) > 0 || (row.Self && len(r.Problems) > 0):
			row.Status = "problem"
		}
	}
	r.ProblemCount = n
	r.OK = n == 0
}

// model is the network's backend as status checks it.
type model struct {
	desc  backend.Descriptor
	exp   backend.Expectation
	wants backend.Wants
	own   lease.Lease // this host's, zero when unknown
	// refused are the leases the agent's admission step refuses;
	// refusedV6 those it admits without their IPv6 half.
	refused   map[refusedKey]admit.Refusal
	refusedV6 map[refusedKey]admit.Refusal
	// known is false when the backend is not one of this build or its
	// options are invalid: leases are listed, nothing is compared.
	known bool
}

// refusedKey names a lease among a snapshot's: its lease.Key and
// lease.PublicAddr, so that IPv6-only leases are told apart too.
type refusedKey struct {
	subnet netip.Prefix
	pub    netip.Addr
}

func keyOf(l lease.Lease) refusedKey { return refusedKey{l.Key(), l.PublicAddr()} }

// publicAddrs are the public addresses of l that name its host, one per
// family the network carries.
func publicAddrs(cfg *netconf.Config, l lease.Lease) []netip.Addr {
	var out []netip.Addr
	if l.Attrs.PublicIP.IsValid() {
		out = append(out, l.Attrs.PublicIP)
	}
	if cfg.EnableIPv6 && l.Attrs.PublicIPv6.IsValid() {
		out = append(out, l.Attrs.PublicIPv6)
	}
	return out
}

// keyAndV6 are how rows name a lease's subnets: its key (lease.Key: the
// IPv4 subnet, or on an IPv6-only network the IPv6 one), and the IPv6
// subnet beside an IPv4 key ("" when there is none).
func keyAndV6(l lease.Lease) (string, string) {
	if !l.Subnet.IsValid() {
		return prefixOrEmpty(l.IPv6Subnet), ""
	}
	return l.Subnet.String(), prefixOrEmpty(l.IPv6Subnet)
}

// findOwn picks this host's lease: the one for the subnet in subnet.env,
// which the CNI plugin hands out addresses from, else the one carrying this
// host's PublicIP, as the agent would reuse it. Every disagreement between
// the two is a problem. On an IPv6-only network both are the IPv6 ones
// (FLANNEL_IPV6_SUBNET, PublicIPv6), as leases are keyed (lease.Key).
func findOwn(in Inputs, add func(Problem)) (lease.Lease, bool) {
	envSubnet, myIP, ipName, ipFlag, envKey := in.SubnetEnv.Subnet, in.PublicIP, "PublicIP", "--public-ip", "FLANNEL_SUBNET"
	if !in.Config.EnableIPv4 {
		envSubnet, myIP, ipName, ipFlag, envKey = in.SubnetEnv.IPv6Subnet, in.PublicIPv6, "PublicIPv6", "--public-ipv6", "FLANNEL_IPV6_SUBNET"
	}
	var byIP, bySubnet *lease.Lease
	for i, l := range in.Leases {
		if myIP.IsValid() && l.PublicAddr() == myIP && byIP == nil {
			byIP = &in.Leases[i]
		}
		if in.SubnetErr == nil && envSubnet.IsValid() && l.Key() == envSubnet && bySubnet == nil {
			bySubnet = &in.Leases[i]
		}
	}
	file := in.SubnetFile
	if in.SubnetErr == nil && envSubnet.IsValid() {
		s := envSubnet
		switch {
		case bySubnet != nil && (!myIP.IsValid() || bySubnet.PublicAddr() == myIP):
			return *bySubnet, true
		case bySubnet != nil:
			add(Problem{Code: CodeSubnetFile, Message: fmt.Sprintf(
				"%s says this host's subnet is %s, but that lease carries %s %s, not this host's %s: another host took the subnet after this host's lease lapsed. Restart weft here (it leases a free subnet and rewrites the file), then recreate this host's pods",
				file, s, ipName, bySubnet.PublicAddr(), myIP)})
			if byIP != nil {
				return *byIP, true
			}
			return lease.Lease{}, false
		case byIP != nil:
			add(Problem{Code: CodeSubnetFile, Message: fmt.Sprintf(
				"%s says this host's subnet is %s, but its lease (%s %s) is %s: the agent has not rewritten the file since the lease changed, so new pods get addresses no peer routes here. Restart weft, then recreate this host's pods",
				file, s, ipName, myIP, byIP.Key())})
			return *byIP, true
		default:
			add(Problem{Code: CodeNoLease, Message: fmt.Sprintf(
				"this host has no lease: the store holds none for its subnet %s (from %s) and none with its %s %s. The lease expired or was deleted while the agent was down, so peers have dropped their routes here; start weft, which takes %s again if it is still free (see `journalctl -u weft`)",
				s, file, ipName, addrOrUnknown(myIP), s)})
			return lease.Lease{}, false
		}
	}
	if in.SubnetErr != nil {
		add(Problem{Code: CodeSubnetFile, Message: fmt.Sprintf(
			"%v: the agent writes this file once it holds a lease, so it has not got that far on this host (or --subnet-file names another file), and the CNI plugin fails every new pod until it exists; %s",
			in.SubnetErr, hint)})
	} else {
		add(Problem{Code: CodeSubnetFile, Message: fmt.Sprintf("%s has no %s, so the CNI plugin cannot start pods; restart weft to rewrite it", file, envKey)})
	}
	if byIP != nil {
		return *byIP, true
	}
	if !myIP.IsValid() {
		add(Problem{Code: CodeNoLease, Message: fmt.Sprintf("this host's %s is unknown, so its lease cannot be found; give status the agent's %s or --iface", ipName, ipFlag)})
		return lease.Lease{}, false
	}
	add(Problem{Code: CodeNoLease, Message: fmt.Sprintf(
		"no lease carries this host's %s %s: weft has not run here, or runs with another %s or --etcd-prefix; %s", ipName, myIP, ipFlag, hint)})
	return lease.Lease{}, false
}

func addrOrUnknown(a netip.Addr) string {
	if a.IsValid() {
		return a.String()
	}
	return "(unknown)"
}

// subnetFileProblems compares subnet.env with the network config and the
// backend's MTU.
func subnetFileProblems(in Inputs, cfg *netconf.Config, m model) []Problem {
	var ps []Problem
	se := in.SubnetEnv
	if len(se.Networks) > 0 && cfg.Network.IsValid() && !slices.Contains(se.Networks, cfg.Network) {
		ps = append(ps, Problem{Code: CodeSubnetFile, Message: fmt.Sprintf(
			"%s has FLANNEL_NETWORK=%s but the network config says %s: the file is from an earlier config; restart weft to rewrite it, then recreate this host's pods",
			in.SubnetFile, joinPrefixes(se.Networks), cfg.Network)})
	}
	if !m.known || se.MTU == 0 {
		return ps
	}
	if want := m.exp.PodMTU; want != 0 && se.MTU != want {
		ps = append(ps, Problem{Code: CodeMTU, Message: fmt.Sprintf(
			"%s has FLANNEL_MTU=%d, but the %s backend gives pods %d here (%s): pods created from this file %s; restart weft to rewrite it, then recreate this host's pods",
			in.SubnetFile, se.MTU, cfg.BackendType, want, m.exp.MTUBasis, mtuEffect(se.MTU, want))})
	}
	return ps
}

func deviceMTUEffect(dev string, have, want int) string {
	if have > want {
		return "packets that fit " + dev + " no longer fit the underlay once encapsulated and are dropped (large transfers stall while pings work)"
	}
	return "pods' full-size packets do not fit " + dev + " and are dropped or fragmented"
}

func mtuEffect(have, want int) string {
	if have > want {
		return "send packets too large for the path, which are dropped (large transfers stall while pings work)"
	}
	return "use smaller packets than they could (slower, but they work)"
}

func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// bridgeProblems checks cni0, when it exists (the bridge plugin creates it
// with the host's first pod): its address must be the own subnet's first
// address, and its MTU no larger than the pods'.
func bridgeProblems(in Inputs, own lease.Lease, m model) []Problem {
	br, ok := in.Kernel.Link("cni0")
	if !ok {
		return nil
	}
	var ps []Problem
	want := netip.PrefixFrom(own.Subnet.Addr().Next(), own.Subnet.Bits())
	var have []string
	found := false
	for _, a := range br.Addrs {
		if !a.Addr().Is4() {
			continue
		}
		if a == want {
			found = true
		}
		have = append(have, a.String())
	}
	if !found && len(have) > 0 {
		ps = append(ps, Problem{Code: CodeCNIBridge, Want: want.String() + " dev cni0", Have: strings.Join(have, " "), Message: fmt.Sprintf(
			"cni0 has %s, not %s: it was set up for an earlier subnet of this host, and no peer routes that subnet here. weft's CNI plugin moves cni0 to the new subnet when the next pod starts (flannel's fails with \"already has an IP address different from\"); recreate the pods started before",
			strings.Join(have, ", "), want)})
	}
	// The backend's MTU is what the path carries; subnet.env may be stale.
	limit := 0
	if m.known {
		limit = m.exp.PodMTU
	}
	if limit == 0 && in.SubnetErr == nil {
		limit = in.SubnetEnv.MTU
	}
	if limit != 0 && br.MTU > limit {
		ps = append(ps, Problem{Code: CodeMTU, Message: fmt.Sprintf(
			"cni0 has MTU %d, above the %d the %s backend carries: pods attached before the MTU changed send packets too large for the path, which are dropped (large transfers stall while pings work); recreate them",
			br.MTU, limit, in.Config.BackendType)})
	}
	return ps
}

// buildRow describes one lease and, for a peer, compares its entries.
func buildRow(in Inputs, l lease.Lease, self bool, m model) Row {
	subnet, subnet6 := keyAndV6(l)
	pub, pub6 := addrOrNone(l.Attrs.PublicIP), addrOrEmpty(l.Attrs.PublicIPv6)
	if !l.Subnet.IsValid() && !l.Attrs.PublicIP.IsValid() {
		// An IPv6-only lease: named by its PublicIPv6, as by its subnet.
		pub, pub6 = addrOrNone(l.Attrs.PublicIPv6), ""
	}
	row := Row{
		Subnet:      subnet,
		IPv6Subnet:  subnet6,
		PublicIP:    pub,
		PublicIPv6:  pub6,
		Backend:     l.Attrs.BackendType,
		Reservation: l.Reservation() && !in.Kubernetes,
		Node:        in.Kubernetes,
		Self:        self,
		Entries:     []Entry{},
		Problems:    []Problem{},
	}
	if d, ok := backends.ForLeaseType(l.Attrs.BackendType); ok && d.LeaseMAC != nil {
		if mac, ok := d.LeaseMAC(l); ok {
			row.VtepMAC = mac.String()
		}
	}
	if !l.Reservation() {
		exp := l.Expiration.UTC()
		left := int64(l.Expiration.Sub(in.Now) / time.Second)
		row.Expires, row.ExpiresIn = &exp, &left
	}
	row.Problems = append(row.Problems, expiryProblems(in, l, self)...)
	if r, ok := m.refused[keyOf(l)]; ok && !self {
		row.Refused = r.Reason
		row.Problems = append(row.Problems, Problem{Code: CodeBadLease, Message: fmt.Sprintf(
			"refused: %s. This host's agent does not program it (weft_leases_refused counts it); delete the key (etcdctl del) if no host holds it, or fix the host that wrote it",
			r.Reason)})
		return row
	}
	if self || !m.known {
		return row
	}
	if !slices.Contains(m.desc.LeaseTypes, l.Attrs.BackendType) {
		typ := l.Attrs.BackendType
		if typ == "" {
			typ = "none"
		}
		row.Problems = append(row.Problems, Problem{Code: CodeBackendMismatch, Message: fmt.Sprintf(
			"the lease's backend is %s but the network's is %s: hosts of different backends cannot reach each other's pods, and this host ignores the lease. That host's agent runs with another network config or left a stale lease; restart it there",
			typ, in.Config.BackendType)})
		return row
	}
	pw, ok := m.wants.Peers[l.Key().Masked()]
	if !ok {
		// The planners pass over the own subnet, which with the own lease
		// unknown is the invalid one: a lease without a subnet.
		pw.Refused = backend.PeerProblem(l, in.Config.Network, m.own, in.PublicIP)
		if !in.Config.EnableIPv4 {
			pw.Refused = backend.PeerV6Problem(l, in.Config.IPv6Network, m.own, m.own.Attrs.PublicIPv6)
		}
		if pw.Refused == "" {
			return row // the own subnet under another PublicIP: findOwn has said so
		}
	}
	switch {
	case pw.Refused != "":
		row.Problems = append(row.Problems, Problem{Code: CodeBadLease, Message: fmt.Sprintf(
			"this host's agent skips the lease: %s; fix or delete it (etcdctl del) if that host is gone", pw.Refused)})
		return row
	case pw.Mismatch != "":
		row.Problems = append(row.Problems, Problem{Code: CodeVNIMismatch, Message: pw.Mismatch +
			": that host runs with another Backend config; make the configs agree and restart its agent"})
		return row
	}
	// A bad IPv6 half costs the peer its IPv6 entries only: the IPv4 ones
	// are still compared below.
	// The problems so far (an expired lease) concern both families; a
	// refused IPv6 half, next, only IPv6, which then is not probed.
	common := len(row.Problems)
	v6ok := in.Config.EnableIPv6 && l.IPv6Subnet.IsValid()
	if r, ok := m.refusedV6[keyOf(l)]; ok {
		v6ok = false
		row.Problems = append(row.Problems, Problem{Code: CodeBadLease, Message: fmt.Sprintf(
			"IPv6 half refused: %s. This host's agent programs no IPv6 entries for it (weft_leases_refused counts it); fix the host that wrote it",
			r.Reason)})
	} else if pw.RefusedV6 != "" {
		v6ok = false
		row.Problems = append(row.Problems, Problem{Code: CodeBadLease, Message: fmt.Sprintf(
			"this host's agent programs the peer's IPv4 subnet but not its IPv6 subnet %s: %s", l.IPv6Subnet, pw.RefusedV6)})
	}
	// One probe target per family the peer is reached over: its pod
	// gateway (the subnet's first address) and public address of that
	// family.
	target := func(sub netip.Prefix, pub netip.Addr) probeTarget {
		return probeTarget{
			subnet:      sub.Masked(),
			addr:        sub.Masked().Addr().Next(),
			publicIP:    pub,
			port:        m.exp.Port,
			portUser:    m.exp.PortUser,
			gatewayHint: m.exp.GatewayHint,
			mtu:         podMTU(in, m.exp),
			known:       common,
		}
	}
	var t4, t6 probeTarget
	if l.Subnet.IsValid() {
		t4 = target(l.Subnet, l.Attrs.PublicIP)
	}
	if v6ok {
		t6 = target(l.IPv6Subnet, l.Attrs.PublicIPv6)
	}
	for _, w := range pw.Entries {
		e := Compare(w, &in.Kernel)
		row.Entries = append(row.Entries, e)
		ps := entryProblems(e, l, m.exp.MTUBasis)
		// An entry belongs to the family of its destination (a route) or
		// address (a neighbour's, an FDB entry's underlay one); one with
		// neither counts for both.
		fam := w.Dst.Addr()
		if !fam.IsValid() {
			fam = w.IP
		}
		for i := len(row.Problems); i < len(row.Problems)+len(ps); i++ {
			if !fam.IsValid() || fam.Is4() {
				t4.own = append(t4.own, i)
			}
			if !fam.IsValid() || fam.Is6() {
				t6.own = append(t6.own, i)
			}
		}
		if l.Subnet.IsValid() && v6ok && fam.IsValid() {
			// A dual-stack peer: say which family's entry it is.
			for i := range ps {
				ps[i].Message = familyName(fam) + ": " + ps[i].Message
			}
		}
		row.Problems = append(row.Problems, ps...)
		if w.Kind == KindRoute && w.Dst.Addr().Is4() {
			t4.path = w
		} else if w.Kind == KindRoute {
			t6.path = w
		}
	}
	// udp, wireguard: the route for the whole network carries every peer;
	// a dual-stack wireguard host has one per family.
	for _, t := range []*probeTarget{&t4, &t6} {
		if !t.addr.IsValid() || t.path.Dst.IsValid() {
			continue
		}
		for _, w := range m.wants.Host {
			if w.Kind == KindRoute && w.Dst.Contains(t.addr) {
				t.path = w
			}
		}
	}
	if t4.addr.IsValid() {
		row.targets = append(row.targets, t4)
	}
	// The IPv6 side is probed where the backend programs a route to the
	// peer's IPv6 subnet (not udp's, which carries IPv4 alone).
	if t6.addr.IsValid() && t6.path.Dst.IsValid() {
		row.targets = append(row.targets, t6)
	}
	return row
}

// familyName is "IPv4" or "IPv6", a's family.
func familyName(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

func podMTU(in Inputs, exp backend.Expectation) int {
	if in.SubnetErr == nil && in.SubnetEnv.MTU != 0 {
		return in.SubnetEnv.MTU
	}
	return exp.PodMTU
}

func addrOrNone(a netip.Addr) string {
	if a.IsValid() {
		return a.String()
	}
	return "none"
}

// expiryProblems: an expired lease, or one its agent should have renewed
// already.
func expiryProblems(in Inputs, l lease.Lease, self bool) []Problem {
	if l.Reservation() {
		return nil
	}
	left := l.Expiration.Sub(in.Now)
	who := "the agent on " + addrOrNone(l.Attrs.PublicIP)
	fix := "start weft on " + addrOrNone(l.Attrs.PublicIP) + ", or delete the lease if that host is gone"
	if self {
		who, fix = "this host's agent", "start weft here (see `journalctl -u weft`)"
	}
	switch {
	case left <= 0:
		return []Problem{{Code: CodeLeaseExpired, Message: fmt.Sprintf(
			"the lease expired %s ago: %s stopped renewing it, and once the store deletes it every host drops its routes to %s; %s",
			FormatDuration(-left), who, l.Subnet, fix)}}
	case in.RenewMargin > 0 && left < in.RenewMargin:
		return []Problem{{Code: CodeLeaseNotRenewed, Message: fmt.Sprintf(
			"the lease expires in %s although agents renew it %s before expiry: %s has stopped renewing it, and when it expires every host drops its routes to %s; %s",
			FormatDuration(left), FormatDuration(in.RenewMargin), who, l.Subnet, fix)}}
	}
	return nil
}

// entryProblems explains an entry that is not as wanted; peer is the lease
// it is for (zero for this host's own entries).
func entryProblems(e Entry, peer lease.Lease, mtuBasis string) []Problem {
	if e.State == StateOK {
		return nil
	}
	w := e.want
	p := Problem{Want: e.Want, Have: e.Have}
	one := func(code, format string, args ...any) []Problem {
		p.Code, p.Message = code, fmt.Sprintf(format, args...)
		return []Problem{p}
	}
	switch w.Kind {
	case KindRoute:
		if e.State == StateMissing {
			return one(CodeNoRoute, "no route to %s: the agent has not programmed it; %s", w.Dst, hint)
		}
		return one(CodeWrongRoute,
			"the route to %s does not lead to the peer: another tool or a stale entry holds the destination; weft replaces it when it runs. %s",
			w.Dst, capitalize(hint))
	case KindNeigh:
		if e.State == StateMissing {
			return one(CodeMissingNeigh, "no neighbour entry for %s's VTEP (%s on %s): the agent has not programmed it; %s",
				addrOrNone(peer.Attrs.PublicIP), w.IP, w.Dev, hint)
		}
		if n := e.haveNeigh; n != nil && n.MAC != w.MAC {
			return one(CodeWrongVtepMAC, "the neighbour entry for %s on %s has MAC %s, but the peer's lease publishes VtepMAC %s: %s",
				w.IP, w.Dev, macOrNone(n.MAC), w.MAC, staleMAC)
		}
		return one(CodeMissingNeigh, "the neighbour entry for %s on %s is not PERMANENT, so the kernel may expire it; weft installs it permanent. %s",
			w.IP, w.Dev, capitalize(hint))
	case KindFDB:
		if e.State == StateMissing {
			return one(CodeMissingFDB, "no FDB entry sends %s's VTEP MAC %s to %s on %s: frames for it go nowhere; the agent has not programmed it; %s",
				addrOrNone(peer.Attrs.PublicIP), w.MAC, w.IP, w.Dev, hint)
		}
		if len(e.haveFDB) > 0 && e.haveFDB[0].MAC != w.MAC {
			return one(CodeWrongVtepMAC, "the FDB entry for %s on %s uses MAC %s, but the peer's lease publishes VtepMAC %s: %s",
				w.IP, w.Dev, e.haveFDB[0].MAC, w.MAC, staleMAC)
		}
		if len(e.haveFDB) > 0 && e.haveFDB[0].Dst != w.IP {
			return one(CodeWrongFDB, "the FDB entry for %s on %s sends to %s, but the peer's PublicIP is %s: the peer's address changed and this host was not updated; restart weft here",
				w.MAC, w.Dev, e.haveFDB[0].Dst, w.IP)
		}
		return one(CodeMissingFDB, "the FDB entry for %s on %s is not permanent; weft installs it permanent. %s", w.MAC, w.Dev, capitalize(hint))
	case KindDevice:
		l := e.haveLink
		if l == nil {
			return one(CodeDevice, "device %s does not exist: the agent creates it at start; %s", w.Dev, hint)
		}
		var ps []Problem
		if !l.Up {
			ps = append(ps, Problem{Code: CodeDevice, Want: e.Want, Have: e.Have, Message: fmt.Sprintf(
				"%s is down, so no pod traffic leaves or enters this host: `ip link set %s up`, or restart weft", w.Dev, w.Dev)})
		}
		if !w.MAC.IsZero() && l.MAC != w.MAC {
			ps = append(ps, Problem{Code: CodeOwnVtepMAC, Want: e.Want, Have: e.Have, Message: fmt.Sprintf(
				"%s has MAC %s, but this host's lease publishes VtepMAC %s: peers address this host's VTEP by the lease, so %s drops all their traffic (the MAC changed under the agent, e.g. by udev's MACAddressPolicy after a reboot: flannel issues #1795, #1330). Restart weft here: it sets the device's MAC back or publishes the new one",
				w.Dev, macOrNone(l.MAC), w.MAC, w.Dev)})
		}
		if w.MTU != 0 && l.MTU != w.MTU {
			ps = append(ps, Problem{Code: CodeMTU, Want: e.Want, Have: e.Have, Message: fmt.Sprintf(
				"%s has MTU %d, but the backend sets %d (%s): %s; restart weft to set it",
				w.Dev, l.MTU, w.MTU, mtuBasis, deviceMTUEffect(w.Dev, l.MTU, w.MTU))})
		}
		return ps
	case KindAddr:
		return one(CodeDevice, "%s lacks its address %s, this host's source address towards peer pods and the gateway peers route to; restart weft to restore it",
			w.Dev, w.Dst)
	}
	return nil
}

const staleMAC = "the peer's VTEP changed (a reboot re-created its device with a new MAC: flannel's classic bug) and this host was not updated, so frames go to a MAC no host owns. Start or restart weft here: it reprograms every peer from the leases"

func macOrNone(m kernel.MAC) string {
	if m.IsZero() {
		return "none"
	}
	return m.String()
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// FormatDuration renders a lease's time to expiry the way operators read
// it: "23h59m", "42m", "35s".
func FormatDuration(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	switch {
	case d >= time.Hour:
		h := d / time.Hour
		m := (d % time.Hour) / time.Minute
		return fmt.Sprintf("%dh%02dm", h, m)
	case d >= time.Minute:
		return fmt.Sprintf("%dm", d/time.Minute)
	default:
		return fmt.Sprintf("%ds", d/time.Second)
	}
}

func prefixOrEmpty(p netip.Prefix) string {
	if !p.IsValid() {
		return ""
	}
	return p.String()
}

func addrOrEmpty(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}
