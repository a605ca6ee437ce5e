package cni

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/kernel"
)

// NewBridgeRepairer returns the kernel BridgeRepairer, acting through
// netlink in the calling process's network namespace.
//
// What counts as "a pod still uses the old subnet": an interface attached
// to the bridge. A pod's host-side veth is enslaved to the bridge for as
// long as the pod's namespace lives, and vanishes with it, so this is the
// kernel's own answer. host-local's reservation files are not: they outlive
// pods whose DEL never ran (node reboot, `kubeadm reset`, a crashed
// runtime), which is exactly the situation after which subnets change, so
// trusting them would refuse the repair in the common case. They are read
// only to name the pods in the error. While the bridge still has only the
// old address no new-subnet pod can have been attached to it (the bridge
// plugin fails first), so every attached interface belongs to an old pod,
// or to an ADD failing at this very moment; such an ADD is retried by the
// runtime and the next try sees a clean bridge.
func NewBridgeRepairer(log *slog.Logger) BridgeRepairer {
	return &kernelBridge{log: log}
}

type kernelBridge struct {
	log *slog.Logger
}

func (k *kernelBridge) Repair(bridge string, subnet netip.Prefix, ipamDir string) error {
	h, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("open netlink: %w", err)
	}
	defer h.Close()

	link, err := h.LinkByName(bridge)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		return nil // the bridge plugin creates it
	}
	if err != nil {
		return fmt.Errorf("look up bridge %s: %w", bridge, err)
	}
	if _, isBridge := link.(*netlink.Bridge); !isBridge {
		return nil // not ours to touch; the bridge plugin reports the clash
	}

	addrs, err := kernel.RetryDump(func() ([]netlink.Addr, error) { return h.AddrList(link, netlink.FAMILY_V4) })
	if err != nil {
		return fmt.Errorf("list addresses of bridge %s: %w", bridge, err)
	}
	var have []netip.Prefix
	for _, a := range addrs {
		if p, ok := kernel.PrefixOf(a.IPNet); ok {
			have = append(have, p)
		}
	}
	stale := StaleAddrs(have, subnet)
	if len(stale) == 0 {
		return nil
	}

	links, err := kernel.RetryDump(h.LinkList)
	if err != nil {
		return fmt.Errorf("list interfaces attached to bridge %s: %w", bridge, err)
	}
	var ports []string
	for _, l := range links {
		if l.Attrs().MasterIndex == link.Attrs().Index {
			ports = append(ports, l.Attrs().Name)
		}
	}
	if len(ports) > 0 {
		e := &StaleBridgeError{Bridge: bridge, Stale: stale, Subnet: subnet, Ports: ports}
		if ipamDir != "" {
			rs, err := ReadReservations(ipamDir)
			if err != nil {
				k.log.Warn("cannot name the pods on the old subnet", "bridge", bridge, "err", err)
			}
			e.Pods = podsIn(rs, stale)
		}
		return e
	}

	for _, p := range stale {
		// ip addr del <p> dev <bridge>; the kernel drops the connected
		// route of the old subnet with it.
		err := h.AddrDel(link, &netlink.Addr{IPNet: kernel.IPNet(p)})
		if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("remove stale address %s from bridge %s: %w", p, bridge, err)
		}
		k.log.Info("removed stale address from bridge: the node's subnet changed and no pod uses the old one",
			"bridge", bridge, "address", p, "subnet", subnet)
	}
	return nil
}
