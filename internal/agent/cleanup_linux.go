package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/backend/backends"

	"github.com/weftnet/weft/internal/kernel"
	"github.com/weftnet/weft/internal/options"
	"github.com/weftnet/weft/internal/rules"
	"github.com/weftnet/weft/internal/rules/ruleexec"
)

// Cleanup removes everything an agent installed on this host, for
// operators uninstalling weft (flannel leaves its rules behind): traffic
// rules of both modes and both iptables variants, the devices each backend
// of the table creates (flannel.<VNI>, flannel0: their routes, neighbours
// and FDB entries go with them), routes tagged proto 87, subnet.env and
// the state files the backends name. The lease
// in the store is left to expire, so a host that is reinstalled gets its
// subnet back. The agent must be stopped first, or it puts everything back.
//
// Each step runs even when an earlier one failed; the errors are joined.
func Cleanup(ctx context.Context, opts options.Options, log *slog.Logger) error {
	var errs []error

	mgr, err := rules.New(rules.IPTables, log)
	if err == nil {
		err = mgr.Cleanup(ctx)
	}
	switch {
	case err == nil:
		log.Info("removed traffic rules (iptables and nftables)")
	case errors.Is(err, ruleexec.ErrNotFound):
		log.Info("no iptables/nft tools here, so no rules to remove", "detail", err.Error())
	default:
		errs = append(errs, fmt.Errorf("remove traffic rules: %w", err))
	}

	h, err := netlink.NewHandle()
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("open netlink: %w", err))...)
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		errs = append(errs, fmt.Errorf("list links: %w", err))
	}
	all := backends.All()
	for _, l := range links {
		name, typ := l.Attrs().Name, l.Type()
		ours := slices.ContainsFunc(all, func(d backend.Descriptor) bool {
			return slices.ContainsFunc(d.Devices, func(f backend.DeviceFact) bool { return f.Matches(typ, name) })
		})
		if !ours {
			continue
		}
		if err := h.LinkDel(l); err != nil {
			errs = append(errs, fmt.Errorf("delete %s device %s: %w", typ, name, err))
			continue
		}
		log.Info("deleted device", "device", name, "type", typ)
	}

	routes, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Protocol: kernel.ProtoWeft}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		errs = append(errs, fmt.Errorf("list proto %d routes: %w", kernel.ProtoWeft, err))
	}
	for _, r := range routes {
		if err := h.RouteDel(&r); err != nil {
			errs = append(errs, fmt.Errorf("delete route %s: %w", r.Dst, err))
			continue
		}
		log.Info("deleted route", "route", r.Dst.String(), "via", r.Gw)
	}

	files := []string{opts.SubnetFile}
	for _, d := range all {
		for _, pattern := range d.StateFiles {
			if matches, err := filepath.Glob(filepath.Join(opts.StateDir, pattern)); err == nil {
				files = append(files, matches...)
			}
		}
	}
	for _, f := range files {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove %s: %w", f, err))
			continue
		} else if err == nil {
			log.Info("removed file", "path", f)
		}
	}
	return errors.Join(errs...)
}
