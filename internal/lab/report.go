package lab

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// CheckKind says what a check proves.
type CheckKind int

const (
	// PodToPod: ICMP echo and a TCP connection from one pod to a pod on
	// another host; the server must see the client pod's own address.
	PodToPod CheckKind = iota
	// HostToPod: ICMP echo from a host to a pod on another host.
	HostToPod
	// PodToInternet: ICMP echo and TCP from a pod to the "internet"
	// host outside the cluster (--ip-masq labs); the server must see the
	// pod's host address, because weft masquerades traffic that leaves
	// the cluster network.
	PodToInternet
)

// Endpoint is one end of a check.
type Endpoint struct {
	Name string // h1p2 or h1
	Addr netip.Addr
}

// Check is the outcome of one probe between two endpoints.
type Check struct {
	Kind     CheckKind
	From, To Endpoint

	// Path is how the source host's kernel routes to To (see pathName):
	// "host-gw", "direct", "vxlan", "udp", or the route itself when it is
	// none of those.
	Path string

	RTT     time.Duration // ICMP echo round trip; meaningful when ICMPErr is nil
	ICMPErr error

	// SeenSource is the client address the TCP server in To reported;
	// PodToPod only.
	SeenSource netip.Addr
	TCPErr     error
	// Want is the source the server must see for PodToInternet: the
	// pod's host address.
	Want netip.Addr
}

// Family names the address family the check ran over: "IPv4" or "IPv6".
func (c Check) Family() string {
	if c.To.Addr.Is6() && !c.To.Addr.Is4In6() {
		return "IPv6"
	}
	return "IPv4"
}

// OK reports whether the check passed: the echo came back and, for pod
// pairs, the TCP server saw the client pod's own address (no NAT inside the
// cluster network).
func (c Check) OK() bool {
	if c.ICMPErr != nil {
		return false
	}
	switch c.Kind {
	case HostToPod:
		return true
	case PodToInternet:
		return c.TCPErr == nil && c.SeenSource == c.Want
	}
	return c.TCPErr == nil && c.SeenSource == c.From.Addr
}

// Problem describes why the check failed, or is empty.
func (c Check) Problem() string {
	var p []string
	if c.ICMPErr != nil {
		p = append(p, "icmp: "+c.ICMPErr.Error())
	}
	if c.Kind == PodToPod {
		switch {
		case c.TCPErr != nil:
			p = append(p, "tcp: "+c.TCPErr.Error())
		case c.SeenSource != c.From.Addr:
			p = append(p, fmt.Sprintf("tcp: server saw %s, not %s (source translated)", c.SeenSource, c.From.Addr))
		}
	}
	if c.Kind == PodToInternet {
		switch {
		case c.TCPErr != nil:
			p = append(p, "tcp: "+c.TCPErr.Error())
		case c.SeenSource != c.Want:
			p = append(p, fmt.Sprintf("tcp: server saw %s, not the host's %s (not masqueraded)", c.SeenSource, c.Want))
		}
	}
	return strings.Join(p, "; ")
}

// Result is what a demo run proved.
type Result struct {
	Checks  []Check
	Elapsed time.Duration // wall time of the whole run, teardown included
	// Overflow is set when the kernel's neighbour table refused entries
	// while the checks ran, which is then the cause of their failures.
	Overflow *NeighOverflow
}

// NeighOverflow is the kernel's neighbour table running full during the
// checks: its table_fulls counter rose. Every namespace of the machine
// shares that table, so the lab's probes time out for want of an ARP
// entry, however right the routes are.
type NeighOverflow struct {
	Table   string // arp_cache
	Sysctl  string // net.ipv4.neigh.default.gc_thresh3
	Limit   int64  // its value during the checks; 0 when unreadable
	Suggest int64  // a value that fits the lab
	Refused uint64 // how much table_fulls rose
}

// String names the cause and the fix in one line.
func (o NeighOverflow) String() string {
	limit := "?"
	if o.Limit > 0 {
		limit = fmt.Sprint(o.Limit)
	}
	return fmt.Sprintf("the kernel's neighbour table (%s) overflowed during the checks: it refused %d new entries "+
		"(table_fulls), %s = %s; raise it (sysctl -w %s=%d) or let the lab size it (--tune-neigh)",
		o.Table, o.Refused, o.Sysctl, limit, o.Sysctl, o.Suggest)
}

// Failed counts the checks that failed.
func (r Result) Failed() int {
	n := 0
	for _, c := range r.Checks {
		if !c.OK() {
			n++
		}
	}
	return n
}

// WriteReport prints the result table and the verdict lines. When the
// neighbour table overflowed, the failed checks are not listed one by one
// (hundreds of identical timeouts) but counted under that one cause.
func WriteReport(w io.Writer, r Result) error {
	checks := r.Checks
	if r.Overflow != nil {
		checks = slices.DeleteFunc(slices.Clone(checks), func(c Check) bool { return !c.OK() })
	}
	if err := WriteTable(w, checks); err != nil {
		return err
	}
	if r.Overflow != nil && r.Failed() > 0 {
		fmt.Fprintf(w, "(%d failed checks not listed)\n", r.Failed())
	}
	fmt.Fprintf(w, "\n%s\n%s\n", r.Summary(), r.Paths())
	switch {
	case r.Overflow != nil && r.Failed() > 0:
		fmt.Fprintf(w, "%d of %d checks failed because %s\n", r.Failed(), len(r.Checks), r.Overflow)
	case r.Overflow != nil:
		fmt.Fprintf(w, "every check passed on a retry, but %s\n", r.Overflow)
	}
	return nil
}

// Err is nil when every check passed, else the count of failures and,
// when it is known, their cause.
func (r Result) Err() error {
	if r.OK() {
		return nil
	}
	if len(r.Checks) == 0 {
		return errors.New("no checks ran")
	}
	if r.Overflow != nil {
		return fmt.Errorf("%d of %d checks failed: neighbour table overflow (%s = %d)",
			r.Failed(), len(r.Checks), r.Overflow.Sysctl, r.Overflow.Limit)
	}
	return fmt.Errorf("%d of %d checks failed", r.Failed(), len(r.Checks))
}

// OK reports whether there were checks and all of them passed.
func (r Result) OK() bool {
	if len(r.Checks) == 0 {
		return false
	}
	for _, c := range r.Checks {
		if !c.OK() {
			return false
		}
	}
	return true
}

// Summary is the one-line verdict, e.g.
// "24/24 pod pairs ok, source IPs preserved; 12/12 host→pod ok". With
// checks over IPv6, each family gets its own, prefixed with its name:
// "IPv4: 24/24 pod pairs ok, ...; IPv6: 0/24 pod pairs ok; 0/12 host→pod ok".
func (r Result) Summary() string {
	fams := r.families()
	if len(fams) == 1 && fams[0] == "IPv4" {
		return familySummary(r.Checks)
	}
	parts := make([]string, len(fams))
	for i, f := range fams {
		parts[i] = f + ": " + familySummary(slices.DeleteFunc(slices.Clone(r.Checks), func(c Check) bool { return c.Family() != f }))
	}
	return strings.Join(parts, "; ")
}

// families lists the families the checks ran over, IPv4 first.
func (r Result) families() []string {
	var v4, v6 bool
	for _, c := range r.Checks {
		v6 = v6 || c.Family() == "IPv6"
		v4 = v4 || c.Family() == "IPv4"
	}
	var fams []string
	if v4 || !v6 {
		fams = append(fams, "IPv4")
	}
	if v6 {
		fams = append(fams, "IPv6")
	}
	return fams
}

// familySummary is Summary's verdict on checks of one family.
func familySummary(checks []Check) string {
	var pairs, pairsOK, translated, hosts, hostsOK, out, outOK int
	for _, c := range checks {
		switch c.Kind {
		case PodToPod:
			pairs++
			if c.OK() {
				pairsOK++
			}
			if c.ICMPErr == nil && c.TCPErr == nil && c.SeenSource != c.From.Addr {
				translated++
			}
		case HostToPod:
			hosts++
			if c.OK() {
				hostsOK++
			}
		case PodToInternet:
			out++
			if c.OK() {
				outOK++
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d/%d pod pairs ok", pairsOK, pairs)
	switch {
	case translated > 0:
		fmt.Fprintf(&b, ", %d saw a translated source", translated)
	case pairs > 0 && pairsOK == pairs:
		b.WriteString(", source IPs preserved")
	}
	fmt.Fprintf(&b, "; %d/%d host→pod ok", hostsOK, hosts)
	if out > 0 {
		fmt.Fprintf(&b, "; %d/%d pod→internet masqueraded as their host", outOK, out)
	}
	return b.String()
}

// Paths counts the pod pairs by the path they took, e.g.
// "pod pairs by path: direct 8, vxlan 16"; with checks over IPv6, by
// family and path: "pod pairs by path: IPv4 host-gw 24, IPv6 host-gw 24".
func (r Result) Paths() string {
	fams := r.families()
	byFamily := len(fams) > 1 || fams[0] != "IPv4"
	count := map[string]int{}
	var order []string
	for _, c := range r.Checks {
		if c.Kind != PodToPod {
			continue
		}
		p := c.Path
		if p == "" {
			p = "unknown"
		}
		if byFamily {
			p = c.Family() + " " + p
		}
		if count[p] == 0 {
			order = append(order, p)
		}
		count[p]++
	}
	slices.Sort(order)
	parts := make([]string, len(order))
	for i, p := range order {
		parts[i] = fmt.Sprintf("%s %d", p, count[p])
	}
	return "pod pairs by path: " + strings.Join(parts, ", ")
}

// WriteTable prints one row per check. When any check ran over IPv6, a
// FAMILY column says which family each row is.
func WriteTable(w io.Writer, checks []Check) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	withFamily := slices.ContainsFunc(checks, func(c Check) bool { return c.Family() == "IPv6" })
	fam := func(c Check) string {
		if withFamily {
			return c.Family() + "\t"
		}
		return ""
	}
	head := "FROM\tSOURCE\tTO\tDESTINATION\tPATH\tICMP RTT\tTCP SEEN-SOURCE\tVERDICT"
	if withFamily {
		head = "FAMILY\t" + head
	}
	fmt.Fprintln(tw, head)
	for _, c := range checks {
		rtt := "no reply"
		if c.ICMPErr == nil {
			rtt = formatRTT(c.RTT)
		}
		seen := "-"
		if c.Kind == PodToPod || c.Kind == PodToInternet {
			switch {
			case c.TCPErr != nil:
				seen = "failed"
			case c.SeenSource.IsValid():
				seen = c.SeenSource.String()
			}
		}
		verdict := "ok"
		if !c.OK() {
			verdict = "FAIL: " + c.Problem()
		}
		path := c.Path
		if path == "" {
			path = "-"
		}
		fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			fam(c), c.From.Name, c.From.Addr, c.To.Name, c.To.Addr, path, rtt, seen, verdict)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write result table: %w", err)
	}
	return nil
}

func formatRTT(d time.Duration) string {
	if d < time.Millisecond {
		return fmt.Sprintf("%dµs", d.Microseconds())
	}
	return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
}

// formatSince renders an elapsed time for progress lines: "(0.4s)".
func formatSince(start time.Time) string {
	return fmt.Sprintf("(%.1fs)", time.Since(start).Seconds())
}

// routeHop is what a host's kernel answers for `ip route get <pod address>`:
// the device a packet leaves by and its next hop.
type routeHop struct {
	Dev     string     // flannel.1, eth0, flannel0
	DevKind string     // the link's kind: vxlan, tuntap, veth, ...
	Via     netip.Addr // the gateway; invalid when there is none
}

// pathName names the way a packet from a host to a pod on a peer host
// leaves, from the host's route to it: out of a VXLAN device is "vxlan",
// out of a TUN device "udp" (flannel0) or "wireguard" (flannel-wg), and straight to the peer's own
// address "host-gw" for that backend and "direct" otherwise (vxlan's
// DirectRouting). Anything else is shown as the route itself, so a wrong
// path is visible in the table.
func pathName(backend string, hop routeHop, peer netip.Addr) string {
	switch {
	case hop.DevKind == "vxlan":
		return "vxlan"
	case hop.DevKind == "tuntap" && backend == "wireguard":
		return "wireguard" // flannel-wg, a TUN device the agent's WireGuard reads
	case hop.DevKind == "tuntap":
		return "udp"
	case hop.Via.IsValid() && hop.Via == peer && backend == "host-gw":
		return "host-gw"
	case hop.Via.IsValid() && hop.Via == peer:
		return "direct"
	case hop.Via.IsValid():
		return "via " + hop.Via.String() + " dev " + hop.Dev
	case hop.Dev != "":
		return "dev " + hop.Dev
	}
	return "no route"
}

// addrsText names the valid addresses of ps (an address of each family),
// "10.4.7.21" or "10.4.7.21 fd00:10:4:7::21".
func addrsText(ps ...netip.Prefix) string {
	var out []string
	for _, p := range ps {
		if p.Addr().IsValid() {
			out = append(out, p.Addr().String())
		}
	}
	return strings.Join(out, " ")
}

// prefixesText names the valid prefixes of ps, as addrsText does.
func prefixesText(ps ...netip.Prefix) string {
	var out []string
	for _, p := range ps {
		if p.IsValid() {
			out = append(out, p.String())
		}
	}
	return strings.Join(out, " ")
}
