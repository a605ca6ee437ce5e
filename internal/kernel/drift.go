package kernel

// Drift: whether an entry the kernel reports added, changed or deleted
// calls for a repair against a backend's plan, and what is wrong with it,
// in words for logs. Pure, so that the rule is table-tested without a
// kernel; the backends' watches call it for every notification.
//
// The rule is the one the planners apply: a notified entry matters only
// at a key the plan holds (destination and metric, link and IP, link and
// MAC), and only when it differs from the planned entry there. So the
// kernel echoing a backend's own write of the plan calls for nothing, and
// programming thousands of peers does not make the backend reconcile
// thousands of times; entries at keys the plan does not hold (strays) are
// left to the periodic reconcile.

import (
	"net/netip"
	"strconv"
	"strings"
)

// RouteDrift says why the route event e calls for a repair against plan
// (the planned route of each destination), "" when it calls for none. A
// route added or changed at a planned destination calls for one when it
// is not the planned route: PlanRoutes replaces it when it has the
// planned route's metric, and deletes it when it has another and owned
// accepts it. A deleted route calls for one when it had the planned
// route's key, which is then empty (the kernel reports what it deleted,
// and that may already have been a wrong route). names names links.
func RouteDrift(plan map[netip.Prefix]Route, e RouteEvent, owned func(Route) bool, names map[int]string) string {
	have := e.Route
	want, ok := plan[have.Dst.Masked()]
	switch {
	case !ok:
		return ""
	case e.Deleted:
		if have.Metric != want.Metric {
			return ""
		}
		return "route " + have.Format(names) + " deleted"
	case have == want:
		return ""
	case have.Metric != want.Metric:
		if !owned(have) {
			return ""
		}
		return "route " + have.Format(names) + " added beside the planned " + want.Format(names)
	}
	return RouteChange(want, have, names)
}

// RouteChange says how have, a route at want's destination, differs from
// want: "route 10.244.2.0/24 had via 192.168.70.50 proto boot, want via
// 192.168.70.2 proto weft".
func RouteChange(want, have Route, names map[int]string) string {
	var d diff
	d.add("via", addrOr(have.Gw, "none"), addrOr(want.Gw, "none"))
	d.add("dev", linkName(have.LinkIndex, names), linkName(want.LinkIndex, names))
	d.add("proto", protoName(have.Proto), protoName(want.Proto))
	d.add("metric", strconv.Itoa(have.Metric), strconv.Itoa(want.Metric))
	d.add("onlink", yesNo(have.OnLink), yesNo(want.OnLink))
	return "route " + want.Dst.String() + d.String()
}

// NeighDrift says why the neighbour event e (not an FDB one) calls for a
// repair against plan (the planned neighbour of each IP, all on one
// link), "" when it calls for none: the neighbour of a planned IP on the
// planned link was deleted, or added or changed to anything but the
// planned entry. The kernel reports a deleted neighbour in state FAILED
// whatever it was before, so a deletion is matched by its IP alone.
func NeighDrift(plan map[netip.Addr]Neigh, e NeighEvent, names map[int]string) string {
	want, ok := plan[e.IP]
	switch {
	case e.FDB || !ok || e.LinkIndex != want.LinkIndex:
		return ""
	case e.Deleted:
		return "neighbour " + e.IP.String() + " on " + linkName(e.LinkIndex, names) + " deleted"
	case e.Neigh() == want:
		return ""
	}
	return NeighChange(want, e.Neigh(), names)
}

// NeighChange says how have, a neighbour at want's IP, differs from want:
// "neighbour 10.244.2.0 on flannel.1 had lladdr 0e:00:00:00:00:99, want
// lladdr 0a:00:00:00:00:02".
func NeighChange(want, have Neigh, names map[int]string) string {
	var d diff
	d.add("lladdr", have.MAC.String(), want.MAC.String())
	d.add("nud", permanence(have.Permanent), permanence(want.Permanent))
	return "neighbour " + want.IP.String() + " on " + linkName(want.LinkIndex, names) + d.String()
}

// FDBDrift says why the FDB event e calls for a repair against plan (the
// planned remote of each MAC, all on one link), "" when it calls for none:
// the entry of a planned MAC on the planned link was deleted, or a remote
// of it was added or changed to anything but the planned one.
func FDBDrift(plan map[MAC]FDB, e NeighEvent, names map[int]string) string {
	want, ok := plan[e.MAC]
	switch {
	case !e.FDB || !ok || e.LinkIndex != want.LinkIndex:
		return ""
	case e.Deleted:
		return "fdb entry " + e.MAC.String() + " dst " + e.IP.String() + " on " + linkName(e.LinkIndex, names) + " deleted"
	case e.Entry() == want:
		return ""
	}
	return FDBChange(want, e.Entry(), names)
}

// FDBChange says how have, a remote of want's MAC, differs from want:
// "fdb entry 0a:00:00:00:00:02 on flannel.1 had dst 192.168.70.99, want
// dst 192.168.70.2".
func FDBChange(want, have FDB, names map[int]string) string {
	var d diff
	d.add("dst", addrOr(have.Dst, "none"), addrOr(want.Dst, "none"))
	d.add("vni", vniName(have.VNI), vniName(want.VNI))
	d.add("state", permanence(have.Permanent), permanence(want.Permanent))
	return "fdb entry " + want.MAC.String() + " on " + linkName(want.LinkIndex, names) + d.String()
}

// diff collects the attributes that differ, as " had A x B y, want A x' B
// y'" ("" when none does).
type diff struct{ had, want []string }

func (d *diff) add(attr, had, want string) {
	if had != want {
		d.had = append(d.had, attr+" "+had)
		d.want = append(d.want, attr+" "+want)
	}
}

func (d diff) String() string {
	if len(d.had) == 0 {
		return " is as planned"
	}
	return " had " + strings.Join(d.had, " ") + ", want " + strings.Join(d.want, " ")
}

func addrOr(a netip.Addr, none string) string {
	if !a.IsValid() {
		return none
	}
	return a.String()
}

func linkName(index int, names map[int]string) string {
	if n, ok := names[index]; ok {
		return n
	}
	return "if" + strconv.Itoa(index)
}

func protoName(p uint8) string {
	if n, ok := protoNames[p]; ok {
		return n
	}
	return strconv.Itoa(int(p))
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func permanence(p bool) string {
	if p {
		return "permanent"
	}
	return "not-permanent"
}

func vniName(v int) string {
	if v == 0 {
		return "device's"
	}
	return strconv.Itoa(v)
}

// RouteTrigger names the repair a drifted route event calls for, for the
// repair loop's logs and metrics: "route deleted" or "route changed".
func RouteTrigger(e RouteEvent) string {
	if e.Deleted {
		return "route deleted"
	}
	return "route changed"
}
