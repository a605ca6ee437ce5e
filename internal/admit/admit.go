// Package admit decides which leases of a snapshot become peers: the one
// step between the store, which delivers whatever keys anyone wrote, and
// the backends, which program what they are given. A stray or hostile key
// (a /25 over a live host's /24, a /32 stealing one pod, a /17, a copy of
// a live peer's VtepMAC) must never displace a live peer, so the decision
// looks at the whole snapshot at once and lets the lease that was there
// first win every conflict.
//
// It is its own package rather than part of package lease because it needs
// the backends' knowledge of BackendData (backend.Descriptor.LeaseCheck),
// and package backend already imports lease; the agent and `weft status`
// both call Decide, so that what the page shows as refused is exactly what
// the agent refused. Pure: no I/O, no clock.
//
// The rules (docs/formats.md, "Which leases become peers"):
//
//   - The host's own lease is always admitted.
//
//   - A peer's lease has an IPv4 subnet of exactly SubnetLen, aligned,
//     inside Network, and an IPv4 PublicIP (backend.LeaseProblem). This is
//     the rule flannel applies to reservations (keys without TTL), and weft
//     applies it to every lease: SubnetMin..SubnetMax only bounds which
//     subnets are handed out, so a peer keeping an older subnet after the
//     range was narrowed stays reachable.
//
//   - It does not overlap this host's lease, nor carry this host's
//     PublicIP.
//
//   - Of two leases for one subnet, the older (lease.Lease.Created) wins.
//
//   - The network's backend may refuse a lease's BackendData, and names
//     an identity no two peers may share; of two leases with one identity,
//     the older wins (vxlan: the VtepMAC; another VNI is refused).
//
//   - With IPv6 enabled, a peer's IPv6 half (IPv6Subnet, PublicIPv6) is
//     judged by the same rules against IPv6Network and IPv6SubnetLen
//     (backend.LeaseV6Problem; no overlap with this host's or an older
//     lease's IPv6 subnet, not this host's PublicIPv6). A bad IPv6 half
//     refuses only that half: the lease stays a peer over IPv4, and is
//     handed on without its IPv6Subnet and PublicIPv6, so no backend
//     programs them. A lease without an IPv6 subnet (a host still on an
//     IPv4-only config) is a peer over IPv4 alone, and no refusal.
//
//   - In an IPv6-only network (EnableIPv4 false, Kubernetes mode with
//     host-gw or vxlan) leases have no IPv4 half: the IPv6 rules above
//     judge the whole lease, and a lease they refuse is refused as a
//     peer; the backend judges its data and identity as above (vxlan:
//     the VtepMAC of BackendV6Data). Leases are keyed by their IPv6
//     subnet (lease.Key) and named by their PublicIPv6 (lease.PublicAddr).
//
// Leases of another backend type than the network's are admitted as they
// are (the backends pass over them, and status explains them) but take
// part in the subnet rules.
package admit

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/netconf"
)

// Kinds of refusal, the label values of weft_leases_refused{reason}.
const (
	KindMalformed   = "malformed"          // no IPv4 subnet or PublicIP, or outside Network
	KindLength      = "wrong_length"       // not a subnet of exactly SubnetLen
	KindOverlap     = "overlap"            // overlaps an older lease
	KindOwnSubnet   = "own_subnet"         // overlaps this host's lease
	KindOwnPublicIP = "own_public_ip"      // carries this host's PublicIP
	KindBackendData = "backend_data"       // the backend cannot use its BackendData
	KindIdentity    = "duplicate_identity" // shares its backend identity with an older lease
)

// Kinds lists every kind, for metrics that show zero for each.
var Kinds = []string{KindMalformed, KindLength, KindOverlap, KindOwnSubnet, KindOwnPublicIP, KindBackendData, KindIdentity}

// Input is everything Decide looks at.
type Input struct {
	Config *netconf.Config
	// Backend is the network's backend. Its LeaseCheck judges the
	// BackendData of leases of its LeaseTypes; when it is nil or fails
	// (invalid Backend options, which the agent never runs with) only the
	// common rules apply.
	Backend backend.Descriptor
	// Own is this host's lease; zero when unknown. OwnPublicIP is this
	// host's PublicIP; invalid when unknown.
	Own         lease.Lease
	OwnPublicIP netip.Addr
	Leases      []lease.Lease
	// Memo, when not nil, keeps the backend's verdicts on BackendData
	// from one Decide to the next, so that a snapshot in a large cluster
	// does not decode every lease's JSON again (the agent keeps one; a
	// one-off caller passes nil). One Memo serves one Config and Backend.
	Memo *Memo
}

// Memo remembers LeaseCheck's answers by BackendData (and BackendV6Data),
// for the leases of the last two snapshots.
type Memo struct {
	prev, cur map[string]verdict
}

type verdict struct {
	id  string
	err error
}

// NewMemo returns an empty Memo.
func NewMemo() *Memo { return &Memo{prev: map[string]verdict{}, cur: map[string]verdict{}} }

// judge returns check's verdict on l, from the memo when it has one.
func (m *Memo) judge(check backend.LeaseCheck, l lease.Lease) (string, error) {
	if m == nil {
		return check(l)
	}
	// Both data: a check may judge BackendV6Data too, and on an
	// IPv6-only network it is all a lease has.
	key := []byte(l.Attrs.BackendData)
	if len(l.Attrs.BackendV6Data) > 0 {
		key = append(append(slices.Clip(key), 0), l.Attrs.BackendV6Data...)
	}
	if v, ok := m.cur[string(key)]; ok {
		return v.id, v.err
	}
	v, ok := m.prev[string(key)]
	if !ok {
		v.id, v.err = check(l)
	}
	m.cur[string(key)] = v
	return v.id, v.err
}

// turn starts a snapshot: what the one before did not use is forgotten.
func (m *Memo) turn() {
	if m != nil {
		m.prev, m.cur = m.cur, m.prev
		clear(m.cur)
	}
}

// Refusal is one lease that is not a peer, and why.
type Refusal struct {
	Lease lease.Lease
	// Kind is one of the Kind constants.
	Kind string
	// Reason is a sentence naming the lease's key and PublicIP and, for a
	// conflict, the other lease's, e.g. "172.7.138.0-25 (PublicIP
	// 10.4.7.99) overlaps 172.7.138.0-24 (PublicIP 10.4.7.22), which was
	// there first".
	Reason string
	// IPv6 is set for the refusal of a lease's IPv6 half alone
	// (Result.RefusedV6): the lease is a peer over IPv4.
	IPv6 bool
}

// Result is Decide's answer. Both lists keep the order of Input.Leases.
type Result struct {
	Admitted []lease.Lease // the own lease included
	Refused  []Refusal
	// RefusedV6 are admitted leases whose IPv6 half is refused; their copy
	// in Admitted has no IPv6Subnet, PublicIPv6 or BackendV6Data.
	RefusedV6 []Refusal
}

// RefusedSubnet returns the refusal of a lease for subnet (masked; its
// lease.Key) with PublicIP pub (its lease.PublicAddr), if there is one.
func (r Result) RefusedSubnet(subnet netip.Prefix, pub netip.Addr) (Refusal, bool) {
	for _, f := range r.Refused {
		if f.Lease.Key().Masked() == subnet.Masked() && f.Lease.PublicAddr() == pub {
			return f, true
		}
	}
	return Refusal{}, false
}

// Name is how reasons name a lease: its key and PublicIP, e.g.
// "172.7.138.0-24 (PublicIP 10.4.7.22)".
func Name(l lease.Lease) string {
	key := "(no subnet)"
	switch {
	case l.Subnet.IsValid():
		key = lease.KeyName(l.Subnet, l.IPv6Subnet)
	case l.IPv6Subnet.IsValid(): // an IPv6-only lease (a Node's podCIDR)
		key = l.IPv6Subnet.String()
	}
	return fmt.Sprintf("%s (PublicIP %s)", key, backend.PeerName(l))
}

// Decide splits in.Leases into the peers to program and the refused. It
// runs in O(n log n) for n leases (plus a scan of the admitted peers for
// each refused lease wider than SubnetLen).
func Decide(in Input) Result {
	n := len(in.Leases)
	cfg := in.Config
	var check backend.LeaseCheck
	if in.Backend.LeaseCheck != nil && cfg != nil {
		if c, err := in.Backend.LeaseCheck(cfg); err == nil {
			check = c
		}
	}
	in.Memo.turn()
	checks := func(l lease.Lease) bool {
		return check != nil && slices.Contains(in.Backend.LeaseTypes, l.Attrs.BackendType)
	}
	own := in.Own
	ownSubnet := own.Subnet.Masked()
	ownKey := own.Key().Masked()
	isOwn := func(l lease.Lease) bool { return ownKey.IsValid() && l.Key().Masked() == ownKey }
	// An IPv6-only network (EnableIPv4 false, Kubernetes mode): leases
	// have an IPv6 half alone, judged as the whole lease.
	v6only := cfg != nil && !cfg.EnableIPv4

	// Oldest first; Created ties (unknown ages, or Nodes created in one
	// second) go by subnet, then PublicIP, then the store's order, so that
	// every host decides alike.
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		x, y := in.Leases[a], in.Leases[b]
		return cmp.Or(cmp.Compare(x.Created, y.Created),
			x.Key().Addr().Compare(y.Key().Addr()),
			cmp.Compare(x.Key().Bits(), y.Key().Bits()),
			x.PublicAddr().Compare(y.PublicAddr()))
	})

	const ownIdx = -1
	taken := make(map[netip.Prefix]int, n) // masked subnet → admitted lease
	ids := make(map[string]int)            // backend identity → admitted lease
	if ownKey.IsValid() && checks(own) {
		if id, err := in.Memo.judge(check, own); err == nil && id != "" {
			ids[id] = ownIdx
		}
	}
	byIdx := func(i int) lease.Lease {
		if i == ownIdx {
			return own
		}
		return in.Leases[i]
	}
	refused := make([]*Refusal, n)
	refusedV6 := make([]*Refusal, n)
	taken6 := make(map[netip.Prefix]int) // masked IPv6 subnet → lease admitted with it
	refuse6 := func(i int, kind, format string, args ...any) {
		refusedV6[i] = &Refusal{Lease: in.Leases[i], Kind: kind, IPv6: true,
			Reason: Name(in.Leases[i]) + " " + fmt.Sprintf(format, args...) + "; it stays a peer over IPv4"}
	}
	var wrongLen []int // refused for their length: their overlaps are named afterwards
	refuse := func(i int, kind, format string, args ...any) {
		refused[i] = &Refusal{Lease: in.Leases[i], Kind: kind, Reason: Name(in.Leases[i]) + " " + fmt.Sprintf(format, args...)}
	}
	for _, i := range order {
		l := in.Leases[i]
		if isOwn(l) {
			continue
		}
		subnet := l.Subnet.Masked()
		if cfg == nil {
			refuse(i, KindMalformed, "cannot be judged without a network config")
			continue
		}
		// identity judges l's backend data and takes its identity; false
		// when it refused l.
		identity := func() bool {
			if !checks(l) {
				return true
			}
			id, err := in.Memo.judge(check, l)
			switch j, dup := ids[id]; {
			case err != nil:
				refuse(i, KindBackendData, "is not a %s peer: %v", cfg.BackendType, err)
				return false
			case dup && j == ownIdx:
				refuse(i, KindIdentity, "publishes %s, which is this host's own (%s)", id, Name(own))
				return false
			case dup:
				refuse(i, KindIdentity, "publishes %s, like %s, which was there first", id, Name(byIdx(j)))
				return false
			}
			if id != "" {
				ids[id] = i
			}
			return true
		}
		if v6only {
			judgeV6(in, i, taken6, byIdx, refuse)
			if refused[i] == nil && !identity() {
				delete(taken6, l.IPv6Subnet.Masked())
			}
			continue
		}
		if why := backend.LeaseProblem(l, cfg.Network); why != "" {
			refuse(i, KindMalformed, "is not a peer: %s", why)
			continue
		}
		if l.Subnet.Bits() != cfg.SubnetLen || subnet != l.Subnet {
			refuse(i, KindLength, "is not a /%d subnet (the network's SubnetLen)", cfg.SubnetLen)
			wrongLen = append(wrongLen, i)
			continue
		}
		if ownSubnet.IsValid() && subnet.Overlaps(ownSubnet) {
			refuse(i, KindOwnSubnet, "overlaps this host's own lease %s", Name(own))
			continue
		}
		if in.OwnPublicIP.IsValid() && l.Attrs.PublicIP == in.OwnPublicIP {
			refuse(i, KindOwnPublicIP, "carries this host's PublicIP %s but is not this host's lease", in.OwnPublicIP)
			continue
		}
		if j, ok := taken[subnet]; ok {
			refuse(i, KindOverlap, "overlaps %s, which was there first", Name(byIdx(j)))
			continue
		}
		if !identity() {
			continue
		}
		taken[subnet] = i
		if cfg.EnableIPv6 && l.IPv6Subnet.IsValid() {
			judgeV6(in, i, taken6, byIdx, refuse6)
		}
	}

	// A lease of the wrong length that covers an admitted one is the
	// dangerous kind (a /25 over a live /24 would take its traffic, were
	// it programmed): name the lease it would have displaced.
	admitted := make([]int, 0, len(taken))
	for _, i := range taken {
		admitted = append(admitted, i)
	}
	slices.Sort(admitted)
	for _, i := range wrongLen {
		l := in.Leases[i]
		var victim lease.Lease
		switch {
		case ownSubnet.IsValid() && l.Subnet.Overlaps(ownSubnet):
			victim = own
		case l.Subnet.Bits() >= cfg.SubnetLen:
			if j, ok := taken[netip.PrefixFrom(l.Subnet.Addr(), cfg.SubnetLen).Masked()]; ok {
				victim = in.Leases[j]
			}
		default:
			for _, j := range admitted {
				if in.Leases[j].Subnet.Overlaps(l.Subnet) {
					victim = in.Leases[j]
					break
				}
			}
		}
		if !victim.Subnet.IsValid() {
			continue
		}
		first := ""
		if victim.Created <= l.Created || isOwn(victim) {
			first = ", which was there first"
		}
		r := refused[i]
		r.Kind = KindOverlap
		r.Reason = fmt.Sprintf("%s overlaps %s%s, and is not a /%d subnet (the network's SubnetLen)", Name(l), Name(victim), first, cfg.SubnetLen)
	}

	var res Result
	for i, l := range in.Leases {
		switch {
		case refused[i] != nil:
			res.Refused = append(res.Refused, *refused[i])
		case refusedV6[i] != nil:
			res.RefusedV6 = append(res.RefusedV6, *refusedV6[i])
			l.IPv6Subnet, l.Attrs.PublicIPv6, l.Attrs.BackendV6Data = netip.Prefix{}, netip.Addr{}, nil
			res.Admitted = append(res.Admitted, l)
		default:
			res.Admitted = append(res.Admitted, l)
		}
	}
	return res
}

// judgeV6 judges the IPv6 half of lease i, whose IPv4 half is admitted,
// and takes its IPv6 subnet when it is a peer over IPv6 too. Leases come
// oldest first, so an older lease holds the subnet when two claim it.
func judgeV6(in Input, i int, taken6 map[netip.Prefix]int, byIdx func(int) lease.Lease, refuse6 func(i int, kind, format string, args ...any)) {
	cfg, l, own := in.Config, in.Leases[i], in.Own
	subnet := l.IPv6Subnet.Masked()
	if why := backend.LeaseV6Problem(l, cfg.IPv6Network); why != "" {
		refuse6(i, KindMalformed, "has an IPv6 half that is not a peer: %s", why)
		return
	}
	if l.IPv6Subnet.Bits() != cfg.IPv6SubnetLen || subnet != l.IPv6Subnet {
		refuse6(i, KindLength, "has an IPv6 subnet %s that is not a /%d subnet (the network's IPv6SubnetLen)", l.IPv6Subnet, cfg.IPv6SubnetLen)
		return
	}
	if own.IPv6Subnet.IsValid() && subnet.Overlaps(own.IPv6Subnet) {
		refuse6(i, KindOwnSubnet, "has an IPv6 subnet %s that overlaps this host's own %s", subnet, own.IPv6Subnet)
		return
	}
	if pub := own.Attrs.PublicIPv6; pub.IsValid() && l.Attrs.PublicIPv6 == pub {
		refuse6(i, KindOwnPublicIP, "carries this host's PublicIPv6 %s but is not this host's lease", pub)
		return
	}
	if j, ok := taken6[subnet]; ok {
		refuse6(i, KindOverlap, "has an IPv6 subnet %s that is also in %s, which was there first", subnet, Name(byIdx(j)))
		return
	}
	taken6[subnet] = i
}
