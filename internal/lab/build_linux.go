package lab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"

	"github.com/vishvananda/netlink"
	vns "github.com/vishvananda/netns"

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
	if err := h.AddrAdd(br, &netlink.Addr{IPNet: ipNet(u.Addr)}); err != nil {
		return fmt.Errorf("add address %s to %s in netns %s: %w", u.Addr, u.Bridge, u.NS, err)
	}
	if err := h.LinkSetUp(br); err != nil {
		return fmt.Errorf("set %s up in netns %s: %w", u.Bridge, u.NS, err)
	}
	return nil
}

// buildHost creates a host namespace and wires it to the switch. The veth
// pair is created inside the underlay namespace with its peer placed
// straight into the host namespace, so it never exists in the machine's
// root namespace, not even for a moment:
//
//	ip netns add <prefix>-h1
//	ip -n <prefix>-ul link add ve-h1 type veth peer name eth0 netns <prefix>-h1
//	ip -n <prefix>-ul link set ve-h1 master sw0 up
//	ip -n <prefix>-h1 addr add 10.4.7.21/24 dev eth0
//	ip -n <prefix>-h1 link set eth0 up
//	ip netns exec <prefix>-h1 sysctl -w net.ipv4.ip_forward=1
//
// ip_forward is what every Kubernetes node has (kubeadm refuses to join
// without it); a fresh namespace starts with it off.
func buildHost(u Underlay, host Host) error {
	if err := netns.Create(host.NS); err != nil {
		return fmt.Errorf("build host %s: %w", host.Name, err)
	}
	hostNS, err := vns.GetFromName(host.NS)
	if err != nil {
		return fmt.Errorf("build host %s: open netns %s: %w", host.Name, host.NS, err)
	}
	defer hostNS.Close()

	ul, err := netns.Handle(u.NS)
	if err != nil {
		return fmt.Errorf("build host %s: %w", host.Name, err)
	}
	defer ul.Close()
	br, err := ul.LinkByName(u.Bridge)
	if err != nil {
		return fmt.Errorf("build host %s: find %s in netns %s: %w", host.Name, u.Bridge, u.NS, err)
	}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: host.Wire, MasterIndex: br.Attrs().Index},
		PeerName:      host.Iface,
		PeerNamespace: netlink.NsFd(int(hostNS)),
	}
	if err := ul.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth %s (peer %s in netns %s) in netns %s: %w", host.Wire, host.Iface, host.NS, u.NS, err)
	}
	wire, err := ul.LinkByName(host.Wire)
	if err != nil {
		return fmt.Errorf("find %s in netns %s: %w", host.Wire, u.NS, err)
	}
	if wire.Attrs().MasterIndex != br.Attrs().Index {
		if err := ul.LinkSetMaster(wire, br); err != nil {
			return fmt.Errorf("attach %s to %s in netns %s: %w", host.Wire, u.Bridge, u.NS, err)
		}
	}
	if err := ul.LinkSetUp(wire); err != nil {
		return fmt.Errorf("set %s up in netns %s: %w", host.Wire, u.NS, err)
	}

	hh, err := netns.Handle(host.NS)
	if err != nil {
		return fmt.Errorf("build host %s: %w", host.Name, err)
	}
	defer hh.Close()
	eth, err := hh.LinkByName(host.Iface)
	if err != nil {
		return fmt.Errorf("find %s in netns %s: %w", host.Iface, host.NS, err)
	}
	if err := hh.AddrAdd(eth, &netlink.Addr{IPNet: ipNet(host.Addr)}); err != nil {
		return fmt.Errorf("add address %s to %s in netns %s: %w", host.Addr, host.Iface, host.NS, err)
	}
	if err := hh.LinkSetUp(eth); err != nil {
		return fmt.Errorf("set %s up in netns %s: %w", host.Iface, host.NS, err)
	}
	if err := setSysctl(host.NS, "net/ipv4/ip_forward", "1"); err != nil {
		return fmt.Errorf("build host %s: %w", host.Name, err)
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
// this prefix, in teardown order: pods first, then hosts, then the
// underlay, so that nothing is ever deleted while a namespace wired to it
// still waits.
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

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
