// Package kernel makes the kernel's routing table match a desired set of
// routes, the way every route-programming backend needs it: compute a plan
// from what is installed (pure, in this file), perform it over a netlink
// handle bound to one namespace, retry dumps the kernel interrupted, and
// report changes and deletions so a backend can repair within milliseconds.
//
// A backend owns part of the table. It says which part with an ownership
// predicate instead of by a protocol number, because routes left by flannel
// (or by an older weft) carry none, and they must still be cleaned up once
// the backend has seen a complete set of peers. Routes weft installs do carry
// ProtoWeft so that `ip route show proto 87` lists them.
package kernel

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// ProtoWeft is the routing protocol number (rtm_protocol, "proto" in
// iproute2) on every route weft installs. 87 is ASCII 'W' and is not among
// the numbers iproute2's rt_protos or the kernel's rtnetlink.h assign. To
// see the name instead of the number, add "87 weft" to
// /etc/iproute2/rt_protos.d/weft.conf.
const ProtoWeft = 87

// Route is one unicast route in the main table, as a comparable value: two
// routes are the same kernel entry, down to the attributes weft sets, iff
// they are ==.
type Route struct {
	Dst       netip.Prefix // always masked
	Gw        netip.Addr   // zero: directly connected
	LinkIndex int          // 0: none given
	OnLink    bool         // RTNH_F_ONLINK: the gateway needs no connected route
	Metric    int          // RTA_PRIORITY
	Proto     uint8        // rtm_protocol
}

// key is what the kernel identifies a main-table route by, as far as weft
// sets it: installing a route with the same key replaces the old one.
type key struct {
	dst    netip.Prefix
	metric int
}

func (r Route) key() key { return key{r.Dst.Masked(), r.Metric} }

var protoNames = map[uint8]string{
	2:         "kernel",
	3:         "boot",
	4:         "static",
	16:        "dhcp",
	ProtoWeft: "weft",
}

// String renders r in `ip route` form, with "if<N>" for the device because
// a Route carries only the index (iproute2 does the same for an index it
// cannot name).
func (r Route) String() string { return r.Format(nil) }

// Format renders r in `ip route` form, naming devices from names:
//
//	10.5.3.0/24 via 192.168.1.3 dev eth0 proto weft
func (r Route) Format(names map[int]string) string {
	var b strings.Builder
	if r.Dst.Bits() == 0 {
		b.WriteString("default")
	} else {
		b.WriteString(r.Dst.String())
	}
	if r.Gw.IsValid() {
		b.WriteString(" via ")
		b.WriteString(r.Gw.String())
	}
	if r.LinkIndex != 0 {
		b.WriteString(" dev " + linkName(r.LinkIndex, names))
	}
	if r.Proto != 0 {
		b.WriteString(" proto " + protoName(r.Proto))
	}
	if r.Metric != 0 {
		b.WriteString(" metric " + strconv.Itoa(r.Metric))
	}
	if r.OnLink {
		b.WriteString(" onlink")
	}
	return b.String()
}

// OpKind is what an Op does to the kernel.
type OpKind int

const (
	// Replace installs Route, overwriting whatever route has its key
	// (ip route replace).
	Replace OpKind = iota
	// Delete removes exactly Route (ip route del).
	Delete
)

// Op is one change to the routing table.
type Op struct {
	Kind  OpKind
	Route Route
	// Prev is the installed route that a Replace overwrites, when the
	// kernel had one with the same key; the zero Route otherwise (or when
	// the old entry is not a plain unicast route).
	Prev Route
}

// Format renders o as the arguments of an `ip route` command.
func (o Op) Format(names map[int]string) string {
	if o.Kind == Delete {
		return "del " + o.Route.Format(names)
	}
	return "replace " + o.Route.Format(names)
}

func (o Op) String() string { return o.Format(nil) }

// PlanRoutes returns the changes that turn installed into desired, touching
// only routes that owned accepts, plus whatever occupies a desired route's
// key (a desired route wins over any other at its destination and metric,
// as flannel's host-gw does).
//
// installed is what the kernel holds (any routes; unowned ones are left
// alone). desired must not hold two routes with the same Dst and Metric; the
// later one wins. Replaces come first, so new peers become reachable before
// stale entries go; both are sorted by destination, which makes the plan
// stable for tests and logs.
//
// It works on sorted copies of both lists and merges them, rather than
// indexing them in maps: backends plan against thousands of routes several
// times a second, and their lists usually come sorted already.
func PlanRoutes(desired, installed []Route, owned func(Route) bool) []Op {
	want := sortedByKey(desired)
	// Of several desired routes with one key, the later one wins: keep the
	// last of each run (the sort is stable).
	w := 0
	for i := range want {
		if i+1 < len(want) && want[i+1].key() == want[i].key() {
			continue
		}
		want[w] = want[i]
		w++
	}
	want = want[:w]
	have := sortedByKey(installed)

	var replaces, deletes []Op
	i, j := 0, 0
	for i < len(want) || j < len(have) {
		// The run of installed routes at the next key (in their order).
		var k key
		switch {
		case j == len(have):
			k = want[i].key()
		case i == len(want):
			k = have[j].key()
		case cmpKey(want[i].key(), have[j].key()) <= 0:
			k = want[i].key()
		default:
			k = have[j].key()
		}
		end := j
		for end < len(have) && have[end].key() == k {
			end++
		}
		rs := have[j:end]
		j = end
		keep := -1
		if i < len(want) && want[i].key() == k {
			d := want[i]
			i++
			keep = slices.Index(rs, d)
			if keep < 0 {
				op := Op{Kind: Replace, Route: d}
				if len(rs) > 0 {
					op.Prev = rs[0]
					keep = 0
				}
				replaces = append(replaces, op)
			}
		}
		// More than one entry per key exists only after `ip route append`;
		// drop our extra ones so the desired route is the only one we own.
		// With no desired route at the key, keep is -1 and every owned
		// entry goes.
		for n, r := range rs {
			if n != keep && owned(r) {
				deletes = append(deletes, Op{Kind: Delete, Route: r})
			}
		}
	}
	sortOps(replaces)
	sortOps(deletes)
	return append(replaces, deletes...)
}

// sortedByKey returns rs with masked destinations, stably sorted by key.
func sortedByKey(rs []Route) []Route {
	out := make([]Route, len(rs))
	for i, r := range rs {
		r.Dst = r.Dst.Masked()
		out[i] = r
	}
	byKey := func(a, b Route) int { return cmpKey(a.key(), b.key()) }
	if !slices.IsSortedFunc(out, byKey) {
		slices.SortStableFunc(out, byKey)
	}
	return out
}

func cmpKey(a, b key) int {
	return cmp.Or(a.dst.Addr().Compare(b.dst.Addr()), cmp.Compare(a.dst.Bits(), b.dst.Bits()), cmp.Compare(a.metric, b.metric))
}

func sortOps(ops []Op) {
	slices.SortFunc(ops, func(a, b Op) int {
		return cmp.Or(
			a.Route.Dst.Addr().Compare(b.Route.Dst.Addr()),
			cmp.Compare(a.Route.Dst.Bits(), b.Route.Dst.Bits()),
			cmp.Compare(a.Route.Metric, b.Route.Metric),
			a.Route.Gw.Compare(b.Route.Gw),
			cmp.Compare(a.Route.LinkIndex, b.Route.LinkIndex),
		)
	})
}

// OpError is a change the kernel refused.
type OpError struct {
	Op  Op
	Err error
}

func (e *OpError) Error() string {
	verb := "replace"
	if e.Op.Kind == Delete {
		verb = "delete"
	}
	return fmt.Sprintf("%s route %s: %v", verb, e.Op.Route, e.Err)
}

func (e *OpError) Unwrap() error { return e.Err }

// Result is what a sync did: the changes that took effect and the ones the
// kernel refused. A failed change never stops the others.
type Result struct {
	Done   []Op
	Failed []*OpError
}

// Err joins the failures; nil when there were none.
func (r Result) Err() error {
	errs := make([]error, len(r.Failed))
	for i, e := range r.Failed {
		errs[i] = e
	}
	return errors.Join(errs...)
}
