package lab

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"

	"github.com/vishvananda/netlink"
	vns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/kernel"
	"github.com/weftnet/weft/internal/netns"
)

// buildUnderlay creates the underlay namespace with its switch:
//
//	ip netns add <prefix>-ul
//	ip -n <prefix>-ul link add sw0 type bridge
//	ip -n <prefix>-ul addr add 10.4.7.12/24 dev sw0
//	ip -n <prefix>-ul link set sw0 up
func buildUnderlay(u Underlay) error {
	if err := netns.Create(u.NS); err != nil {
		return fmt.Errorf("build underlay: %w", err)
	}
	h, err := netns.Handle(u.NS)
	if err != nil {
		return fmt.Errorf("build underlay: %w", err)
	}
	defer h.Close()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: u.Bridge}}
	if err := h.LinkAdd(br); err != nil {
		return fmt.Errorf("add bridge %s in netns %s: %w", u.Bridge, u.NS, err)
	}
	if err := addAddrs(h, br, u.NS, u.Addr, u.Addr6); err != nil {
		return err
	}
	if err := h.LinkSetUp(br); err != nil {
		return fmt.Errorf("set %s up in netns %s: %w", u.Bridge, u.NS, err)
	}
	return nil
}

// buildSegments adds what a lab of several segments has beyond the
// underlay's sw0: the other segments' switches, and the router with one
// leg on each switch; the underlay namespace (etcd's machine, on segment
// 1) gets its default route through the router. For segments 1 and 2:
//
//	ip -n <prefix>-ul link add sw1 type bridge
//	ip -n <prefix>-ul link set sw1 up
//	ip netns add <prefix>-rt
//	ip -n <prefix>-ul link add rt-s1 type veth peer name seg1 netns <prefix>-rt
//	ip -n <prefix>-ul link set rt-s1 master sw0 up
//	ip -n <prefix>-rt addr add 10.4.7.1/24 dev seg1
//	ip -n <prefix>-rt link set seg1 up
//	(the same for rt-s2, sw1, seg2, 10.4.8.1/24)
//	ip netns exec <prefix>-rt sysctl -w net.ipv4.ip_forward=1
//	ip -n <prefix>-ul route add default via 10.4.7.1
//
// The other switches carry no address: were the underlay namespace on
// every segment, it would be the path between them instead of the router.
func buildSegments(t Topology) error {
	if t.Router.NS == "" {
		return nil
	}
	u := t.Underlay
	ul, err := netns.Handle(u.NS)
	if err != nil {
		return fmt.Errorf("build segments: %w", err)
	}
	defer ul.Close()
	for _, sg := range t.Segments {
		if sg.Bridge == u.Bridge {
			continue
		}
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: sg.Bridge}}
		if err := ul.LinkAdd(br); err != nil {
			return fmt.Errorf("add bridge %s of segment %d in netns %s: %w", sg.Bridge, sg.Index, u.NS, err)
		}
		if err := ul.LinkSetUp(br); err != nil {
			return fmt.Errorf("set %s up in netns %s: %w", sg.Bridge, u.NS, err)
		}
	}

	rt := t.Router
	if err := netns.Create(rt.NS); err != nil {
		return fmt.Errorf("build router: %w", err)
	}
	for _, leg := range rt.Legs {
		if err := wire(u.NS, leg.Bridge, leg.Wire, rt.NS, leg.Iface, leg.Addr, leg.Addr6); err != nil {
			return fmt.Errorf("build router leg on segment %d: %w", leg.Segment, err)
		}
	}
	if err := setForwarding(rt.NS, t.Spec); err != nil {
		return fmt.Errorf("build router: %w", err)
	}
	if err := addDefaultRoutes(u.NS, u.Gateway, u.Gateway6); err != nil {
		return fmt.Errorf("build segments: %w", err)
	}
	return nil
}

// buildHost creates a host namespace and wires it to its segment's
// switch. The veth pair is created inside the underlay namespace with its
// peer placed straight into the host namespace, so it never exists in the
// machine's root namespace, not even for a moment:
//
//	ip netns add <prefix>-h1
//	ip -n <prefix>-ul link add ve-h1 type veth peer name eth0 netns <prefix>-h1
//	ip -n <prefix>-ul link set ve-h1 master sw0 up
//	ip -n <prefix>-h1 addr add 10.4.7.21/24 dev eth0
//	ip -n <prefix>-h1 link set eth0 up
//	ip netns exec <prefix>-h1 sysctl -w net.ipv4.ip_forward=1
//
// and, with several segments, `ip -n <prefix>-h1 route add default via
// 10.4.7.1` (its segment's router leg). A dual lab adds
// `ip -n <prefix>-h1 addr add fd00:10:4:7::21/64 dev eth0 nodad` and
// net.ipv6.conf.all.forwarding=1 (and the IPv6 default route); an IPv6
// lab has only those.
//
// Forwarding is what every Kubernetes node has (kubeadm refuses to join
// without it); a fresh namespace starts with it off.
func buildHost(s Spec, u Underlay, host Host) error {
	if err := netns.Create(host.NS); err != nil {
		return fmt.Errorf("build host %s: %w", host.Name, err)
	}
	if err := wire(u.NS, host.Bridge, host.Wire, host.NS, host.Iface, host.Addr, host.Addr6); err != nil {
		return fmt.Errorf("build host %s: %w", host.Name, err)
	}
	if err := setForwarding(host.NS, s); err != nil {
		return fmt.Errorf("build host %s: %w", host.Name, err)
	}
	if err := addDefaultRoutes(host.NS, host.Gateway, host.Gateway6); err != nil {
		return fmt.Errorf("build host %s: %w", host.Name, err)
	}
	return nil
}

// setForwarding turns on forwarding in ns for each family of the lab.
func setForwarding(ns string, s Spec) error {
	if s.HasIPv4() {
		if err := setSysctl(ns, "net/ipv4/ip_forward", "1"); err != nil {
			return err
		}
	}
	if s.HasIPv6() {
		return setSysctl(ns, "net/ipv6/conf/all/forwarding", "1")
	}
	return nil
}

// addAddrs adds each valid address of addrs to link in namespace ns (by
// handle h). IPv6 ones skip duplicate address detection (nodad): the lab
// plans every address, so none can be a duplicate, and a tentative
// address could not be bound for the second or so DAD takes.
func addAddrs(h *netlink.Handle, link netlink.Link, ns string, addrs ...netip.Prefix) error {
	for _, a := range addrs {
		if !a.IsValid() {
			continue
		}
		na := &netlink.Addr{IPNet: kernel.IPNet(a)}
		if a.Addr().Is6() {
			na.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(link, na); err != nil {
			return fmt.Errorf("add address %s to %s in netns %s: %w", a, link.Attrs().Name, ns, err)
		}
	}
	return nil
}

// wire connects namespace ns to switch bridge in the underlay namespace
// ulNS: a veth pair created in the underlay with its end wireName on the
// switch and its peer, iface in ns, up with the valid ones of addrs.
func wire(ulNS, bridge, wireName, ns, iface string, addrs ...netip.Prefix) error {
	peerNS, err := vns.GetFromName(ns)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", ns, err)
	}
	defer peerNS.Close()

	ul, err := netns.Handle(ulNS)
	if err != nil {
		return err
	}
	defer ul.Close()
	br, err := ul.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("find %s in netns %s: %w", bridge, ulNS, err)
	}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: wireName, MasterIndex: br.Attrs().Index},
		PeerName:      iface,
		PeerNamespace: netlink.NsFd(int(peerNS)),
	}
	if err := ul.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth %s (peer %s in netns %s) in netns %s: %w", wireName, iface, ns, ulNS, err)
	}
	w, err := ul.LinkByName(wireName)
	if err != nil {
		return fmt.Errorf("find %s in netns %s: %w", wireName, ulNS, err)
	}
	if w.Attrs().MasterIndex != br.Attrs().Index {
		if err := ul.LinkSetMaster(w, br); err != nil {
			return fmt.Errorf("attach %s to %s in netns %s: %w", wireName, bridge, ulNS, err)
		}
	}
	if err := ul.LinkSetUp(w); err != nil {
		return fmt.Errorf("set %s up in netns %s: %w", wireName, ulNS, err)
	}

	h, err := netns.Handle(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	eth, err := h.LinkByName(iface)
	if err != nil {
		return fmt.Errorf("find %s in netns %s: %w", iface, ns, err)
	}
	if err := addAddrs(h, eth, ns, addrs...); err != nil {
		return err
	}
	if err := h.LinkSetUp(eth); err != nil {
		return fmt.Errorf("set %s up in netns %s: %w", iface, ns, err)
	}
	return nil
}

// addDefaultRoutes adds `default via gw` in namespace ns for each valid
// gateway of gws (one per family).
func addDefaultRoutes(ns string, gws ...netip.Addr) error {
	h, err := netns.Handle(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	for _, gw := range gws {
		if !gw.IsValid() {
			continue
		}
		any := netip.IPv4Unspecified()
		if gw.Is6() {
			any = netip.IPv6Unspecified()
		}
		r := &netlink.Route{Dst: kernel.IPNet(netip.PrefixFrom(any, 0)), Gw: gw.AsSlice()}
		if err := h.RouteAdd(r); err != nil {
			return fmt.Errorf("add route default via %s in netns %s: %w", gw, ns, err)
		}
	}
	return nil
}

// setSysctl writes a per-namespace sysctl. /proc/sys/net resolves to the
// network namespace of the thread that opens it, so the write happens on
// a thread inside the namespace.
func setSysctl(ns, key, value string) error {
	err := netns.Do(ns, func() error {
		return os.WriteFile("/proc/sys/"+key, []byte(value), 0o644)
	})
	if err != nil {
		return fmt.Errorf("set sysctl %s=%s in netns %s: %w", key, value, ns, err)
	}
	return nil
}

// labNamespaces lists the existing namespaces that belong to the lab with
// this prefix, in teardown order: pods first, then hosts, then the router,
// then the underlay, so that nothing is ever deleted while a namespace
// wired to it still waits.
func labNamespaces(prefix string) ([]string, error) {
	all, err := netns.List()
	if err != nil {
		return nil, err
	}
	var ns []string
	for _, n := range all {
		if IsLabNS(prefix, n) {
			ns = append(ns, n)
		}
	}
	rank := func(n string) int {
		switch {
		case n == prefix+"-ul":
			return 3
		case n == prefix+"-rt":
			return 2
		case labSuffix.FindStringSubmatch(n[len(prefix)+1:])[2] != "":
			return 0 // a pod: hNpM
		default:
			return 1
		}
	}
	slices.SortStableFunc(ns, func(a, b string) int { return rank(a) - rank(b) })
	return ns, nil
}

// deleteNamespaces deletes the named namespaces, joining the errors so
// that one failure does not leave the rest behind. Deleting a namespace
// destroys the veths in it, and with them their peers, and every other
// link it holds (bridges, cni0, vxlan devices).
func deleteNamespaces(names []string) error {
	var errs []error
	for _, n := range names {
		if err := netns.Delete(n); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
