package status

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/kernel"
)

// Link is one network device of the snapshot.
type Link struct {
	Name  string
	Index int
	MTU   int
	MAC   kernel.MAC // zero for devices without one (TUN)
	Up    bool       // IFF_UP
	Addrs []netip.Prefix
}

// Kernel is a snapshot of what this host's kernel holds, as far as status
// looks: every link, the main table's routes, and the neighbour and FDB
// entries of the overlay device.
type Kernel struct {
	Links  []Link
	Routes []kernel.Route
	Neighs []kernel.Neigh
	FDB    []kernel.FDB
}

// Link returns the device named name.
func (k *Kernel) Link(name string) (Link, bool) {
	for _, l := range k.Links {
		if l.Name == name {
			return l, true
		}
	}
	return Link{}, false
}

func (k *Kernel) names() map[int]string {
	m := make(map[int]string, len(k.Links))
	for _, l := range k.Links {
		m[l.Index] = l.Name
	}
	return m
}

func (k *Kernel) linkName(idx int) string {
	for _, l := range k.Links {
		if l.Index == idx {
			return l.Name
		}
	}
	return ""
}

// Compare says whether k holds w, and what holds its place if not. Pure.
func Compare(w Want, k *Kernel) Entry {
	e := Entry{Kind: w.Kind, Want: w.String(), want: w}
	switch w.Kind {
	case KindRoute:
		compareRoute(&e, w, k)
	case KindNeigh:
		compareNeigh(&e, w, k)
	case KindFDB:
		compareFDB(&e, w, k)
	case KindDevice:
		compareDevice(&e, w, k)
	case KindAddr:
		compareAddr(&e, w, k)
	default:
		e.State = StateMissing
	}
	return e
}

// compareRoute looks at the route the kernel uses for w.Dst: of the main
// table's routes to exactly that prefix, the one with the lowest metric.
func compareRoute(e *Entry, w Want, k *Kernel) {
	var cands []kernel.Route
	for _, r := range k.Routes {
		if r.Dst.Masked() == w.Dst.Masked() {
			cands = append(cands, r)
		}
	}
	if len(cands) == 0 {
		e.State = StateMissing
		return
	}
	slices.SortStableFunc(cands, func(a, b kernel.Route) int { return cmp.Compare(a.Metric, b.Metric) })
	r := cands[0]
	e.Have = r.Format(k.names())
	e.haveRoute = &r
	ok := r.Gw == w.Gw &&
		(w.Dev == "" || k.linkName(r.LinkIndex) == w.Dev) &&
		(!w.OnLink || r.OnLink)
	e.State = StateWrong
	if ok {
		e.State = StateOK
	}
}

func compareNeigh(e *Entry, w Want, k *Kernel) {
	dev, ok := k.Link(w.Dev)
	if !ok {
		e.State = StateMissing
		return
	}
	for _, n := range k.Neighs {
		if n.LinkIndex != dev.Index || n.IP != w.IP {
			continue
		}
		e.Have = neighText(n, w.Dev)
		e.haveNeigh = &n
		e.State = StateWrong
		if n.MAC == w.MAC && n.Permanent {
			e.State = StateOK
		}
		return
	}
	e.State = StateMissing
}

func neighText(n kernel.Neigh, dev string) string {
	s := n.IP.String() + " dev " + dev
	if !n.MAC.IsZero() {
		s += " lladdr " + n.MAC.String()
	}
	if n.Permanent {
		s += " PERMANENT"
	}
	return s
}

// compareFDB accepts the entry when the MAC has a permanent remote at the
// wanted address. Otherwise what holds its place is the MAC's remotes, or,
// when the MAC has none, the entries sending to the wanted address under
// another MAC (a stale VtepMAC).
func compareFDB(e *Entry, w Want, k *Kernel) {
	dev, ok := k.Link(w.Dev)
	if !ok {
		e.State = StateMissing
		return
	}
	var sameMAC, sameDst []kernel.FDB
	for _, f := range k.FDB {
		if f.LinkIndex != dev.Index {
			continue
		}
		if f.MAC == w.MAC {
			if f.Dst == w.IP && f.Permanent {
				e.State = StateOK
				e.Have = fdbText(f, w.Dev)
				return
			}
			sameMAC = append(sameMAC, f)
		} else if f.Dst == w.IP {
			sameDst = append(sameDst, f)
		}
	}
	have := sameMAC
	if len(have) == 0 {
		have = sameDst
	}
	if len(have) == 0 {
		e.State = StateMissing
		return
	}
	texts := make([]string, len(have))
	for i, f := range have {
		texts[i] = fdbText(f, w.Dev)
	}
	e.State = StateWrong
	e.Have = strings.Join(texts, "; ")
	e.haveFDB = have
}

func fdbText(f kernel.FDB, dev string) string {
	s := f.MAC.String() + " dev " + dev + " dst " + f.Dst.String() + " self"
	if f.Permanent {
		s += " permanent"
	}
	return s
}

func compareDevice(e *Entry, w Want, k *Kernel) {
	l, ok := k.Link(w.Dev)
	if !ok {
		e.State = StateMissing
		return
	}
	e.Have = backend.FormatDevice(l.Name, l.MTU, l.MAC, l.Up)
	e.haveLink = &l
	e.State = StateWrong
	if (w.MTU == 0 || l.MTU == w.MTU) && (w.MAC.IsZero() || l.MAC == w.MAC) && l.Up {
		e.State = StateOK
	}
}

func compareAddr(e *Entry, w Want, k *Kernel) {
	l, ok := k.Link(w.Dev)
	if !ok {
		e.State = StateMissing
		return
	}
	var have []string
	for _, a := range l.Addrs {
		if a == w.Dst {
			e.State = StateOK
			e.Have = a.String() + " dev " + l.Name
			return
		}
		// Of the wanted family, and not the link-local every IPv6
		// device has.
		if a.Addr().Is4() == w.Dst.Addr().Is4() && !a.Addr().IsLinkLocalUnicast() {
			have = append(have, a.String()+" dev "+l.Name)
		}
	}
	e.State = StateMissing
	e.Have = strings.Join(have, "; ")
}
