package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/backend/backends"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/netconf"
	"github.com/weftnet/weft/internal/store"
	"github.com/weftnet/weft/internal/subnetenv"
	"github.com/weftnet/weft/internal/web"
)

// Dual-stack. With EnableIPv6 the agent leases and publishes an IPv6
// subnet (flannel's key and JSON, or the Node's podCIDRs and v6
// annotations), with this host's PublicIPv6, and writes
// FLANNEL_IPV6_NETWORK/FLANNEL_IPV6_SUBNET to subnet.env, so that peers
// (flannel's among them) and the CNI plugin see a dual-stack host. Whether
// pods' IPv6 traffic is carried between hosts is the backend's to say
// (backend.Descriptor.IPv6): host-gw routes it; a backend that does not
// (udp, IPv4-only in flannel too) is named at ERROR on start and on the
// page, and IPv4 keeps working as before.

// errIPv6Only refuses a config without IPv4: flannel's etcd leases have
// no IPv6-only form (every key starts with an IPv4 subnet).
var errIPv6Only = errors.New(`the network config has "EnableIPv4": false (IPv6-only), but this version of weft runs IPv4 and dual-stack networks only (flannel's etcd lease keys have no IPv6-only form): enable IPv4 ("EnableIPv4": true with a Network) to run dual-stack`)

// checkFamilies says why this agent cannot serve cfg's address families
// on interface ext. v6onlyStore says the store leases IPv6 subnets alone
// (store.IPv6OnlyLeaser: Kubernetes mode), which an IPv6-only config
// needs, as in flannel.
func checkFamilies(cfg *netconf.Config, ext backend.ExternalInterface, v6onlyStore bool) error {
	if !cfg.EnableIPv4 {
		if !v6onlyStore {
			return errIPv6Only
		}
		if !ext.PublicIPv6.IsValid() {
			return fmt.Errorf("interface %s has no global IPv6 address, which the IPv6-only network config needs: pass --iface, --iface-regex or --public-ipv6, or set the node-public-ipv6 annotation", ext.Name)
		}
		return nil
	}
	if !ext.PublicIP.IsValid() {
		// extiface takes an interface with IPv6 only, for IPv6-only
		// networks; this one needs IPv4.
		return fmt.Errorf("interface %s has no IPv4 address, which the network config needs (it enables IPv4): pass --iface, --iface-regex or --public-ip", ext.Name)
	}
	return nil
}

// publicIPv6 is what this host publishes as PublicIPv6: the interface's
// (or --public-ipv6), when the config enables IPv6.
func publicIPv6(cfg *netconf.Config, ext backend.ExternalInterface) netip.Addr {
	if !cfg.EnableIPv6 {
		return netip.Addr{}
	}
	return ext.PublicIPv6
}

// subnetEnv is the subnet.env for own under cfg: each enabled family's
// network and subnet, in flannel's lines.
func subnetEnv(cfg *netconf.Config, own lease.Lease, mtu int, masq bool) subnetenv.Env {
	env := subnetenv.Env{MTU: mtu, IPMasq: masq}
	if cfg.EnableIPv4 {
		env.Networks, env.Subnet = []netip.Prefix{cfg.Network}, own.Subnet
	}
	if cfg.EnableIPv6 && own.IPv6Subnet.IsValid() {
		env.IPv6Network, env.IPv6Subnet = []netip.Prefix{cfg.IPv6Network}, own.IPv6Subnet
	}
	return env
}

// ipv6Notice is what the agent says about IPv6 once the lease is taken,
// and whether that is an error: IPv6 is enabled but not carried, because
// nothing was leased or published, or because backend d programs IPv4
// only. "" when the config does not enable IPv6.
func ipv6Notice(cfg *netconf.Config, d backend.Descriptor, own lease.Lease, ext backend.ExternalInterface) (msg string, isErr bool) {
	if !cfg.EnableIPv6 {
		return "", false
	}
	const head = "IPv6 is enabled in the network config: "
	if !d.IPv6 {
		why := d.NoIPv6
		if why == "" {
			why = fmt.Sprintf("this version's %s backend programs IPv4 only", cfg.BackendType)
		}
		return head + fmt.Sprintf("IPv6 subnet %s is leased and subnet.env gives pods IPv6 addresses, but the %s backend programs IPv4 only: no IPv6 routes, devices or rules, so pods' IPv6 traffic does not reach other hosts (%s)",
			orNone(own.IPv6Subnet), cfg.BackendType, why), true
	}
	switch {
	case !own.IPv6Subnet.IsValid():
		return head + fmt.Sprintf("no IPv6 subnet was leased (see the lease log line), so the %s backend programs IPv4 only", cfg.BackendType), true
	case !own.Attrs.PublicIPv6.IsValid():
		return head + fmt.Sprintf("leased IPv6 subnet %s, but interface %s has no global IPv6 address and --public-ipv6 is not set, so no PublicIPv6 is published and peers cannot route IPv6 to this host's pods", own.IPv6Subnet, ext.Name), true
	}
	return head + fmt.Sprintf("leased IPv6 subnet %s and published PublicIPv6 %s; the %s backend carries pods' IPv6 traffic to peers that lease IPv6 too", own.IPv6Subnet, own.Attrs.PublicIPv6, cfg.BackendType), false
}

func orNone(p netip.Prefix) string {
	if p.IsValid() {
		return p.String()
	}
	return "(none)"
}

// publicIPv6Override applies the store's override of --public-ipv6
// (Kubernetes: the node-public-ipv6 annotation), which like the IPv4 one
// also drives interface selection.
func (a *Agent) publicIPv6Override(ctx context.Context) error {
	src, ok := a.deps.Store.(store.PublicIPv6Source)
	if !ok {
		return nil
	}
	ip, set, err := src.PublicIPv6(ctx)
	if err != nil {
		return fmt.Errorf("read the public IPv6 override from the store: %w", err)
	}
	if set {
		a.log.Info("public IPv6 address set by the store overrides --public-ipv6", "public-ipv6", ip, "was", a.opts.PublicIPv6)
		a.opts.PublicIPv6 = ip.String()
	}
	return nil
}

// noteIPv6 logs ipv6Notice, at ERROR when IPv6 is not carried, and puts
// it on the agent's page.
func (a *Agent) noteIPv6(cfg *netconf.Config, own lease.Lease, ext backend.ExternalInterface) {
	d, _ := backends.Lookup(cfg.BackendType) // waitConfig checked it is there
	msg, isErr := ipv6Notice(cfg, d, own, ext)
	if msg == "" {
		return
	}
	lvl := slog.LevelInfo
	if isErr {
		lvl = slog.LevelError
	}
	a.log.Log(context.Background(), lvl, msg, "backend", cfg.BackendType, "ipv6-network", cfg.IPv6Network, "ipv6-subnet", own.IPv6Subnet, "public-ipv6", own.Attrs.PublicIPv6)
	a.page.add(web.EventConfig, "%s", msg)
}
