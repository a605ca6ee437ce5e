package lab

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	vns "github.com/vishvananda/netns"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/weftnet/weft/internal/netns"
)

// Probe timing: an echo is resent every icmpInterval until icmpTimeout, so
// a first packet lost to ARP resolution does not fail the check.
const (
	icmpTimeout  = 3 * time.Second
	icmpInterval = 250 * time.Millisecond
	tcpTimeout   = 3 * time.Second
	// probeWorkers sources probe at once; each keeps up to icmpWindow
	// echoes and tcpWindow connections in flight.
	probeWorkers = 8
	icmpWindow   = 128
	tcpWindow    = 16
)

// probeTarget is a pod with its address, as the checks know it.
type probeTarget struct {
	Pod  Pod
	Addr netip.Addr
}

// echoServers is a TCP server in every pod that answers each connection
// with the client address it saw, one line, and closes.
type echoServers struct {
	listeners []net.Listener
	wg        sync.WaitGroup
}

// startEchoServers listens on <pod IP>:ProbePort inside every pod. A
// socket belongs to the namespace it was created in for its whole life, so
// the accept loops run on ordinary goroutines.
func startEchoServers(pods []probeTarget) (*echoServers, error) {
	s := &echoServers{}
	for _, p := range pods {
		var ln net.Listener
		err := netns.Do(p.Pod.NS, func() error {
			var err error
			ln, err = net.Listen("tcp", netip.AddrPortFrom(p.Addr, ProbePort).String())
			return err
		})
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("start echo server in %s: %w", p.Pod.Name, err)
		}
		s.listeners = append(s.listeners, ln)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				_ = c.SetDeadline(time.Now().Add(tcpTimeout))
				fmt.Fprintf(c, "%s\n", c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap())
				c.Close()
			}
		}()
	}
	return s, nil
}

// Close stops every server and waits for the accept loops to end.
func (s *echoServers) Close() {
	for _, ln := range s.listeners {
		ln.Close()
	}
	s.wg.Wait()
}

// runChecks probes every ordered pair of pods on different hosts (ICMP and
// TCP) and every host to every pod on another host (ICMP), a few at a
// time, and returns the checks in a stable order: pod pairs, then hosts.
// A pod of a dual lab is two targets, one per address: pairs are checked
// within a family, each over its own addresses.
func runChecks(ctx context.Context, topo Topology, pods []probeTarget) ([]Check, error) {
	paths, err := routePaths(topo, pods)
	if err != nil {
		return nil, err
	}
	srv, err := startEchoServers(pods)
	if err != nil {
		return nil, err
	}
	defer srv.Close()

	type job struct {
		ns    string
		check Check
	}
	var jobs []job
	for _, from := range pods {
		for _, to := range pods {
			if from.Pod.Host == to.Pod.Host || from.Addr.Is4() != to.Addr.Is4() {
				continue
			}
			jobs = append(jobs, job{from.Pod.NS, Check{
				Kind: PodToPod,
				From: Endpoint{Name: from.Pod.Name, Addr: from.Addr},
				To:   Endpoint{Name: to.Pod.Name, Addr: to.Addr},
				Path: paths[hostPair{from.Pod.Host, to.Pod.Host, to.Addr.Is4()}],
			}})
		}
	}
	for _, h := range topo.Hosts {
		for _, to := range pods {
			src := hostAddrFor(h, to.Addr)
			if to.Pod.Host == h.Name || !src.IsValid() {
				continue
			}
			jobs = append(jobs, job{h.NS, Check{
				Kind: HostToPod,
				From: Endpoint{Name: h.Name, Addr: src},
				To:   Endpoint{Name: to.Pod.Name, Addr: to.Addr},
				Path: paths[hostPair{h.Name, to.Pod.Host, to.Addr.Is4()}],
			}})
		}
	}

	if in := topo.Internet; in.NS != "" {
		var servers []probeTarget
		for _, a := range []netip.Prefix{in.Addr, in.Addr6} {
			if a.IsValid() {
				servers = append(servers, probeTarget{Pod: Pod{Name: "internet", NS: in.NS}, Addr: a.Addr()})
			}
		}
		inet, err := startEchoServers(servers)
		if err != nil {
			return nil, err
		}
		defer inet.Close()
		for _, from := range pods {
			h, _ := topo.Host(from.Pod.Host)
			for _, dst := range servers {
				if dst.Addr.Is4() != from.Addr.Is4() {
					continue
				}
				jobs = append(jobs, job{from.Pod.NS, Check{
					Kind: PodToInternet,
					From: Endpoint{Name: from.Pod.Name, Addr: from.Addr},
					To:   Endpoint{Name: "internet", Addr: dst.Addr},
					Path: "masq",
					Want: hostAddrFor(h, dst.Addr),
				}})
			}
		}
	}

	// The checks run source by source: each source namespace sends all
	// its echoes through one ICMP socket and makes its TCP connections a
	// window at a time, rather than paying for a socket and two namespace
	// switches per probe. A few sources run at once.
	checks := make([]Check, len(jobs))
	bySource := map[string][]int{}
	var sources []string
	for i, j := range jobs {
		if _, ok := bySource[j.ns]; !ok {
			sources = append(sources, j.ns)
		}
		bySource[j.ns] = append(bySource[j.ns], i)
		checks[i] = j.check
	}
	next := make(chan string)
	var wg sync.WaitGroup
	for range min(probeWorkers, len(sources)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ns := range next {
				probeSource(ctx, ns, checks, bySource[ns])
			}
		}()
	}
	for _, ns := range sources {
		select {
		case next <- ns:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("run checks: %w", err)
	}
	return checks, nil
}

// probeSource runs the checks idx (all from namespace ns): an ICMP echo
// to each destination, then a TCP connection to each pod or internet
// destination that reports the source address it saw.
func probeSource(ctx context.Context, ns string, checks []Check, idx []int) {
	dsts := make([]netip.Addr, len(idx))
	for k, i := range idx {
		dsts[k] = checks[i].To.Addr
	}
	rtts, errs := pingMany(ctx, ns, dsts)
	for k, i := range idx {
		checks[i].RTT, checks[i].ICMPErr = rtts[k], errs[k]
	}

	target, err := vns.GetFromName(ns)
	if err != nil {
		for _, i := range idx {
			checks[i].TCPErr = fmt.Errorf("open netns %s: %w", ns, err)
		}
		return
	}
	defer target.Close()
	sem := make(chan struct{}, tcpWindow)
	var wg sync.WaitGroup
	for _, i := range idx {
		if c := checks[i].Kind; c != PodToPod && c != PodToInternet {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			checks[i].SeenSource, checks[i].TCPErr = seenSourceIn(ctx, &target, ns, checks[i].To.Addr)
		}()
	}
	wg.Wait()
}

// hostPair is an ordered pair of hosts (by name) and a family (IPv4 or
// not), the key of routePaths.
type hostPair struct {
	from, to string
	v4       bool
}

// hostAddrFor is h's underlay address of dst's family; invalid when h has
// none.
func hostAddrFor(h Host, dst netip.Addr) netip.Addr {
	if dst.Is4() {
		return h.Addr.Addr()
	}
	return h.Addr6.Addr()
}

// routePaths names, for every ordered pair of hosts and each family, the
// path the first host's kernel takes to the second one's pods (see
// pathName). A pod's packets are forwarded by its host on the same route,
// so one lookup per host pair and family, to one of the peer's pods,
// covers them all.
func routePaths(topo Topology, pods []probeTarget) (map[hostPair]string, error) {
	type hostFamily struct {
		host string
		v4   bool
	}
	podOf := map[hostFamily]netip.Addr{} // one of the host's pods, per family
	for _, p := range pods {
		k := hostFamily{p.Pod.Host, p.Addr.Is4()}
		if _, ok := podOf[k]; !ok {
			podOf[k] = p.Addr
		}
	}
	paths := map[hostPair]string{}
	for _, h := range topo.Hosts {
		nh, err := netns.Handle(h.NS)
		if err != nil {
			return nil, fmt.Errorf("look up routes on %s: %w", h.Name, err)
		}
		for _, peer := range topo.Hosts {
			for _, v4 := range []bool{true, false} {
				dst, ok := podOf[hostFamily{peer.Name, v4}]
				if peer.Name == h.Name || !ok {
					continue
				}
				paths[hostPair{h.Name, peer.Name, v4}] = pathName(topo.Spec.Backend, lookupHop(nh, dst), hostAddrFor(peer, dst))
			}
		}
		nh.Close()
	}
	return paths, nil
}

// lookupHop is `ip route get dst` with the device's name and kind; a
// failed lookup yields the zero routeHop ("no route").
func lookupHop(nh *netlink.Handle, dst netip.Addr) routeHop {
	rs, err := nh.RouteGet(dst.AsSlice())
	if err != nil || len(rs) == 0 {
		return routeHop{}
	}
	var hop routeHop
	if gw, ok := netip.AddrFromSlice(rs[0].Gw); ok {
		hop.Via = gw.Unmap()
	}
	if link, err := nh.LinkByIndex(rs[0].LinkIndex); err == nil {
		hop.Dev, hop.DevKind = link.Attrs().Name, link.Type()
	}
	return hop
}

// pingFrom sends ICMP echo requests from inside namespace ns to dst and
// returns the round trip of the first matching reply (see pingMany).
func pingFrom(ctx context.Context, ns string, dst netip.Addr) (time.Duration, error) {
	rtts, errs := pingMany(ctx, ns, []netip.Addr{dst})
	return rtts[0], errs[0]
}

// pingMany pings every address of dsts from inside namespace ns and
// returns, per address, the round trip of the first matching reply or why
// there was none. An echo is resent every icmpInterval until icmpTimeout
// after the first one, so a first packet lost to ARP resolution does not
// fail the check; at most icmpWindow addresses are in flight at once, so
// that the replies fit the socket's buffer.
//
// It uses one raw ICMP socket, which root may open in any namespace,
// because a fresh namespace's ping_group_range allows no unprivileged ICMP
// sockets and the ping binary may not be installed. A raw socket sees
// every ICMP packet delivered to the namespace, so a reply counts only
// when its identifier is this call's, its sequence number names an
// address, and it comes from that very address. The echo's payload
// carries its send time, so a late reply to an earlier attempt still
// measures its own round trip.
func pingMany(ctx context.Context, ns string, dsts []netip.Addr) ([]time.Duration, []error) {
	rtts := make([]time.Duration, len(dsts))
	errs := make([]error, len(dsts))
	// One socket per family, the IPv4 destinations first.
	for _, v4 := range []bool{true, false} {
		var idx []int
		var fam []netip.Addr
		for i, d := range dsts {
			if d.Is4() == v4 {
				idx = append(idx, i)
				fam = append(fam, d)
			}
		}
		if len(fam) == 0 {
			continue
		}
		r, e := pingFamily(ctx, ns, fam)
		for k, i := range idx {
			rtts[i], errs[i] = r[k], e[k]
		}
	}
	return rtts, errs
}

// pingFamily is pingMany for destinations of one family.
func pingFamily(ctx context.Context, ns string, dsts []netip.Addr) ([]time.Duration, []error) {
	v4 := dsts[0].Is4()
	network, wildcard, proto := "ip4:icmp", "0.0.0.0", 1 // 1: ICMP
	echoType, replyType := icmp.Type(ipv4.ICMPTypeEcho), icmp.Type(ipv4.ICMPTypeEchoReply)
	if !v4 {
		// The kernel fills in an ICMPv6 raw socket's checksums.
		network, wildcard, proto = "ip6:ipv6-icmp", "::", 58 // 58: ICMPv6
		echoType, replyType = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
	}
	rtts := make([]time.Duration, len(dsts))
	errs := make([]error, len(dsts))
	fail := func(err error) ([]time.Duration, []error) {
		for i := range errs {
			if errs[i] == nil && rtts[i] == 0 {
				errs[i] = err
			}
		}
		return rtts, errs
	}
	if len(dsts) > 0xffff {
		return fail(fmt.Errorf("%d destinations: more than ICMP sequence numbers", len(dsts)))
	}
	var conn *icmp.PacketConn
	err := netns.Do(ns, func() error {
		var err error
		conn, err = icmp.ListenPacket(network, wildcard)
		return err
	})
	if err != nil {
		return fail(fmt.Errorf("open ICMP socket in netns %s: %w", ns, err))
	}
	defer conn.Close()

	id := rand.IntN(0xffff) + 1
	type flight struct {
		first, last time.Time
		sendErr     error
	}
	inflight := map[int]*flight{}
	nextNew := 0
	send := func(i int, f *flight) {
		now := time.Now()
		data := binary.BigEndian.AppendUint64([]byte("weft-lab"), uint64(now.UnixNano()))
		msg := icmp.Message{Type: echoType, Body: &icmp.Echo{ID: id, Seq: i + 1, Data: data}}
		b, err := msg.Marshal(nil)
		if err == nil {
			// No route (yet) is worth retrying like a lost packet.
			_, err = conn.WriteTo(b, &net.IPAddr{IP: dsts[i].AsSlice()})
		}
		f.last, f.sendErr = now, err
	}
	buf := make([]byte, 1500)
	for nextNew < len(dsts) || len(inflight) > 0 {
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		now := time.Now()
		for i, f := range inflight {
			switch {
			case now.Sub(f.first) >= icmpTimeout:
				delete(inflight, i)
				errs[i] = fmt.Errorf("no echo reply from %s within %v", dsts[i], icmpTimeout)
				if f.sendErr != nil {
					errs[i] = fmt.Errorf("send echo to %s: %w", dsts[i], f.sendErr)
				}
			case now.Sub(f.last) >= icmpInterval:
				send(i, f)
			}
		}
		for nextNew < len(dsts) && len(inflight) < icmpWindow {
			f := &flight{first: now}
			inflight[nextNew] = f
			send(nextNew, f)
			nextNew++
		}
		if len(inflight) == 0 {
			continue
		}
		// Read until the next resend is due, then look again.
		wait := now.Add(icmpInterval)
		for _, f := range inflight {
			if d := f.last.Add(icmpInterval); d.Before(wait) {
				wait = d
			}
		}
		_ = conn.SetReadDeadline(wait)
		for len(inflight) > 0 {
			n, peer, err := conn.ReadFrom(buf)
			if err != nil {
				break // time to resend
			}
			got := time.Now()
			from, ok := peer.(*net.IPAddr)
			if !ok {
				continue
			}
			m, err := icmp.ParseMessage(proto, buf[:n])
			if err != nil || m.Type != replyType {
				continue
			}
			echo, ok := m.Body.(*icmp.Echo)
			if !ok || echo.ID != id || echo.Seq < 1 || echo.Seq > len(dsts) {
				continue
			}
			i := echo.Seq - 1
			if _, ok := inflight[i]; !ok || !from.IP.Equal(dsts[i].AsSlice()) || len(echo.Data) != 16 {
				continue
			}
			sent := time.Unix(0, int64(binary.BigEndian.Uint64(echo.Data[8:])))
			rtts[i] = got.Sub(sent)
			delete(inflight, i)
		}
	}
	return rtts, errs
}

// seenSourceFrom connects from inside namespace ns to the echo server at
// dst and returns the client address the server reports having seen.
func seenSourceFrom(ctx context.Context, ns string, dst netip.Addr) (netip.Addr, error) {
	target, err := vns.GetFromName(ns)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("open netns %s: %w", ns, err)
	}
	defer target.Close()
	return seenSourceIn(ctx, &target, ns, dst)
}

// seenSourceIn is seenSourceFrom in a namespace the caller holds open.
func seenSourceIn(ctx context.Context, target *vns.NsHandle, ns string, dst netip.Addr) (netip.Addr, error) {
	ctx, cancel := context.WithTimeout(ctx, tcpTimeout)
	defer cancel()
	var conn net.Conn
	err := netns.DoHandle(target, func() error {
		var err error
		var d net.Dialer
		conn, err = d.DialContext(ctx, "tcp", netip.AddrPortFrom(dst, ProbePort).String())
		return err
	})
	if err != nil {
		return netip.Addr{}, fmt.Errorf("connect to %s:%d: %w", dst, ProbePort, err)
	}
	defer conn.Close()
	dl, _ := ctx.Deadline()
	_ = conn.SetDeadline(dl)
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil && !errors.Is(err, net.ErrClosed) && line == "" {
		return netip.Addr{}, fmt.Errorf("read from %s:%d: %w", dst, ProbePort, err)
	}
	a, err := netip.ParseAddr(strings.TrimSpace(line))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("server %s:%d answered %q: %w", dst, ProbePort, line, err)
	}
	return a, nil
}
