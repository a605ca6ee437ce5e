package hostfacts

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/weftnet/weft/internal/kernel"
	"github.com/weftnet/weft/internal/kernel/neightable"
	"github.com/weftnet/weft/internal/lease"
)

// Margin is the entries counted beyond peers and pods: the host's own
// neighbours outside the fabric (its default gateway, DNS and NTP servers,
// the etcd or API server hosts, other machines on the segment) and peers
// that left but whose entries the kernel has not collected yet.
const Margin = 16

// MaxPods caps the local pods counted for one subnet. A subnet larger than
// flannel's default /24 is chosen for address planning far more often than
// to run more pods, and kubelet's maxPods (110 by default) is rarely raised
// past 250; counting a /16's 65533 addresses would only produce advice
// nobody should follow.
const MaxPods = 256

// Need is how many entries one family's neighbour table must hold for this
// host when it talks to every peer and every local pod at once, which is
// the case a fabric must plan for: entries are made on demand, so a quiet
// host needs fewer, but a busy one (a service mesh, monitoring that
// scrapes every node, a broadcast-heavy app) needs them all.
type Need struct {
	// NextHops are the distinct underlay neighbours traffic to peers goes
	// to: the peer itself when its PublicIP is on a connected segment, else
	// the gateway that leads there. Every backend sends to the peer's
	// PublicIP over the underlay (host-gw routes through it, vxlan and udp
	// encapsulate to it), so each needs the same ones. vxlan's entries on
	// flannel.<VNI> are PERMANENT, which the kernel (4.19 and later)
	// exempts from the thresholds, so they are not counted.
	NextHops int
	// Pods are the addresses the own subnet gives pods on cni0, each of
	// which the host resolves when it talks to that pod: every usable
	// address but the gateway, at most MaxPods. The agent is not told when
	// pods come and go, and the subnet is the bound it can rely on.
	Pods int
	// Margin is the package's Margin.
	Margin int
}

// Total is the entries needed.
func (n Need) Total() int64 { return int64(n.NextHops + n.Pods + n.Margin) }

// Parts shows what the total is made of.
func (n Need) Parts() string {
	return fmt.Sprintf("%d peer next hops + %d pod addresses + %d margin", n.NextHops, n.Pods, n.Margin)
}

// NeedInput is what NeedFor counts from, for one family: the IPv4 table
// (ARP) is filled by the peers' PublicIPs and the pods' IPv4 addresses,
// the IPv6 one (NDP) by the peers' PublicIPv6s and the pods' IPv6
// addresses, and each has its own thresholds.
type NeedInput struct {
	// Family is the table counted for; the zero value is IPv4.
	Family neightable.Family
	// Own is this host's subnet of that family; invalid when unknown, and
	// then no pods are counted.
	Own         netip.Prefix
	OwnPublicIP netip.Addr
	// Leases are every lease in the store, the own one included.
	Leases []lease.Lease
	// LeaseTypes are the backend types of the leases the backend programs
	// (its descriptor's); a lease of another type gets no traffic. Nil
	// counts every lease.
	LeaseTypes []string
	// Network is the cluster network of that family (Network or
	// IPv6Network); routes inside it are the fabric's own and never lead
	// to a PublicIP.
	Network netip.Prefix
	// Routes are the main routing table. Without them (RoutesKnown false)
	// every peer is counted as its own next hop, which is the case of a
	// flat segment and the most a host can need.
	Routes      []kernel.Route
	RoutesKnown bool
}

// NeedFor counts the entries one host needs in one family's table. Pure.
func NeedFor(in NeedInput) Need {
	v6 := in.Family == neightable.IPv6
	n := Need{Margin: Margin, Pods: podAddrs(in.Own)}
	var routes []kernel.Route
	if in.RoutesKnown {
		for _, r := range in.Routes {
			if r.Dst.Addr().Is6() != v6 {
				continue
			}
			if in.Network.IsValid() && r.Dst.Bits() >= in.Network.Bits() && in.Network.Contains(r.Dst.Addr()) {
				continue
			}
			routes = append(routes, r)
		}
	}
	hops := make(map[netip.Addr]struct{})
	for _, l := range in.Leases {
		ip, subnet := l.Attrs.PublicIP, l.Subnet
		if v6 {
			ip, subnet = l.Attrs.PublicIPv6, l.IPv6Subnet
		}
		if !ip.IsValid() || !subnet.IsValid() || ip == in.OwnPublicIP || subnet == in.Own {
			continue // a peer without this family sends nothing in it
		}
		if in.LeaseTypes != nil && !slices.Contains(in.LeaseTypes, l.Attrs.BackendType) {
			continue
		}
		hop := ip
		if in.RoutesKnown {
			var ok bool
			if hop, ok = NextHop(routes, ip); !ok {
				continue // unreachable: nothing is resolved for it
			}
		}
		hops[hop] = struct{}{}
	}
	n.NextHops = len(hops)
	return n
}

// NextHop is the neighbour the kernel resolves to send to ip: ip itself
// when the longest matching route has no gateway, else the gateway. Among
// routes of equal length the lowest metric wins, as in the kernel's main
// table.
func NextHop(routes []kernel.Route, ip netip.Addr) (netip.Addr, bool) {
	best := -1
	for i, r := range routes {
		if !r.Dst.Contains(ip) {
			continue
		}
		if best < 0 || r.Dst.Bits() > routes[best].Dst.Bits() ||
			(r.Dst.Bits() == routes[best].Dst.Bits() && r.Metric < routes[best].Metric) {
			best = i
		}
	}
	if best < 0 {
		return netip.Addr{}, false
	}
	if gw := routes[best].Gw; gw.IsValid() {
		return gw, true
	}
	return ip, true
}

// podAddrs is the addresses host-local hands out from the subnet (all but
// the network, broadcast and gateway addresses), at most MaxPods. An IPv6
// subnet (a /64 by flannel's default) always reaches the cap.
func podAddrs(p netip.Prefix) int {
	if !p.IsValid() {
		return 0
	}
	hostBits := p.Addr().BitLen() - p.Bits()
	if hostBits < 2 {
		return 0
	}
	if hostBits > 16 {
		return MaxPods
	}
	return min(1<<hostBits-3, MaxPods)
}

// NeighFindings compares what the host needs with the table's thresholds:
// above gc_thresh3 is an error (the kernel refuses entries past it and
// drops their packets), above gc_thresh2 a warning (the kernel collects
// entries idle for 5 s, so busy neighbours are resolved again and again).
// The suggestion is neightable.Fit's, which never lowers a value.
func NeighFindings(f neightable.Family, need Need, t neightable.Thresholds) []Finding {
	total := need.Total()
	fit := neightable.Fit(t, total)
	switch {
	case total > t.GC3:
		return []Finding{{
			Code: CodeNeighThresh3, Severity: Error, Sysctl: f.Sysctl(3),
			Current: strconv.FormatInt(t.GC3, 10), Suggested: strconv.FormatInt(fit.GC3, 10),
			Message: fmt.Sprintf("this host needs %d %s neighbour entries (%s), more than %s=%d, the most the kernel's table holds: once pods talk to that many neighbours the kernel refuses new entries (\"neighbor table overflow\") and drops their packets",
				total, f, need.Parts(), f.Sysctl(3), t.GC3),
			Fix: FitCommand(f, t, fit),
		}}
	case total > t.GC2:
		return []Finding{{
			Code: CodeNeighThresh2, Severity: Warn, Sysctl: f.Sysctl(2),
			Current: strconv.FormatInt(t.GC2, 10), Suggested: strconv.FormatInt(fit.GC2, 10),
			Message: fmt.Sprintf("this host needs %d %s neighbour entries (%s), more than %s=%d: above it the kernel collects entries idle for 5 s, so busy neighbours are resolved again and again, and at gc_thresh3=%d it drops packets",
				total, f, need.Parts(), f.Sysctl(2), t.GC2, t.GC3),
			Fix: FitCommand(f, t, fit),
		}}
	}
	return nil
}

// TableFullFinding reports that the kernel refused n neighbour entries
// since the last look because the table was full: traffic was dropped
// just now. The suggestion fits both what this host needs and what the
// table held, since the table is shared by every network namespace and
// every other user of the host.
func TableFullFinding(f neightable.Family, n uint64, t neightable.Thresholds, need int64, s neightable.Stats) Finding {
	fit := neightable.Fit(t, max(need, int64(s.Entries)))
	fd := Finding{
		Code: CodeNeighTableFull, Severity: Error, Sysctl: f.Sysctl(3),
		Current: strconv.FormatInt(t.GC3, 10), Suggested: strconv.FormatInt(fit.GC3, 10),
		Message: fmt.Sprintf("the kernel dropped neighbour entries: the %s table was full %d times since the last check (%d entries now, %s=%d); packets to the neighbours it refused were dropped (\"neighbor table overflow!\" in the kernel log)",
			f, n, s.Entries, f.Sysctl(3), t.GC3),
		Fix: FitCommand(f, t, fit),
	}
	if fit == t {
		// The overflow came from outside this host's needs and has
		// passed, or the thresholds were raised since: say where to look
		// rather than suggest nothing.
		fd.Suggested = ""
		fd.Fix = fmt.Sprintf("find what filled the table (`ip -s neigh show`, in every network namespace) or raise %s", f.Sysctl(3))
	}
	return fd
}

// FitCommand is the sysctl command that moves the thresholds from cur to
// fit, naming only those that change.
func FitCommand(f neightable.Family, cur, fit neightable.Thresholds) string {
	var parts []string
	for i, p := range [][2]int64{{cur.GC1, fit.GC1}, {cur.GC2, fit.GC2}, {cur.GC3, fit.GC3}} {
		if p[1] != p[0] {
			parts = append(parts, fmt.Sprintf("%s=%d", f.Sysctl(i+1), p[1]))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "sysctl -w " + strings.Join(parts, " ")
}

// ErrWouldLower is returned by Raise for a target below a current value.
var ErrWouldLower = errors.New("would lower a threshold")

// Raise sets the family's thresholds from cur to to, highest first so
// that the three stay ordered at every step, and writes only those that
// change. It refuses to lower any.
func (r Reader) Raise(f neightable.Family, cur, to neightable.Thresholds) error {
	steps := []struct {
		n        int
		old, new int64
	}{{3, cur.GC3, to.GC3}, {2, cur.GC2, to.GC2}, {1, cur.GC1, to.GC1}}
	for _, s := range steps {
		if s.new < s.old {
			return fmt.Errorf("raise %s from %d to %d: %w", f.Sysctl(s.n), s.old, s.new, ErrWouldLower)
		}
	}
	for _, s := range steps {
		if s.new == s.old {
			continue
		}
		if err := r.Sysctl.SetInt(f.Sysctl(s.n), s.new); err != nil {
			return fmt.Errorf("raise the %s neighbour table's thresholds: %w", f, err)
		}
	}
	return nil
}
