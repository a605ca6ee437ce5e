package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/netconf"
	"github.com/weftnet/weft/internal/store"
	"github.com/weftnet/weft/internal/subnetenv"
	"github.com/weftnet/weft/internal/web"
)

// Dual-stack, control plane first. With EnableIPv6 the agent leases and
// publishes an IPv6 subnet (flannel's key and JSON, or the Node's
// podCIDRs and v6 annotations), with this host's PublicIPv6, and writes
// FLANNEL_IPV6_NETWORK/FLANNEL_IPV6_SUBNET to subnet.env, so that peers
// (flannel's among them) and the CNI plugin see a dual-stack host. The
// data plane does not follow yet: no IPv6 route, device or rule is
// programmed. Rather than accept the config silently, the agent says so
// at ERROR on start and on its page; IPv4 keeps working as before.

// errIPv6Only refuses a config without IPv4: this version has no IPv6
// data plane, so an IPv6-only host would have no network at all.
var errIPv6Only = errors.New(`the network config has "EnableIPv4": false (IPv6-only), but this version of weft programs IPv4 only: it leases and publishes IPv6 subnets, and programs no IPv6 routes, devices or rules yet; enable IPv4 ("EnableIPv4": true with a Network) to run dual-stack`)

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

// ipv6Notice is what the agent says about IPv6 once the lease is taken;
// "" when the config does not enable it.
func ipv6Notice(cfg *netconf.Config, own lease.Lease, ext backend.ExternalInterface) string {
	if !cfg.EnableIPv6 {
		return ""
	}
	var what string
	switch {
	case !own.IPv6Subnet.IsValid():
		what = "no IPv6 subnet was leased (see the lease log line)"
	case !own.Attrs.PublicIPv6.IsValid():
		what = fmt.Sprintf("leased IPv6 subnet %s, but interface %s has no global IPv6 address and --public-ipv6 is not set, so no PublicIPv6 is published", own.IPv6Subnet, ext.Name)
	default:
		what = fmt.Sprintf("leased IPv6 subnet %s and published PublicIPv6 %s; subnet.env gives pods IPv6 addresses", own.IPv6Subnet, own.Attrs.PublicIPv6)
	}
	return "IPv6 is enabled in the network config: " + what + ", but this version programs IPv4 only: no IPv6 routes, devices or rules, so pods' IPv6 traffic does not reach other hosts"
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

// noteIPv6 logs ipv6Notice at ERROR and puts it on the agent's page.
func (a *Agent) noteIPv6(cfg *netconf.Config, own lease.Lease, ext backend.ExternalInterface) {
	msg := ipv6Notice(cfg, own, ext)
	if msg == "" {
		return
	}
	a.log.Error(msg, "ipv6-network", cfg.IPv6Network, "ipv6-subnet", own.IPv6Subnet, "public-ipv6", own.Attrs.PublicIPv6)
	a.page.add(web.EventConfig, "%s", msg)
}
