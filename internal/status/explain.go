package status

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// ErrNoRoute is wrapped by Prober.Lookup when the kernel has no route to
// the destination.
var ErrNoRoute = errors.New("no route to host")

// Path is the route the kernel picks for one destination (ip route get).
type Path struct {
	Dst netip.Addr
	Gw  netip.Addr // zero: directly connected
	Dev string
	Src netip.Addr // zero when the kernel names none
}

// String renders p as `ip route get` does.
func (p Path) String() string {
	var b strings.Builder
	b.WriteString(p.Dst.String())
	if p.Gw.IsValid() {
		b.WriteString(" via " + p.Gw.String())
	}
	if p.Dev != "" {
		b.WriteString(" dev " + p.Dev)
	}
	if p.Src.IsValid() {
		b.WriteString(" src " + p.Src.String())
	}
	return b.String()
}

// Prober sends --check's probes from this host. Calls may run
// concurrently.
type Prober interface {
	// Lookup asks the kernel which route traffic to dst takes (ip route
	// get); the error wraps ErrNoRoute when none does.
	Lookup(dst netip.Addr) (Path, error)
	// Echo sends ICMP echo requests to dst until one is answered or its
	// short timeout passes, and returns the round trip. size 0 sends small
	// requests; otherwise each request is an IPv4 packet of exactly size
	// bytes with don't-fragment set.
	Echo(ctx context.Context, dst netip.Addr, size int) (time.Duration, error)
	// PortUnreachable sends one datagram to dst that no receiver acts on
	// and reports whether ICMP port unreachable came back within a short
	// wait: true means nothing listens on that port there.
	PortUnreachable(ctx context.Context, dst netip.AddrPort) (bool, error)
}

// probeTarget is what --check probes for one peer; Build fills it for every
// peer this host should be able to reach.
type probeTarget struct {
	subnet   netip.Prefix // the peer's subnet of the target's family
	addr     netip.Addr   // the peer's pod gateway: its subnet's first address
	path     Want         // the route traffic to addr must take
	publicIP netip.Addr
	port     int // the backend's UDP port on the peer; 0: none to probe
	mtu      int // the pods' MTU, for the full-size echo; 0: skip it
	// portUser and gatewayHint are the backend's words for what receives
	// on port and for what else to check when the pod gateway is silent.
	portUser    string
	gatewayHint string
	// known is how many of the row's problems, found before its entries
	// were compared, concern every family (an expired lease); own are the
	// indexes of the problems with this family's entries.
	known int
	own   []int
}

// family is "IPv4" or "IPv6", of the target's addresses.
func (t probeTarget) family() string { return familyName(t.addr) }

// familyWords are the names explanations use for the target's family.
type familyWords struct {
	publicIP   string // the lease field of the peer's public address
	forwarding string // the sysctl that lets the peer forward to its pods
}

func (t probeTarget) words() familyWords {
	if t.addr.Is4() {
		return familyWords{"PublicIP", "net.ipv4.ip_forward"}
	}
	return familyWords{"PublicIPv6", "net.ipv6.conf.all.forwarding"}
}

// probeResult is what the probes of one peer returned.
type probeResult struct {
	path       Path
	pathErr    error
	rtt        time.Duration
	echoErr    error
	fullTried  bool
	fullErr    error
	pubTried   bool
	pubErr     error
	portTried  bool
	portClosed bool
	portErr    error
}

// probe runs the probes for one peer, each only when the earlier ones leave
// a question it answers: the full-size echo when a small one passed, the
// PublicIP when the pod gateway is silent, the port when the PublicIP
// answers.
func probe(ctx context.Context, p Prober, t probeTarget) probeResult {
	var res probeResult
	res.path, res.pathErr = p.Lookup(t.addr)
	res.rtt, res.echoErr = p.Echo(ctx, t.addr, 0)
	if res.echoErr == nil {
		if t.mtu > 0 {
			res.fullTried = true
			_, res.fullErr = p.Echo(ctx, t.addr, t.mtu)
		}
		return res
	}
	res.pubTried = true
	_, res.pubErr = p.Echo(ctx, t.publicIP, 0)
	if res.pubErr == nil && t.port > 0 {
		res.portTried = true
		res.portClosed, res.portErr = p.PortUnreachable(ctx, netip.AddrPortFrom(t.publicIP, uint16(t.port)))
	}
	return res
}

// maxProbes bounds the peers probed at once.
const maxProbes = 16

// Probe probes every peer of r that this host should reach (--check),
// over each family the backend carries to it, and adds what the probes
// found to the rows.
func Probe(ctx context.Context, r *Report, p Prober) {
	r.Checked = true
	results := make([][]probeResult, len(r.Leases))
	sem := make(chan struct{}, maxProbes)
	var wg sync.WaitGroup
	for i := range r.Leases {
		row := &r.Leases[i]
		if row.Self {
			continue
		}
		results[i] = make([]probeResult, len(row.targets))
		for j, t := range row.targets {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				results[i][j] = probe(ctx, p, t)
			})
		}
	}
	wg.Wait()
	for i := range r.Leases {
		row := &r.Leases[i]
		if row.Self {
			continue
		}
		for j := range row.targets {
			explain(row, j, results[i][j])
		}
	}
	finish(r)
}

// explain records res, the probes of row.targets[j], in row.Check (or
// CheckIPv6 for a dual-stack lease's IPv6 side) and adds a problem for
// each failure the row's problems about that family do not already
// explain. When the row has a target per family, or the target is IPv6,
// each problem's message starts with the family. Pure.
func explain(row *Row, j int, res probeResult) {
	t := row.targets[j]
	c := &Check{Family: t.family(), Target: t.addr.String()}
	if j == 0 {
		row.Check = c
	} else {
		row.CheckIPv6 = c
	}
	prefix := ""
	if len(row.targets) > 1 || t.addr.Is6() {
		prefix = c.Family + ": "
	}
	// The problems this family's probes weigh: the row's common ones,
	// those of this family's entries, and those explain adds.
	mine := slices.Clone(t.own)
	has := func(code string) int {
		for _, i := range mine {
			if row.Problems[i].Code == code {
				return i
			}
		}
		return -1
	}
	add := func(code, format string, args ...any) {
		mine = append(mine, len(row.Problems))
		row.Problems = append(row.Problems, Problem{Code: code, Message: prefix + fmt.Sprintf(format, args...)})
	}

	switch {
	case errors.Is(res.pathErr, ErrNoRoute):
		c.NoRoute = true
		if has(CodeNoRoute) < 0 {
			add(CodeNoRoute, "no route to %s: the agent has not programmed it; %s", t.subnet, hint)
		}
	case res.pathErr != nil:
		c.Error = res.pathErr.Error()
		add(CodeProbeFailed, "cannot look up the route to %s: %v", t.addr, res.pathErr)
	default:
		c.Path = res.path.String()
		if !pathMatches(res.path, t.path) {
			if i := has(CodeNoRoute); i >= 0 {
				row.Problems[i].Message += fmt.Sprintf(". Meanwhile traffic to %s leaves by `%s`", t.addr, c.Path)
			} else if has(CodeWrongRoute) < 0 {
				add(CodeWrongRoute, "traffic to %s leaves by `%s`, not by the peer's route `%s`: a more specific route or a policy rule (ip rule) takes precedence; `ip route get %s` shows which",
					t.addr, c.Path, t.path, t.addr)
			}
		}
	}

	// Problems found so far, in the kernel or on the route, explain a
	// silent peer.
	known := t.known > 0 || len(mine) > 0
	if res.echoErr == nil {
		c.Reply = true
		ms := float64(res.rtt.Microseconds()) / 1000
		c.RTTms = &ms
		if res.fullTried {
			ok := res.fullErr == nil
			c.FullSizeMTU, c.FullSizeReply = t.mtu, &ok
			if !ok {
				add(CodeMTU, "%s answers small pings but not a full-size one (%d bytes, the pods' MTU) with don't-fragment set (%v): something on the path has a smaller MTU than the pods use, so their large packets are lost while small ones pass. Compare the MTUs of the devices on the path (`ip link`) and FLANNEL_MTU on both hosts",
					t.addr, t.mtu, res.fullErr)
			}
		}
		return
	}

	found := false
	if res.pubTried {
		ok := res.pubErr == nil
		c.PublicIPReply = &ok
		if !ok {
			found = true
			add(CodePublicIPDown, "%s, the peer's %s, does not answer ping either: the host is down, or the network between the hosts drops traffic; check `ip route get %s` and any firewall between them",
				t.publicIP, t.words().publicIP, t.publicIP)
		}
	}
	if res.portTried {
		c.Port = t.port
		switch {
		case res.portErr != nil:
			c.Error = res.portErr.Error()
		case res.portClosed:
			closed := true
			c.PortUnreachable = &closed
			found = true
			add(CodeUDPPortClosed, "%s answers ping but refuses UDP port %d (ICMP port unreachable): %s. Is weft running on that host with the same Backend config (VNI, Port)?",
				t.publicIP, t.port, portMeaning(t.portUser))
		default:
			open := false
			c.PortUnreachable = &open
		}
	}
	if !found && !known {
		add(CodeGatewayNoAnswer, "%s answers ping, but %s, its pod gateway on cni0, does not (%v): cni0 appears with the first pod on that host; if pods run there, check its %s and FORWARD chain, and run `weft status` on that host%s",
			t.publicIP, t.addr, res.echoErr, t.words().forwarding, t.gatewayHint)
	}
}

func portMeaning(user string) string {
	if user == "" {
		return "nothing receives on that port there"
	}
	return "no " + user + " receives on that port there"
}

// pathMatches reports whether the kernel's choice p is the route w.
func pathMatches(p Path, w Want) bool {
	if !w.Dst.IsValid() {
		return true
	}
	return p.Gw == w.Gw && (w.Dev == "" || p.Dev == w.Dev)
}
