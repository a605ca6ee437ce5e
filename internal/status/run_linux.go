package status

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/backend/wireguard"
	"github.com/weftnet/weft/internal/extiface"
	"github.com/weftnet/weft/internal/kernel/hostfacts"
	"github.com/weftnet/weft/internal/subnetenv"
)

// Run reads the store, this host's subnet file and kernel (in the network
// namespace of the calling process), builds the report and, with
// o.Check, probes every peer. An error means there is nothing to compare
// against: the store or the kernel could not be read.
func Run(ctx context.Context, o Options) (Report, error) {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	cfg, err := o.Source.Config(ctx)
	if err != nil {
		return Report{}, fmt.Errorf("read the network config from %s: %w", o.Store, err)
	}
	leases, err := o.Source.List(ctx)
	if err != nil {
		return Report{}, fmt.Errorf("list leases in %s: %w", o.Store, err)
	}

	// A zero Handle opens a socket per request in this namespace.
	h := &netlink.Handle{}
	in := Inputs{
		Now:         now(),
		Config:      cfg,
		Leases:      leases,
		Store:       o.Store,
		SubnetFile:  o.SubnetFile,
		RenewMargin: o.RenewMargin,
		Kubernetes:  o.Kubernetes,
	}
	in.Ext, in.ExtErr = extiface.Select(h, o.Iface)
	switch {
	case in.ExtErr == nil:
		in.PublicIP, in.PublicIPv6 = in.Ext.PublicIP, in.Ext.PublicIPv6
	default:
		in.PublicIP, _ = netip.ParseAddr(o.Iface.PublicIP)
		in.PublicIPv6, _ = netip.ParseAddr(o.Iface.PublicIPv6)
	}
	in.SubnetEnv, in.SubnetErr = subnetenv.Read(o.SubnetFile)

	if in.Kernel, in.Direct, err = snapshotFor(h, cfg, in.Ext, leases, in.PublicIP, in.PublicIPv6); err != nil {
		return Report{}, fmt.Errorf("read this host's kernel state: %w", err)
	}

	r := Build(in)
	if o.Check {
		read := hostfacts.Reader{}
		if o.Facts != nil {
			read = *o.Facts
		}
		before := sampleTables(read, cfg.EnableIPv6)
		p := o.Prober
		if p == nil {
			p = NetProber{Handle: h}
		}
		Probe(ctx, &r, p)
		if cfg.BackendType == wireguard.BackendType {
			devs := wireguardDevices(cfg, o.SubnetFile)
			for i := range devs {
				devs[i].st, devs[i].err = wireguard.ReadStatusSocket(devs[i].sock, 2*time.Second)
			}
			addWireGuard(&r, leases, devs, now())
		}
		after := sampleTables(read, cfg.EnableIPv6)
		facts, _ := read.Check(factsHost(in, o.Kubernetes)) // unreadable: passed over, the agent warns
		addFindings(&r, hostFindings(in, r, before, after, facts))
	}
	return r, nil
}
