package kernel

// Neighbour (ARP and NDP) and VXLAN forwarding (FDB) entries, the per-peer state of
// an overlay device beside its routes. As for routes, a plan is a pure
// function of what is wanted and what is installed; the Linux side dumps,
// performs and watches.

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
)

// MAC is a 6-byte Ethernet address as a comparable value.
type MAC [6]byte

// ParseMAC parses a 6-byte Ethernet address in any form net.ParseMAC
// accepts ("aa:bb:cc:dd:ee:ff", "aa-bb-...", "aabb.ccdd.eeff").
func ParseMAC(s string) (MAC, error) {
	hw, err := net.ParseMAC(s)
	if err != nil {
		return MAC{}, err
	}
	m, ok := MACFrom(hw)
	if !ok {
		return MAC{}, fmt.Errorf("address %s: not a 6-byte Ethernet address", s)
	}
	return m, nil
}

// MACFrom converts a 6-byte hardware address; it reports false for any
// other length.
func MACFrom(hw net.HardwareAddr) (MAC, bool) {
	var m MAC
	if len(hw) != len(m) {
		return MAC{}, false
	}
	copy(m[:], hw)
	return m, true
}

// String is the lower-case colon form, as flannel publishes VtepMAC.
func (m MAC) String() string { return net.HardwareAddr(m[:]).String() }

// HardwareAddr is m in netlink's form (a fresh slice).
func (m MAC) HardwareAddr() net.HardwareAddr { return net.HardwareAddr(slices.Clone(m[:])) }

// IsZero reports whether m is 00:00:00:00:00:00.
func (m MAC) IsZero() bool { return m == MAC{} }

// Unicast reports whether m can name one interface: not zero and not a
// group (multicast or broadcast) address.
func (m MAC) Unicast() bool { return !m.IsZero() && m[0]&1 == 0 }

// Neigh is one neighbour entry, ARP for an IPv4 IP and NDP for an IPv6
// one: on link LinkIndex, IP resolves to MAC. Permanent is NUD_PERMANENT;
// entries the kernel learned are not.
type Neigh struct {
	LinkIndex int
	IP        netip.Addr
	MAC       MAC
	Permanent bool
}

// String renders n in `ip neigh` form, with "if<N>" for the device.
func (n Neigh) String() string {
	s := fmt.Sprintf("%s lladdr %s dev if%d", n.IP, n.MAC, n.LinkIndex)
	if n.Permanent {
		s += " nud permanent"
	}
	return s
}

// FDB is one remote of a VXLAN device's forwarding entry (`bridge fdb ...
// self`): frames to MAC are sent, encapsulated, to Dst. The all-zeros and
// multicast MACs may have several remotes (`bridge fdb append`, which the
// kernel refuses for unicast MACs); they share the entry's state.
type FDB struct {
	LinkIndex int
	MAC       MAC
	Dst       netip.Addr
	// VNI is the remote's VNI when it differs from the device's; 0 means
	// the device's own.
	VNI       int
	Permanent bool
}

// String renders f in `bridge fdb` form, with "if<N>" for the device.
func (f FDB) String() string {
	s := fmt.Sprintf("%s dev if%d dst %s", f.MAC, f.LinkIndex, f.Dst)
	if f.VNI != 0 {
		s += fmt.Sprintf(" vni %d", f.VNI)
	}
	s += " self"
	if f.Permanent {
		s += " permanent"
	}
	return s
}

// sameRemote reports whether f and g are the same remote of one entry, as
// the kernel matches remotes (their state belongs to the entry).
func (f FDB) sameRemote(g FDB) bool {
	return f.LinkIndex == g.LinkIndex && f.MAC == g.MAC && f.Dst == g.Dst && f.VNI == g.VNI
}

// NeighEvent is a neighbour or FDB entry the kernel added, changed
// (RTM_NEWNEIGH) or deleted (RTM_DELNEIGH).
type NeighEvent struct {
	Deleted   bool
	LinkIndex int
	FDB       bool       // a forwarding entry (AF_BRIDGE), not a neighbour
	IP        netip.Addr // the neighbour's address, or the FDB remote
	MAC       MAC
	VNI       int // an FDB remote's VNI when it is not the device's; 0 otherwise
	Permanent bool
}

// Neigh is e as a neighbour entry (meaningful when !e.FDB).
func (e NeighEvent) Neigh() Neigh {
	return Neigh{LinkIndex: e.LinkIndex, IP: e.IP, MAC: e.MAC, Permanent: e.Permanent}
}

// Entry is e as an FDB remote (meaningful when e.FDB).
func (e NeighEvent) Entry() FDB {
	return FDB{LinkIndex: e.LinkIndex, MAC: e.MAC, Dst: e.IP, VNI: e.VNI, Permanent: e.Permanent}
}

// RouteEvent is a main-table unicast route the kernel added, changed
// (RTM_NEWROUTE) or deleted (RTM_DELROUTE).
type RouteEvent struct {
	Route   Route
	Deleted bool
}

// LinkEvent is a link that appeared, changed or went away.
type LinkEvent struct {
	Index   int
	Name    string
	Deleted bool
	Up      bool // IFF_UP; false for a deleted link
}

// AddrEvent is an address added to or removed from a link.
type AddrEvent struct {
	LinkIndex int
	Prefix    netip.Prefix
	Added     bool // false: removed
}

// NeighOp is one change to the neighbour table.
type NeighOp struct {
	Kind  OpKind // Replace: ip neigh replace; Delete: ip neigh del
	Neigh Neigh
	// Prev is the entry a Replace overwrites; the zero Neigh when there was
	// none.
	Prev Neigh
}

func (o NeighOp) String() string {
	if o.Kind == Delete {
		return "del " + o.Neigh.String()
	}
	return "replace " + o.Neigh.String()
}

// FDBOp is one change to a VXLAN forwarding table.
type FDBOp struct {
	// Replace: bridge fdb replace, which sets the entry's state and, when
	// Entry's remote is not among the entry's remotes yet, rewrites the
	// first remote to it. Delete: bridge fdb del of exactly this remote
	// (the entry goes with its last remote).
	Kind  OpKind
	Entry FDB
	// Prev is the first remote a Replace rewrites; the zero FDB when the
	// MAC had no entry.
	Prev FDB
}

func (o FDBOp) String() string {
	if o.Kind == Delete {
		return "del " + o.Entry.String()
	}
	return "replace " + o.Entry.String()
}

type neighKey struct {
	link int
	ip   netip.Addr
}

// PlanNeighs returns the changes that turn installed into desired, deleting
// only installed entries that owned accepts and nobody wants. An installed
// entry at a desired IP is replaced unless it equals the desired one
// (including Permanent). Replaces come first, then deletes, each sorted by
// link and IP.
func PlanNeighs(desired, installed []Neigh, owned func(Neigh) bool) []NeighOp {
	if strictlySorted(desired, cmpNeigh) && strictlySorted(installed, cmpNeigh) {
		return planNeighsSorted(desired, installed, owned)
	}
	return planNeighsMaps(desired, installed, owned)
}

// cmpNeigh orders neighbours by link and IP, PlanNeighs's key.
func cmpNeigh(a, b Neigh) int {
	return cmp.Or(cmp.Compare(a.LinkIndex, b.LinkIndex), a.IP.Compare(b.IP))
}

// strictlySorted reports whether xs is sorted by c with no two equal keys.
func strictlySorted[T any](xs []T, c func(a, b T) int) bool {
	for i := 1; i < len(xs); i++ {
		if c(xs[i-1], xs[i]) >= 0 {
			return false
		}
	}
	return true
}

// mergeSide tells a merge of two sorted lists, at positions i and j, which
// comes next: < 0 desired[i] alone, > 0 installed[j] alone, 0 both (equal
// keys).
func mergeSide[T any](desired, installed []T, i, j int, c func(a, b T) int) int {
	switch {
	case i == len(desired):
		return 1
	case j == len(installed):
		return -1
	}
	return c(desired[i], installed[j])
}

// planNeighsSorted is PlanNeighs for inputs sorted by key without
// duplicates, as a backend's own lists are: one merge, no maps, so that a
// change of one peer among thousands costs a pass without allocations
// beyond the result. Its output is the same as planNeighsMaps's.
func planNeighsSorted(desired, installed []Neigh, owned func(Neigh) bool) []NeighOp {
	var replaces, deletes []NeighOp
	i, j := 0, 0
	for i < len(desired) || j < len(installed) {
		switch c := mergeSide(desired, installed, i, j, cmpNeigh); {
		case c < 0:
			replaces = append(replaces, NeighOp{Kind: Replace, Neigh: desired[i]})
			i++
		case c > 0:
			if owned(installed[j]) {
				deletes = append(deletes, NeighOp{Kind: Delete, Neigh: installed[j]})
			}
			j++
		default:
			if desired[i] != installed[j] {
				replaces = append(replaces, NeighOp{Kind: Replace, Neigh: desired[i], Prev: installed[j]})
			}
			i, j = i+1, j+1
		}
	}
	return append(replaces, deletes...)
}

// planNeighsMaps is PlanNeighs for any input.
func planNeighsMaps(desired, installed []Neigh, owned func(Neigh) bool) []NeighOp {
	want := make(map[neighKey]Neigh, len(desired))
	for _, d := range desired {
		want[neighKey{d.LinkIndex, d.IP}] = d
	}
	have := make(map[neighKey]Neigh, len(installed))
	for _, n := range installed {
		have[neighKey{n.LinkIndex, n.IP}] = n
	}
	var replaces, deletes []NeighOp
	for k, d := range want {
		n, ok := have[k]
		if ok && n == d {
			continue
		}
		op := NeighOp{Kind: Replace, Neigh: d}
		if ok {
			op.Prev = n
		}
		replaces = append(replaces, op)
	}
	for k, n := range have {
		if _, ok := want[k]; !ok && owned(n) {
			deletes = append(deletes, NeighOp{Kind: Delete, Neigh: n})
		}
	}
	byNeigh := func(a, b NeighOp) int {
		return cmp.Or(cmp.Compare(a.Neigh.LinkIndex, b.Neigh.LinkIndex), a.Neigh.IP.Compare(b.Neigh.IP))
	}
	slices.SortFunc(replaces, byNeigh)
	slices.SortFunc(deletes, byNeigh)
	return append(replaces, deletes...)
}

type fdbKey struct {
	link int
	mac  MAC
}

// PlanFDB returns the changes that turn installed into desired, which holds
// at most one remote per link and MAC (a later one wins). installed is in
// the kernel's dump order, where an entry's first remote comes first: that is
// the one a Replace rewrites. Extra remotes of a desired MAC are deleted;
// entries of other MACs only when owned accepts them. Replaces come first, then deletes, each sorted by link, MAC
// and destination.
func PlanFDB(desired, installed []FDB, owned func(FDB) bool) []FDBOp {
	if strictlySorted(desired, cmpFDBKey) && slices.IsSortedFunc(installed, cmpFDBKey) {
		return planFDBSorted(desired, installed, owned)
	}
	return planFDBMaps(desired, installed, owned)
}

// cmpFDBKey orders FDB entries by link and MAC, PlanFDB's key; entries of
// one MAC compare equal, so a stable order keeps the kernel's order of
// their remotes.
func cmpFDBKey(a, b FDB) int {
	return cmp.Or(cmp.Compare(a.LinkIndex, b.LinkIndex), slices.Compare(a.MAC[:], b.MAC[:]))
}

// planFDBSorted is PlanFDB for desired sorted by key without duplicates
// and installed sorted by key (remotes of one MAC in the kernel's order),
// as the vxlan backend's own lists are: a merge instead of maps. Its output
// is the same as planFDBMaps's.
func planFDBSorted(desired, installed []FDB, owned func(FDB) bool) []FDBOp {
	var replaces, deletes []FDBOp
	i, j := 0, 0
	for i < len(desired) || j < len(installed) {
		// The run of installed entries with the key at j.
		k := j
		for k < len(installed) && cmpFDBKey(installed[k], installed[j]) == 0 {
			k++
		}
		switch c := mergeSide(desired, installed, i, j, cmpFDBKey); {
		case c < 0:
			replaces = append(replaces, FDBOp{Kind: Replace, Entry: desired[i]})
			i++
		case c > 0:
			for _, r := range installed[j:k] {
				if owned(r) {
					deletes = append(deletes, FDBOp{Kind: Delete, Entry: r})
				}
			}
			j = k
		default:
			replaces, deletes = planFDBKey(desired[i], installed[j:k], replaces, deletes)
			i, j = i+1, k
		}
	}
	slices.SortFunc(replaces, cmpFDBOp)
	slices.SortFunc(deletes, cmpFDBOp)
	return append(replaces, deletes...)
}

// planFDBKey plans one wanted entry d against the remotes rs installed for
// its MAC (kernel order), appending to replaces and deletes.
func planFDBKey(d FDB, rs []FDB, replaces, deletes []FDBOp) ([]FDBOp, []FDBOp) {
	hasRemote := slices.ContainsFunc(rs, d.sameRemote)
	if !slices.Contains(rs, d) {
		op := FDBOp{Kind: Replace, Entry: d}
		if len(rs) > 0 {
			op.Prev = rs[0]
		}
		replaces = append(replaces, op)
	}
	for i, r := range rs {
		if r.sameRemote(d) {
			continue
		}
		if i == 0 && !hasRemote {
			// The replace rewrites this remote into the desired one.
			continue
		}
		// A second remote of a wanted MAC would get a copy of every
		// frame; it goes whoever added it.
		deletes = append(deletes, FDBOp{Kind: Delete, Entry: r})
	}
	return replaces, deletes
}

// cmpFDBOp is the order of PlanFDB's output within replaces and deletes.
func cmpFDBOp(a, b FDBOp) int {
	return cmp.Or(
		cmp.Compare(a.Entry.LinkIndex, b.Entry.LinkIndex),
		slices.Compare(a.Entry.MAC[:], b.Entry.MAC[:]),
		a.Entry.Dst.Compare(b.Entry.Dst),
		cmp.Compare(a.Entry.VNI, b.Entry.VNI),
	)
}

// planFDBMaps is PlanFDB for any input.
func planFDBMaps(desired, installed []FDB, owned func(FDB) bool) []FDBOp {
	want := make(map[fdbKey]FDB, len(desired))
	for _, d := range desired {
		want[fdbKey{d.LinkIndex, d.MAC}] = d
	}
	have := make(map[fdbKey][]FDB)
	for _, f := range installed {
		k := fdbKey{f.LinkIndex, f.MAC}
		have[k] = append(have[k], f)
	}
	var replaces, deletes []FDBOp
	for k, d := range want {
		replaces, deletes = planFDBKey(d, have[k], replaces, deletes)
	}
	for k, rs := range have {
		if _, ok := want[k]; ok {
			continue
		}
		for _, r := range rs {
			if owned(r) {
				deletes = append(deletes, FDBOp{Kind: Delete, Entry: r})
			}
		}
	}
	slices.SortFunc(replaces, cmpFDBOp)
	slices.SortFunc(deletes, cmpFDBOp)
	return append(replaces, deletes...)
}

// NeighOpError is a neighbour change the kernel refused.
type NeighOpError struct {
	Op  NeighOp
	Err error
}

func (e *NeighOpError) Error() string {
	verb := "replace"
	if e.Op.Kind == Delete {
		verb = "delete"
	}
	return fmt.Sprintf("%s neighbour %s: %v", verb, e.Op.Neigh, e.Err)
}

func (e *NeighOpError) Unwrap() error { return e.Err }

// FDBOpError is a forwarding-entry change the kernel refused.
type FDBOpError struct {
	Op  FDBOp
	Err error
}

func (e *FDBOpError) Error() string {
	verb := "replace"
	if e.Op.Kind == Delete {
		verb = "delete"
	}
	return fmt.Sprintf("%s fdb entry %s: %v", verb, e.Op.Entry, e.Err)
}

func (e *FDBOpError) Unwrap() error { return e.Err }

// NeighResult is what applying neighbour changes did.
type NeighResult struct {
	Done   []NeighOp
	Failed []*NeighOpError
}

// Err joins the failures; nil when there were none.
func (r NeighResult) Err() error {
	errs := make([]error, len(r.Failed))
	for i, e := range r.Failed {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// FDBResult is what applying forwarding-entry changes did.
type FDBResult struct {
	Done   []FDBOp
	Failed []*FDBOpError
}

// Err joins the failures; nil when there were none.
func (r FDBResult) Err() error {
	errs := make([]error, len(r.Failed))
	for i, e := range r.Failed {
		errs[i] = e
	}
	return errors.Join(errs...)
}
