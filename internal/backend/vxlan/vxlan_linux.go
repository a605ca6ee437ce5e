package vxlan

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/kernel"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/metrics"
)

// supported reports whether this platform can run the backend.
func supported() error { return nil }

// setup settles the VTEP MAC and creates or adopts the device.
func (b *Backend) setup() error {
	h := b.opts.Handle
	var devMAC kernel.MAC
	if l, err := h.LinkByName(b.dev); err == nil {
		devMAC, _ = kernel.MACFrom(l.Attrs().HardwareAddr)
	} else if !isLinkNotFound(err) {
		return fmt.Errorf("vxlan: look up device %s: %w", b.dev, err)
	}

	fileMAC, fileErr := kernel.MAC{}, errors.New("no state directory")
	if b.macFile != "" {
		fileMAC, fileErr = readMACFile(b.macFile)
		if fileErr != nil && !isNotExist(fileErr) {
			b.log.Warn("ignoring an unusable VTEP MAC file", "err", fileErr)
		}
	} else {
		b.log.Warn("no state directory: the VTEP MAC is not persisted and changes when the device is created anew", "device", b.dev)
	}
	var published kernel.MAC
	if len(b.published) > 0 {
		published, _ = parsePeerData(b.published)
	}
	mac, source := chooseMAC(fileMAC, fileErr, devMAC, published, randomMAC)
	b.mac = mac
	if source != "file" && b.macFile != "" {
		if err := writeMACFile(b.macFile, mac); err != nil {
			return fmt.Errorf("vxlan: persist the VTEP MAC %s to %s: %w", mac, b.macFile, err)
		}
	}
	b.log.Info("VTEP MAC settled", "device", b.dev, "mac", mac, "source", source, "file", b.macFile)

	b.mu.Lock()
	defer b.mu.Unlock()
	_, changes, err := b.ensureDevice()
	b.logDevice(changes, "new")
	if err != nil {
		return fmt.Errorf("vxlan: %w", err)
	}
	return nil
}

func isLinkNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf)
}

// change is one thing a sync did to the kernel.
type change struct {
	kind string // "device", "address", "neighbour", "fdb", "route"
	what string
}

// wantAttrs is what the device must look like.
func (b *Backend) wantAttrs() deviceAttrs {
	return deviceAttrs{
		Type:      "vxlan",
		VNI:       b.set.VNI,
		VtepIndex: b.ext.Index,
		Local:     b.ext.Addr,
		Port:      b.set.Port,
		GBP:       b.set.GBP,
		Learning:  b.set.Learning,
	}
}

func attrsOf(l netlink.Link) deviceAttrs {
	v, ok := l.(*netlink.Vxlan)
	if !ok {
		return deviceAttrs{Type: l.Type()}
	}
	addr := func(ip net.IP) netip.Addr {
		a, _ := netip.AddrFromSlice(ip)
		return a.Unmap()
	}
	return deviceAttrs{
		Type:      "vxlan",
		VNI:       v.VxlanId,
		VtepIndex: v.VtepDevIndex,
		Local:     addr(v.SrcAddr),
		Group:     addr(v.Group),
		Port:      v.Port,
		GBP:       v.GBP,
		Learning:  v.Learning,
		L2miss:    v.L2miss,
		L3miss:    v.L3miss,
	}
}

// describe renders the device as `ip link add` arguments.
func (b *Backend) describe() string {
	s := fmt.Sprintf("%s address %s mtu %d type vxlan id %d dev %s local %s", b.dev, b.mac, b.deviceMTU(), b.set.VNI, b.ext.Name, b.ext.Addr)
	if b.set.Port != 0 {
		s += fmt.Sprintf(" dstport %d", b.set.Port)
	}
	if b.set.GBP {
		s += " gbp"
	}
	if !b.set.Learning {
		s += " nolearning"
	}
	return s
}

// ensureDevice makes the device exist with the wanted attributes, MTU and
// MAC, up, and (once Start ran) with the own subnet's address. An existing
// compatible device is kept as it is, an incompatible one re-created.
// Callers hold mu.
func (b *Backend) ensureDevice() (int, []change, error) {
	h := b.opts.Handle
	var changes []change
	link, err := h.LinkByName(b.dev)
	switch {
	case err == nil:
		if why := incompatibility(b.wantAttrs(), attrsOf(link)); why != "" {
			// ip link del flannel.1
			if err := h.LinkDel(link); err != nil {
				return 0, changes, fmt.Errorf("delete incompatible device %s (%s): %w", b.dev, why, err)
			}
			changes = append(changes, change{"device", "deleted incompatible device (" + why + ")"})
			link = nil
		}
	case isLinkNotFound(err):
		link = nil
	default:
		return 0, nil, fmt.Errorf("look up device %s: %w", b.dev, err)
	}

	if link == nil {
		// ip link add flannel.1 address MAC mtu M type vxlan id VNI dev eth0 local ADDR [dstport P] [gbp] nolearning
		//
		// The MAC is given at creation, which marks it as set by user
		// space, so udev's MACAddressPolicy leaves it alone.
		v := &netlink.Vxlan{
			LinkAttrs:    netlink.LinkAttrs{Name: b.dev, MTU: b.deviceMTU(), HardwareAddr: b.mac.HardwareAddr()},
			VxlanId:      b.set.VNI,
			VtepDevIndex: b.ext.Index,
			SrcAddr:      b.ext.Addr.AsSlice(),
			Port:         b.set.Port,
			Learning:     b.set.Learning,
			GBP:          b.set.GBP,
		}
		if err := h.LinkAdd(v); err != nil {
			return 0, changes, fmt.Errorf("create device: ip link add %s: %w", b.describe(), err)
		}
		changes = append(changes, change{"device", "created " + b.describe()})
		if link, err = h.LinkByName(b.dev); err != nil {
			return 0, changes, fmt.Errorf("look up device %s after creating it: %w", b.dev, err)
		}
	}

	a := link.Attrs()
	if mtu := b.deviceMTU(); a.MTU != mtu {
		// ip link set flannel.1 mtu M
		if err := h.LinkSetMTU(link, mtu); err != nil {
			return 0, changes, fmt.Errorf("set the MTU of %s to %d: %w", b.dev, mtu, err)
		}
		changes = append(changes, change{"device", fmt.Sprintf("mtu %d (was %d)", mtu, a.MTU)})
	}
	if have, _ := kernel.MACFrom(a.HardwareAddr); have != b.mac {
		// ip link set flannel.1 address MAC
		if err := h.LinkSetHardwareAddr(link, b.mac.HardwareAddr()); err != nil {
			return 0, changes, fmt.Errorf("set the MAC of %s to %s (it has %s): %w", b.dev, b.mac, have, err)
		}
		l, err := h.LinkByIndex(a.Index)
		if err != nil {
			return 0, changes, fmt.Errorf("look up device %s after setting its MAC: %w", b.dev, err)
		}
		if got, _ := kernel.MACFrom(l.Attrs().HardwareAddr); got != b.mac {
			return 0, changes, fmt.Errorf("device %s has MAC %s after setting it to %s", b.dev, got, b.mac)
		}
		changes = append(changes, change{"device", fmt.Sprintf("address %s (was %s)", b.mac, have)})
	}
	if a.Flags&net.FlagUp == 0 {
		// ip link set flannel.1 up
		if err := h.LinkSetUp(link); err != nil {
			return 0, changes, fmt.Errorf("set %s up: %w", b.dev, err)
		}
		changes = append(changes, change{"device", "up"})
	}
	if old := int(b.devIndex.Swap(int32(a.Index))); old != a.Index {
		delete(b.names, old)
		b.names[a.Index] = b.dev
	}
	if b.started {
		ac, err := b.ensureAddr(link)
		changes = append(changes, ac...)
		if err != nil {
			return 0, changes, err
		}
	}
	return a.Index, changes, nil
}

// ensureAddr gives the device the own subnet's network address as a /32
// (/128 on the IPv6 side), as flannel does, and removes its other
// addresses inside the network. Callers hold mu.
func (b *Backend) ensureAddr(link netlink.Link) ([]change, error) {
	h := b.opts.Handle
	want := backend.DeviceAddr(b.own.Subnet)
	family := netlink.FAMILY_V4
	if b.ipv6 {
		family = netlink.FAMILY_V6
	}
	addrs, err := kernel.RetryDump(func() ([]netlink.Addr, error) { return h.AddrList(link, family) })
	if err != nil {
		return nil, fmt.Errorf("list the addresses of %s: %w", b.dev, err)
	}
	var changes []change
	have := false
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ones, _ := a.Mask.Size()
		p := netip.PrefixFrom(ip.Unmap(), ones)
		if p == want {
			have = true
			continue
		}
		if !b.network.Contains(p.Addr()) {
			continue
		}
		// ip addr del P dev flannel.1
		if err := h.AddrDel(link, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return changes, fmt.Errorf("remove address %s from %s: %w", p, b.dev, err)
		}
		changes = append(changes, change{"address", "removed address " + p.String()})
	}
	if !have {
		// ip addr add 10.244.1.0/32 dev flannel.1
		// ip addr add fd00:10:244:1::/128 dev flannel-v6.1 nodad
		//
		// Without nodad the address is tentative for a second or more,
		// and the host's own packets to peers' pods have no source.
		bits := want.Addr().BitLen()
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: want.Addr().AsSlice(), Mask: net.CIDRMask(bits, bits)}}
		if b.ipv6 {
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(link, addr); err != nil && !errors.Is(err, unix.EEXIST) {
			return changes, fmt.Errorf("add address %s to %s: %w", want, b.dev, err)
		}
		changes = append(changes, change{"address", "address " + want.String()})
	}
	return changes, nil
}

// Start gives the device the own subnet's address, and flannel-v6 the own
// IPv6 subnet's (on an IPv6-only network, flannel-v6 alone). The devices were settled by New and are re-created here
// if they went away since.
func (b *Backend) Start(ctx context.Context, own lease.Lease) error {
	if b.noIPv4 {
		h, ok := v6Half(own)
		if !ok {
			return fmt.Errorf("vxlan: own lease %s has no IPv6 subnet, which an IPv6-only network needs", own)
		}
		return b.v6.start(ctx, h)
	}
	if err := b.start(ctx, own); err != nil {
		return err
	}
	if b.v6 == nil {
		return nil
	}
	h, ok := v6Half(own)
	if !ok {
		b.v6.log.Error("IPv6 is enabled, but this host's lease has no IPv6 subnet: " + b.v6.dev + " gets no address and no peers")
		return nil
	}
	return b.v6.start(ctx, h)
}

func (b *Backend) start(ctx context.Context, own lease.Lease) error {
	if !own.Subnet.IsValid() || !b.network.Contains(own.Subnet.Addr()) {
		return fmt.Errorf("vxlan: own lease %s is not inside the network %s", own.Subnet, b.network)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.own = own
	b.started = true
	_, changes, err := b.ensureDevice()
	b.logDevice(changes, "start")
	if err != nil {
		return fmt.Errorf("vxlan: %w", err)
	}
	return nil
}

// Apply makes the device's neighbours and FDB and the main table hold
// exactly the entries of the vxlan peers in leases, and flannel-v6's those
// of their IPv6 halves. A peer whose lease is unusable, or whose entries
// the kernel refuses, gets an error in the joined result; the others are
// programmed regardless. A peer without an IPv6 half gets its IPv4
// entries only.
func (b *Backend) Apply(ctx context.Context, leases []lease.Lease) error {
	if b.noIPv4 {
		return b.v6.apply(ctx, v6Halves(leases))
	}
	err := b.apply(ctx, leases)
	if b.v6 == nil || !b.v6.isStarted() {
		return err
	}
	if err6 := b.v6.apply(ctx, v6Halves(leases)); err6 != nil {
		err = errors.Join(err, fmt.Errorf("IPv6: %w", err6))
	}
	return err
}

func (b *Backend) isStarted() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.started
}

func (b *Backend) apply(ctx context.Context, leases []lease.Lease) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.started {
		return errors.New("vxlan: Apply before Start")
	}
	st := desireWith(b.network, b.own, b.ext.PublicIP, b.mac, leases, b.macs.parser(len(leases)))
	backend.NoteIgnored(b.log, BackendType, b.ignored, st.ignored)
	b.ignored = st.ignored
	b.peers, b.applied = st.peers, true
	b.prevIP, b.prevMAC = b.wantIP, b.wantMAC
	b.wantIP = make(map[netip.Addr]netip.Prefix, len(st.peers))
	b.wantMAC = make(map[kernel.MAC]netip.Prefix, len(st.peers))
	for _, p := range st.peers {
		b.wantIP[p.Subnet.Addr()] = p.Subnet
		b.wantMAC[p.MAC] = p.Subnet
	}

	errs := st.errs
	res, err := b.sync("apply")
	b.failing = make(map[string]string, len(res.failures))
	for _, f := range res.failures {
		b.failing[f.entry] = f.err.Error()
		errs = append(errs, f.err)
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("vxlan: %w", err))
	}
	return errors.Join(errs...)
}

// failure is a kernel change that was refused.
type failure struct {
	entry string // the entry, as a key for deduplicating logs
	err   error  // names the peer when known
}

// syncResult is what one sync did.
type syncResult struct {
	failures []failure
	counts   backend.Counts // the changes of a repair by kind; nil for Apply
}

// sync makes the kernel match b.peers and logs what it changed, one line
// per peer. It fails as a whole when the device cannot be set up or the
// kernel cannot be read. Callers hold mu.
//
// An Apply plans against what the last sync installed (b.inst), so that a
// change of one peer among thousands costs its own few netlink requests
// rather than three dumps of every entry; a repair, and an Apply after a
// failure or a change to the device, reads the kernel instead.
func (b *Backend) sync(trigger string) (syncResult, error) {
	var res syncResult
	if trigger != "apply" {
		res.counts = backend.Counts{}
	}
	h := b.opts.Handle
	devIndex, devChanges, err := b.ensureDevice()
	b.logDevice(devChanges, trigger)
	b.count(devChanges, res.counts)
	cached := trigger == "apply" && b.inst.valid && len(devChanges) == 0 && b.inst.devIndex == devIndex
	// Valid again only if this sync completes without a failure.
	b.inst.valid = false
	if err != nil {
		return res, fmt.Errorf("device %s: %w", b.dev, err)
	}

	direct := b.directLinks(b.peers, devIndex)
	neighs, fdbs, routes := entries(b.peers, devIndex, direct)
	var (
		haveN []kernel.Neigh
		haveF []kernel.FDB
	)
	if cached {
		haveN, haveF = b.inst.neighs, b.inst.fdbs
	} else {
		if haveN, err = kernel.ListNeighs(h, devIndex); err != nil {
			return res, err
		}
		if haveF, err = kernel.ListFDB(h, devIndex); err != nil {
			return res, err
		}
	}
	// Permanent entries on the device are weft's (or flannel's before it);
	// what the kernel learned or resolved itself is left alone.
	var nset, ndel []kernel.NeighOp
	for _, op := range kernel.PlanNeighs(neighs, haveN, func(n kernel.Neigh) bool { return n.Permanent }) {
		if op.Kind == kernel.Delete {
			ndel = append(ndel, op)
		} else {
			nset = append(nset, op)
		}
	}
	var fset, fdel []kernel.FDBOp
	for _, op := range kernel.PlanFDB(fdbs, haveF, func(f kernel.FDB) bool { return f.Permanent }) {
		if op.Kind == kernel.Delete {
			fdel = append(fdel, op)
		} else {
			fset = append(fset, op)
		}
	}

	// Neighbours and FDB first, so that a route never points at a gateway
	// the kernel would have to resolve; a peer whose entries failed gets
	// no route.
	nres := kernel.ApplyNeighOps(h, nset)
	fres := kernel.ApplyFDBOps(h, fset)
	broken := make(map[netip.Addr]bool)
	macBroken := make(map[kernel.MAC]bool)
	for _, f := range nres.Failed {
		broken[f.Op.Neigh.IP] = true
	}
	for _, f := range fres.Failed {
		macBroken[f.Op.Entry.MAC] = true
	}
	for _, p := range b.peers {
		if macBroken[p.MAC] {
			broken[p.Subnet.Addr()] = true
		}
	}
	routes = slices.DeleteFunc(routes, func(r kernel.Route) bool { return r.OnLink && broken[r.Gw] })
	b.plan = plan{
		neighs: make(map[netip.Addr]kernel.Neigh, len(neighs)),
		fdbs:   make(map[kernel.MAC]kernel.FDB, len(fdbs)),
		routes: make(map[netip.Prefix]kernel.Route, len(routes)),
	}
	for _, n := range neighs {
		b.plan.neighs[n.IP] = n
	}
	for _, f := range fdbs {
		b.plan.fdbs[f.MAC] = f
	}
	for _, r := range routes {
		b.plan.routes[r.Dst] = r
	}
	owner := kernel.PeerRouteOwner(b.network, b.own.Subnet)
	var rres kernel.Result
	if cached {
		rres = kernel.ApplyOps(h, kernel.PlanRoutes(routes, b.inst.routes, owner))
	} else if rres, err = kernel.Sync(h, routes, owner); err != nil {
		// Without the table, keep the neighbours and FDB of departed peers:
		// their routes may still be there.
		b.logPeers(trigger, b.known, nres, fres, kernel.Result{}, kernel.FDBResult{}, kernel.NeighResult{})
		b.report(trigger, nres, fres, kernel.Result{}, &res)
		return res, err
	}
	// Departed peers lose their route first, then FDB and neighbour.
	fdres := kernel.ApplyFDBOps(h, fdel)
	ndres := kernel.ApplyNeighOps(h, ndel)

	prev := b.known
	b.known = make(map[netip.Prefix]programmed, len(b.peers))
	for _, p := range b.peers {
		_, d := direct[p.Subnet]
		b.known[p.Subnet] = programmed{peer: p, direct: d}
	}
	b.logPeers(trigger, prev, nres, fres, rres, fdres, ndres)
	nres.Done, nres.Failed = append(nres.Done, ndres.Done...), append(nres.Failed, ndres.Failed...)
	fres.Done, fres.Failed = append(fres.Done, fdres.Done...), append(fres.Failed, fdres.Failed...)
	b.report(trigger, nres, fres, rres, &res)
	if len(res.failures) == 0 {
		b.inst = installed{valid: true, devIndex: devIndex, neighs: neighs, fdbs: fdbs, routes: routes}
	}
	return res, nil
}

// directLinks returns, with DirectRouting, the peers whose PublicIP the
// kernel reaches without a gateway (backend.DirectLink), each with the
// link it leaves by. It asks the kernel for every peer on every sync: a
// route added since may have changed the answer for a peer whose lease did
// not change, and no notification says so. Callers hold mu.
func (b *Backend) directLinks(peers []peer, devIndex int) map[netip.Prefix]int {
	if !b.set.DirectRouting {
		return nil
	}
	out := make(map[netip.Prefix]int)
	for _, p := range peers {
		if link := backend.DirectLink(b.opts.Handle, p.PublicIP, devIndex); link != 0 {
			out[p.Subnet] = link
		}
	}
	return out
}

// attribution finds the peer subnet a kernel entry belongs to: a peer of
// the last Apply, else of the one before (a peer that has just left), else
// one this process never saw, named by the entries being changed. It looks
// up the maps Apply keeps rather than building its own, so that a change
// of one peer among thousands costs its own entries, not a pass over all.
type attribution struct {
	addrs []map[netip.Addr]netip.Prefix // subnet network address → subnet, in order of precedence
	macs  []map[kernel.MAC]netip.Prefix
}

func (a attribution) byAddr(ip netip.Addr) (netip.Prefix, bool) {
	for _, m := range a.addrs {
		if s, ok := m[ip]; ok {
			return s, true
		}
	}
	return netip.Prefix{}, false
}

func (a attribution) byMAC(mac kernel.MAC) (netip.Prefix, bool) {
	for _, m := range a.macs {
		if s, ok := m[mac]; ok {
			return s, true
		}
	}
	return netip.Prefix{}, false
}

func (b *Backend) attribution(rres kernel.Result, nres kernel.NeighResult) attribution {
	at := attribution{
		addrs: []map[netip.Addr]netip.Prefix{b.wantIP, b.prevIP},
		macs:  []map[kernel.MAC]netip.Prefix{b.wantMAC, b.prevMAC},
	}
	// Entries of peers this process never saw: an onlink route through
	// the device names the subnet, and its neighbour names the MAC.
	unseenAddr := map[netip.Addr]netip.Prefix{}
	for _, op := range rres.Done {
		if op.Route.OnLink {
			if _, ok := at.byAddr(op.Route.Gw); !ok {
				unseenAddr[op.Route.Gw] = op.Route.Dst
			}
		}
	}
	at.addrs = append(at.addrs, unseenAddr)
	unseenMAC := map[kernel.MAC]netip.Prefix{}
	for _, op := range nres.Done {
		if s, ok := at.byAddr(op.Neigh.IP); ok {
			if _, ok := at.byMAC(op.Neigh.MAC); !ok {
				unseenMAC[op.Neigh.MAC] = s
			}
		}
	}
	at.macs = append(at.macs, unseenMAC)
	return at
}

// report collects the refused changes into res, with the peer each was
// for, and counts Run's repairs. Callers hold mu.
func (b *Backend) report(trigger string, nres kernel.NeighResult, fres kernel.FDBResult, rres kernel.Result, res *syncResult) {
	if res.counts != nil {
		b.repairs.neighbour.Add(uint64(len(nres.Done)))
		b.repairs.fdb.Add(uint64(len(fres.Done)))
		b.repairs.route.Add(uint64(len(rres.Done)))
		res.counts.Add(metrics.KindNeighbour, len(nres.Done))
		res.counts.Add(metrics.KindFDB, len(fres.Done))
		res.counts.Add(metrics.KindRoute, len(rres.Done))
	}
	at := b.attribution(rres, nres)
	who := func(s netip.Prefix, ok bool, err error) error {
		if !ok {
			return fmt.Errorf("stale entry: %w", err)
		}
		pub := "unknown"
		for _, p := range b.peers {
			if p.Subnet == s {
				pub = p.PublicIP.String()
			}
		}
		return fmt.Errorf("peer %s (subnet %s): %w", pub, s, err)
	}
	for _, f := range nres.Failed {
		s, ok := at.byAddr(f.Op.Neigh.IP)
		res.failures = append(res.failures, failure{entry: "neigh " + f.Op.Neigh.IP.String(), err: who(s, ok, f)})
	}
	for _, f := range fres.Failed {
		s, ok := at.byMAC(f.Op.Entry.MAC)
		res.failures = append(res.failures, failure{entry: "fdb " + f.Op.Entry.MAC.String() + " " + f.Op.Entry.Dst.String(), err: who(s, ok, f)})
	}
	for _, f := range rres.Failed {
		err := fmt.Errorf("%s route %s: %w", verb(f.Op.Kind), f.Op.Route.Format(b.names), f.Err)
		res.failures = append(res.failures, failure{entry: "route " + f.Op.Route.Dst.String(), err: who(f.Op.Route.Dst, true, err)})
	}
}

func verb(k kernel.OpKind) string {
	if k == kernel.Delete {
		return "delete"
	}
	return "replace"
}

// logPeers logs one line per peer whose entries changed: added, changed
// (new MAC, PublicIP or path), repaired (the kernel had drifted), or
// removed, listing the changes in the order they were made; entries of no
// known peer get a line each. The results come in that order: neighbour
// and FDB replaces, routes, FDB and neighbour deletes. Callers hold mu.
func (b *Backend) logPeers(trigger string, prev map[netip.Prefix]programmed,
	nset kernel.NeighResult, fset kernel.FDBResult, rres kernel.Result, fdel kernel.FDBResult, ndel kernel.NeighResult,
) {
	at := b.attribution(rres, kernel.NeighResult{Done: append(slices.Clone(nset.Done), ndel.Done...)})
	groups := make(map[netip.Prefix][]string)
	var stale []string
	add := func(s netip.Prefix, ok bool, what string) {
		if ok {
			groups[s] = append(groups[s], what)
		} else {
			stale = append(stale, what)
		}
	}
	// An entry that replaced a wrong one says what was wrong with it.
	neighs := func(r kernel.NeighResult) {
		for _, op := range r.Done {
			s, ok := at.byAddr(op.Neigh.IP)
			what := fmt.Sprintf("neigh %s %s lladdr %s", verb(op.Kind), op.Neigh.IP, op.Neigh.MAC)
			if op.Kind == kernel.Replace && op.Prev != (kernel.Neigh{}) {
				what = kernel.NeighChange(op.Neigh, op.Prev, b.names) + ", replaced"
			}
			add(s, ok, what)
		}
	}
	fdbs := func(r kernel.FDBResult) {
		for _, op := range r.Done {
			s, ok := at.byMAC(op.Entry.MAC)
			what := fmt.Sprintf("fdb %s %s dst %s", verb(op.Kind), op.Entry.MAC, op.Entry.Dst)
			if op.Kind == kernel.Replace && op.Prev != (kernel.FDB{}) {
				what = kernel.FDBChange(op.Entry, op.Prev, b.names) + ", replaced"
			}
			add(s, ok, what)
		}
	}
	neighs(nset)
	fdbs(fset)
	for _, op := range rres.Done {
		what := fmt.Sprintf("route %s %s", verb(op.Kind), op.Route.Format(b.names))
		if op.Kind == kernel.Replace && op.Prev != (kernel.Route{}) {
			what = kernel.RouteChange(op.Route, op.Prev, b.names) + ", replaced"
		}
		add(op.Route.Dst, true, what)
	}
	fdbs(fdel)
	neighs(ndel)

	subnets := make([]netip.Prefix, 0, len(groups))
	for s := range groups {
		subnets = append(subnets, s)
	}
	slices.SortFunc(subnets, func(a, c netip.Prefix) int {
		return cmp.Or(a.Addr().Compare(c.Addr()), cmp.Compare(a.Bits(), c.Bits()))
	})
	// More than backend.BulkChanges peers (a start among thousands of
	// hosts) get one summary line at info and their own lines at debug.
	lvl := slog.LevelInfo
	kind := func(s netip.Prefix) string {
		cur, inCur := b.known[s]
		old, inPrev := prev[s]
		switch {
		case !inCur:
			return "peer removed"
		case !inPrev:
			return "peer added"
		case old != cur:
			return "peer changed"
		}
		return "peer repaired"
	}
	if len(subnets)+len(stale) > backend.BulkChanges {
		lvl = slog.LevelDebug
		n := map[string]int{}
		for _, s := range subnets {
			n[kind(s)]++
		}
		b.log.Info("peers programmed in bulk; one line per peer at debug level", "added", n["peer added"], "changed", n["peer changed"],
			"repaired", n["peer repaired"], "removed", n["peer removed"], "stale_entries", len(stale), "trigger", trigger)
	}
	ctx := context.Background()
	for _, s := range subnets {
		cur, inCur := b.known[s]
		old, inPrev := prev[s]
		msg := kind(s)
		p := cur
		if !inCur {
			p = old
		}
		args := []any{"subnet", s}
		if inCur || inPrev {
			mode := "vxlan"
			if p.direct {
				mode = "direct"
			}
			args = append(args, "peer", p.PublicIP, "vtep_mac", p.MAC, "mode", mode)
		}
		args = append(args, "changes", strings.Join(groups[s], "; "), "trigger", trigger)
		b.log.Log(ctx, lvl, msg, args...)
	}
	for _, what := range stale {
		b.log.Log(ctx, lvl, "stale entry removed", "entry", what, "trigger", trigger)
	}
}

// logDevice logs what ensureDevice changed, in one line.
func (b *Backend) logDevice(changes []change, trigger string) {
	if len(changes) == 0 {
		return
	}
	whats := make([]string, len(changes))
	for i, c := range changes {
		whats[i] = c.what
	}
	b.log.Info("device updated", "device", b.dev, "changes", strings.Join(whats, "; "), "trigger", trigger)
}

// count adds device and address changes to the repair counters and to
// counts; a nil counts (an Apply's) counts nothing.
func (b *Backend) count(changes []change, counts backend.Counts) {
	if counts == nil {
		return
	}
	for _, c := range changes {
		switch c.kind {
		case "device":
			b.repairs.device.Add(1)
			counts.Add(metrics.KindDevice, 1)
		case "address":
			b.repairs.address.Add(1)
			counts.Add(metrics.KindAddress, 1)
		}
	}
}

// Run repairs the device, its neighbours and FDB, and the peer routes until
// ctx is done: every ReconcilePeriod, and as soon as the kernel reports
// that a neighbour, FDB entry or route the last sync asked for was deleted
// or changed to anything else (kernel.NeighDrift, FDBDrift, RouteDrift),
// that the device or its address changed or went away, or that the
// external interface came up; with DirectRouting, any change of a route
// outside the network, which may change how a peer is reached. The
// kernel's echo of the backend's own writes equals the plan and calls for
// nothing. Before the first Apply it changes nothing. It returns nil when
// ctx is done.
//
// One loop serves both sides: a change that calls for a repair of either
// repairs both, which costs the other side a dump of its entries.
func (b *Backend) Run(ctx context.Context) error {
	sides := []*Backend{b}
	switch {
	case b.noIPv4:
		sides = []*Backend{b.v6}
	case b.v6 != nil:
		sides = append(sides, b.v6)
	}
	var watches []backend.Watch
	if !b.opts.NoSubscribe {
		ns := b.opts.Netns
		watches = []backend.Watch{
			backend.NewWatch("routes", ns, kernel.WatchRoutes, eitherSide(sides, (*Backend).routeTrigger)),
			backend.NewWatch("neighbours and fdb", ns, kernel.WatchNeighs, eitherSide(sides, (*Backend).neighTrigger)),
			backend.NewWatch("link changes", ns, kernel.WatchLinks, eitherSide(sides, (*Backend).linkTrigger)),
			backend.NewWatch("address changes", ns, kernel.WatchAddrs, eitherSide(sides, func(s *Backend, e kernel.AddrEvent) string {
				if e.LinkIndex == int(s.devIndex.Load()) {
					return "device address changed"
				}
				return ""
			})),
		}
	}
	return backend.RunRepairLoop(ctx, backend.RepairConfig{
		Period:  b.opts.ReconcilePeriod,
		Watches: watches,
		Repair: func(trigger string) backend.Counts {
			// Without IPv4 the driving Backend never applies, so its
			// repair is nothing.
			counts := b.repair(trigger)
			if b.v6 != nil {
				for kind, n := range b.v6.repair(trigger) {
					if counts == nil {
						counts = backend.Counts{}
					}
					counts.Add(kind, n)
				}
			}
			return counts
		},
		// The device's deletion takes all its entries at once; it names
		// the burst.
		Dominant: "device deleted",
		Log:      b.log,
		Metrics:  b.metrics,
	})
}

// eitherSide is a trigger that asks each side in turn and returns the
// first reason.
func eitherSide[E any](sides []*Backend, trigger func(*Backend, E) string) func(E) string {
	return func(e E) string {
		for _, s := range sides {
			if why := trigger(s, e); why != "" {
				return why
			}
		}
		return ""
	}
}

// linkTrigger says why a link change calls for a repair, "" when it does
// not.
func (b *Backend) linkTrigger(l kernel.LinkEvent) string {
	switch {
	case l.Name == b.dev && l.Deleted:
		return "device deleted"
	case l.Name == b.dev || l.Index == int(b.devIndex.Load()):
		return "device changed"
	case l.Index == b.ext.Index && l.Up:
		// Routes on a link that went down are flushed without a
		// deletion message; put direct routes back when it is up.
		return "external interface changed"
	}
	return ""
}

// neighTrigger says why a neighbour or FDB event calls for a repair, ""
// when it does not: the entry of a planned IP or MAC on the device was
// deleted or differs from the plan.
func (b *Backend) neighTrigger(e kernel.NeighEvent) string {
	if e.LinkIndex != int(b.devIndex.Load()) {
		return ""
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var drift string
	if e.FDB {
		drift = kernel.FDBDrift(b.plan.fdbs, e, b.names)
	} else {
		drift = kernel.NeighDrift(b.plan.neighs, e, b.names)
	}
	switch {
	case drift == "":
		return ""
	case e.FDB && e.Deleted:
		return "fdb entry deleted"
	case e.Deleted || (!e.FDB && e.MAC.IsZero()):
		// `ip neigh del` reports the entry as changed to FAILED, without
		// its lladdr, before it reports the deletion.
		return "neighbour deleted"
	}
	b.log.Debug("entry drifted from the plan", "drift", drift)
	if e.FDB {
		return "fdb entry changed"
	}
	return "neighbour changed"
}

// routeTrigger says why a route event calls for a repair, "" when it does
// not: the route of a planned destination was deleted or differs from the
// plan, or, with DirectRouting, any route outside the cluster network
// changed, which may change how a peer's PublicIP is reached.
func (b *Backend) routeTrigger(e kernel.RouteEvent) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e.Route.Dst.Addr().Is6() != b.ipv6 {
		// The other side's.
		return ""
	}
	if b.set.DirectRouting && !b.network.Contains(e.Route.Dst.Addr()) {
		return kernel.RouteTrigger(e)
	}
	drift := kernel.RouteDrift(b.plan.routes, e, kernel.PeerRouteOwner(b.network, b.own.Subnet), b.names)
	if drift == "" {
		return ""
	}
	b.log.Debug("route drifted from the plan", "drift", drift)
	return kernel.RouteTrigger(e)
}

// repair re-applies the last desired state and returns what it changed.
func (b *Backend) repair(trigger string) backend.Counts {
	b.reconciles.Add(1)
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.applied {
		return nil
	}
	res, err := b.sync(trigger)
	if err != nil {
		msg := err.Error()
		if b.failing["sync"] != msg {
			b.log.Warn("repair failed", "trigger", trigger, "err", msg)
		}
		b.failing = map[string]string{"sync": msg}
		return res.counts
	}
	failing := make(map[string]string, len(res.failures))
	for _, f := range res.failures {
		msg := f.err.Error()
		failing[f.entry] = msg
		if b.failing[f.entry] != msg {
			b.log.Warn("repair failed", "trigger", trigger, "err", msg)
		}
	}
	b.failing = failing
	return res.counts
}
