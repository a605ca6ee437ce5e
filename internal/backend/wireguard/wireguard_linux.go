package wireguard

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	vns "github.com/vishvananda/netns"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/kernel"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/metrics"
	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/tun"
)

// supported reports whether this platform can run the backend.
func supported() error { return nil }

// plane is an in-process WireGuard device on its TUN device.
type plane struct {
	dev   *device.Device // nil until the first reconcile made it
	index int            // the TUN device's ifindex when dev was made
	stale bool           // an IpcSet failed: the device must be configured afresh
	fresh bool           // made since the last Apply: it has no sessions, its peers may hold old ones
	ln    net.Listener   // the status socket; nil when there is none
}

// Start creates the mode's devices (or attaches to those a previous agent
// left), runs a WireGuard device on each with this host's key and the
// device's listen port, gives each the own subnet of each family it
// carries (a /32, a /128), its MTU and the route of each of its networks.
// A device of this backend that the mode does not run (left by an agent
// configured otherwise) is deleted. Peers come with Apply.
func (b *Backend) Start(ctx context.Context, own lease.Lease) error {
	if b.network.IsValid() && (!own.Subnet.IsValid() || !own.Subnet.Addr().Is4() || !b.network.Contains(own.Subnet.Addr()) || own.Subnet.Bits() <= b.network.Bits()) {
		return fmt.Errorf("wireguard: own lease %s is not a subnet of the network %s", own.Subnet, b.network)
	}
	if b.network6.IsValid() && (own.IPv6Subnet.IsValid() || !b.network.IsValid()) &&
		(!own.IPv6Subnet.Addr().Is6() || !b.network6.Contains(own.IPv6Subnet.Addr()) || own.IPv6Subnet.Bits() <= b.network6.Bits()) {
		return fmt.Errorf("wireguard: own lease's IPv6 subnet %s is not a subnet of the IPv6Network %s", own.IPv6Subnet, b.network6)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started || b.closed {
		return errors.New("wireguard: Start called twice")
	}
	b.own = lease.Lease{Subnet: own.Subnet.Masked(), IPv6Subnet: own.IPv6Subnet.Masked(), Attrs: own.Attrs}
	b.removeUnusedLocked()
	if err := b.reconcileLocked("start", nil); err != nil {
		b.closeLocked()
		return fmt.Errorf("wireguard: %w", err)
	}
	b.started = true
	b.ownLease.Store(&b.own)
	return nil
}

// removeUnusedLocked deletes flannel-wg or flannel-wg-v6 when the mode
// does not run it and it is a TUN device (this backend's): its routes
// would otherwise black-hole what another device now carries. Callers
// hold mu.
func (b *Backend) removeUnusedLocked() {
	h := b.opts.Handle
	for _, name := range []string{DeviceName, DeviceNameV6} {
		if slices.ContainsFunc(b.devs, func(d *wgDev) bool { return d.Name == name }) {
			continue
		}
		link, err := h.LinkByName(name)
		if err != nil || link.Type() != "tuntap" {
			continue
		}
		if err := h.LinkDel(link); err != nil {
			b.log.Warn("cannot delete a device this mode does not use", "device", name, "mode", b.set.Mode, "err", err)
			continue
		}
		b.log.Info("deleted a device this mode does not use", "device", name, "mode", b.set.Mode)
	}
}

// Apply makes the devices' peers those of leases: every wireguard lease
// but our own, on the devices that carry its families. Only peers that
// differ are touched, so the sessions of the others go on. A peer whose
// public key changed (it rotated its key) loses its old session and
// handshakes anew with the new key.
func (b *Backend) Apply(ctx context.Context, leases []lease.Lease) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	own := b.ownLease.Load()
	if own == nil {
		return errors.New("wireguard: Apply before Start")
	}
	st := desire(b.plan(*own), leases)

	b.amu.Lock()
	backend.NoteIgnored(b.log, BackendType, b.ignored, st.ignored)
	b.ignored = st.ignored
	b.amu.Unlock()

	b.mu.Lock()
	defer b.mu.Unlock()
	errs := st.errs
	for _, d := range b.devs {
		next := st.devs[d.Name]
		p := &d.plane
		if text := updateConfig(d.desired, next, b.set); text != "" && p.dev != nil && !p.stale {
			if err := p.dev.IpcSet(text); err != nil {
				// A repair, now, configures the device afresh from desired.
				p.stale = true
				errs = append(errs, fmt.Errorf("wireguard: configure the peers of %s: %w", d.Name, err))
				select {
				case b.repair <- "peer configuration failed":
				default:
				}
			}
		}
		changes := diffPeers(d.desired, next)
		b.logChanges(d.Name, changes)
		d.desired = next
		if p.dev != nil && !p.stale {
			var fresh []peer
			for _, c := range changes {
				if c.kind != "removed" {
					fresh = append(fresh, c.peer)
				}
			}
			b.greetLocked(d, fresh, p.fresh)
			p.fresh = false
		}
	}
	return errors.Join(errs...)
}

// Close stops the WireGuard devices and the status sockets. The TUN
// devices, their addresses and routes stay (they are persistent): while
// no agent runs, the kernel drops what is routed into them rather than
// sending pod traffic out of the default route in the clear. Run calls
// Close when its context is done.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closeLocked()
}

func (b *Backend) closeLocked() error {
	if b.closed {
		return nil
	}
	b.closed = true
	for _, d := range b.devs {
		d.stopPlaneLocked()
	}
	return nil
}

// stopPlaneLocked closes the device and the status socket.
func (d *wgDev) stopPlaneLocked() {
	p := &d.plane
	if p.ln != nil {
		p.ln.Close()
		os.Remove(d.sockPath)
		p.ln = nil
	}
	if p.dev != nil {
		dev := p.dev
		p.dev = nil
		dev.Close()
	}
}

// Run keeps the devices as Start made them until ctx is done: every
// ReconcilePeriod, as soon as the kernel reports that a device, its
// addresses or routes changed or went away, and when a device stopped on
// its own (reading the TUN failed because the TUN device was deleted). A
// deleted device is created again and configured afresh with every peer.
func (b *Backend) Run(ctx context.Context) error {
	b.mu.Lock()
	if !b.started || b.closed {
		b.mu.Unlock()
		return errors.New("wireguard: Run needs a started backend")
	}
	b.mu.Unlock()
	defer b.Close()

	ours := func(name string, index int) bool {
		for _, d := range b.devs {
			if (name != "" && name == d.Name) || int32(index) == d.index.Load() {
				return true
			}
		}
		return false
	}
	var watches []backend.Watch
	if !b.opts.NoSubscribe {
		ns := b.opts.Netns
		watches = []backend.Watch{
			backend.NewWatch("link changes", ns, kernel.WatchLinks,
				func(e kernel.LinkEvent) string {
					if ours(e.Name, e.Index) {
						return "device changed"
					}
					return ""
				}),
			backend.NewWatch("address changes", ns, kernel.WatchAddrs,
				func(e kernel.AddrEvent) string {
					if ours("", e.LinkIndex) {
						return "address changed"
					}
					return ""
				}),
			backend.NewWatch("routes", ns, kernel.WatchRoutes, b.routeTrigger),
		}
	}
	err := backend.RunRepairLoop(ctx, backend.RepairConfig{
		Period:  b.opts.ReconcilePeriod,
		Watches: watches,
		Repair:  b.reconcile,
		Initial: "run",
		Extra:   b.repair,
		Log:     b.log,
		Metrics: b.metrics,
	})
	if err != nil {
		return fmt.Errorf("wireguard: %w", err)
	}
	return nil
}

// routes are the routes of d's networks through it, at ifindex idx, and
// owned accepts the routes at their destinations through it, which Sync
// may replace or delete.
func (d *wgDev) routes(idx int) (want []kernel.Route, owned func(kernel.Route) bool) {
	for _, n := range d.Networks {
		want = append(want, networkRoute(n, idx))
	}
	return want, func(r kernel.Route) bool { return slices.Contains(d.Networks, r.Dst) && r.LinkIndex == idx }
}

// routeTrigger says why a route event calls for a repair: a device's
// network route was deleted or differs from the one through it.
func (b *Backend) routeTrigger(e kernel.RouteEvent) string {
	for _, d := range b.devs {
		if !slices.Contains(d.Networks, e.Route.Dst) {
			continue
		}
		want, owned := d.routes(int(d.index.Load()))
		plan := make(map[netip.Prefix]kernel.Route, len(want))
		for _, r := range want {
			plan[r.Dst] = r
		}
		if kernel.RouteDrift(plan, e, owned, nil) == "" {
			return ""
		}
		return kernel.RouteTrigger(e)
	}
	return ""
}

// reconcile runs reconcileLocked and logs a failure once until it changes.
func (b *Backend) reconcile(trigger string) backend.Counts {
	b.mu.Lock()
	defer b.mu.Unlock()
	counts := backend.Counts{}
	err := b.reconcileLocked(trigger, counts)
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if msg != "" && msg != b.failing {
		b.log.Warn("repair of the wireguard devices failed; retrying", "trigger", trigger, "err", msg)
	}
	b.failing = msg
	return counts
}

// reconcileLocked reconciles every device; one device's failure does not
// stop the others'. Callers hold mu.
func (b *Backend) reconcileLocked(trigger string, counts backend.Counts) error {
	if b.closed {
		return nil
	}
	var errs []error
	for _, d := range b.devs {
		if err := b.reconcileDevLocked(d, trigger, counts); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", d.Name, err))
		}
	}
	return errors.Join(errs...)
}

// reconcileDevLocked makes a WireGuard device run on d with every desired
// peer, and d have its MTU, be up, hold exactly the own subnet's address
// of each family it carries, and carry its networks' routes. One change's
// failure does not stop the others. Changes count as repairs in counts
// unless it is nil (Start's). Callers hold mu.
func (b *Backend) reconcileDevLocked(d *wgDev, trigger string, counts backend.Counts) error {
	h := b.opts.Handle
	link, err := b.ensureDeviceLocked(d, trigger, counts)
	if err != nil {
		return err
	}
	var errs []error
	errs = append(errs, b.repairPeersLocked(d, trigger, counts))
	attrs := link.Attrs()
	mtu := b.MTU()
	if attrs.MTU != mtu {
		// ip link set DEV mtu MTU
		if err := h.LinkSetMTU(link, mtu); err != nil {
			errs = append(errs, fmt.Errorf("set mtu %d on %s: %w", mtu, d.Name, err))
		} else {
			b.changed(counts, d.Name, trigger, metrics.KindDevice, "device mtu set", "mtu", mtu, "was", attrs.MTU)
		}
	}
	if attrs.Flags&net.FlagUp == 0 {
		// ip link set DEV up
		if err := h.LinkSetUp(link); err != nil {
			errs = append(errs, fmt.Errorf("set %s up: %w", d.Name, err))
		} else {
			b.changed(counts, d.Name, trigger, metrics.KindDevice, "device set up")
		}
	}
	for _, own := range b.ownSubnets(d) {
		err := backend.SyncDeviceAddr(h, link, own, func(what, addr string) {
			b.changed(counts, d.Name, trigger, metrics.KindAddress, what, "addr", addr)
		})
		errs = append(errs, err)
	}

	// ip route replace NETWORK dev DEV proto 87, for each network
	idx := attrs.Index
	want, owned := d.routes(idx)
	res, err := kernel.Sync(h, want, owned)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	names := map[int]string{idx: d.Name}
	backend.NoteRouteOps(res.Done, names, func(msg string, args ...any) {
		b.changed(counts, d.Name, trigger, metrics.KindRoute, msg, args...)
	})
	for _, f := range res.Failed {
		errs = append(errs, f)
	}
	return errors.Join(errs...)
}

// repairPeersLocked puts back the peers of d that drifted from the last
// Apply's (someone ran `wg set` on the status socket, or removed a peer):
// a missing or changed peer is set again and greeted, an unknown one is
// removed; the others keep their sessions. Callers hold mu.
func (b *Backend) repairPeersLocked(d *wgDev, trigger string, counts backend.Counts) error {
	dev := d.plane.dev
	if dev == nil || d.plane.stale {
		return nil
	}
	text, err := dev.IpcGet()
	if err != nil {
		return fmt.Errorf("read the peers of %s: %w", d.Name, err)
	}
	st, err := ParseIpcGet(text)
	if err != nil {
		return fmt.Errorf("read the peers of %s: %w", d.Name, err)
	}
	fix, fixed, removed := peerDrift(st.Peers, d.desired, b.set)
	if fix == "" {
		return nil
	}
	if err := dev.IpcSet(fix); err != nil {
		return fmt.Errorf("repair the peers of %s: %w", d.Name, err)
	}
	b.changed(counts, d.Name, trigger, metrics.KindDevice, "peers repaired", "set", len(fixed), "removed", removed)
	b.greetLocked(d, fixed, true)
	return nil
}

// ownSubnets are the own subnets whose addresses d holds: that of each
// family it carries, when the own lease has one. Callers hold mu.
func (b *Backend) ownSubnets(d *wgDev) []netip.Prefix {
	var out []netip.Prefix
	for _, n := range d.Networks {
		own := b.own.Subnet
		if n.Addr().Is6() {
			own = b.own.IPv6Subnet
		}
		if own.IsValid() {
			out = append(out, own)
		}
	}
	return out
}

// carriesIPv6 says whether d carries pods' IPv6.
func (d *wgDev) carriesIPv6() bool {
	return slices.ContainsFunc(d.Networks, func(n netip.Prefix) bool { return n.Addr().Is6() })
}

// ensureDeviceLocked returns d's link with the WireGuard device running
// on it, making both afresh when the device is not running, the link is
// gone or was replaced, or an IpcSet failed. Callers hold mu.
func (b *Backend) ensureDeviceLocked(d *wgDev, trigger string, counts backend.Counts) (netlink.Link, error) {
	h := b.opts.Handle
	p := &d.plane
	link, err := h.LinkByName(d.Name)
	exists := err == nil
	if err != nil && !errors.As(err, &netlink.LinkNotFoundError{}) {
		return nil, fmt.Errorf("look up %s: %w", d.Name, err)
	}
	if p.dev != nil && !p.stale && exists && link.Attrs().Index == p.index && !isClosed(p.dev) {
		return link, nil
	}
	remade := p.dev != nil
	d.stopPlaneLocked()
	if exists && link.Type() != "tuntap" {
		// flannel's kernel WireGuard device (type wireguard): flannel too
		// deletes the device it finds and makes its own.
		if err := h.LinkDel(link); err != nil {
			return nil, fmt.Errorf("delete %s of type %s to make a TUN device in its place: %w", d.Name, link.Type(), err)
		}
		b.log.Info("deleted a device of another type", "device", d.Name, "type", link.Type())
		exists = false
	}
	var dev *device.Device
	err = netns.DoHandle(b.opts.Netns, func() error {
		// The TUN and the UDP sockets are made in this thread's
		// namespace: the TUN here, the bind when the device goes up.
		// internal/tun gives the device what udp gives flannel0:
		// persistence, and TSO/USO offloads where the kernel has them.
		td, err := tun.Open(d.Name, tun.Options{Persist: true, Offload: true})
		if err != nil {
			return fmt.Errorf("create TUN device %s: %w", d.Name, err)
		}
		if on, refused := td.Offload(); !on {
			b.log.Info("TUN offloads refused; the device moves one packet per read", "device", d.Name, "err", refused)
		}
		// The MTU before the device starts: wireguard-go reads it once,
		// and the adapter reports no link events.
		if l, err := h.LinkByName(d.Name); err == nil {
			if err := h.LinkSetMTU(l, b.MTU()); err != nil {
				b.log.Debug("cannot set the new device's MTU; the repair will", "device", d.Name, "err", err)
			}
		}
		tdev := tun.WireGuard(td)
		// The bind opens its sockets on Up, below, in this namespace; the
		// adapter reports no link events, so the device never goes down
		// and up (and reopens them) on its own.
		dev = device.NewDevice(tdev, conn.NewStdNetBind(), b.wgLogger(d.Name))
		if err := dev.IpcSet(deviceConfig(b.priv, d.Port, d.desired, b.set)); err != nil {
			dev.Close()
			return fmt.Errorf("configure the WireGuard device: %w", err)
		}
		if err := dev.Up(); err != nil {
			dev.Close()
			return fmt.Errorf("bring the WireGuard device up (listen on UDP port %d): %w", d.Port, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	link, err = h.LinkByName(d.Name)
	if err != nil {
		dev.Close()
		return nil, fmt.Errorf("look up %s after creating it: %w", d.Name, err)
	}
	if err := setIPv6(b.opts.Netns, d.Name, d.carriesIPv6()); err != nil {
		b.log.Debug("cannot turn IPv6 on or off on the device", "device", d.Name, "ipv6", d.carriesIPv6(), "err", err)
	}
	p.dev, p.index, p.stale, p.fresh = dev, link.Attrs().Index, false, true
	b.greetLocked(d, d.desired, true)
	d.index.Store(int32(p.index))
	go func(repair chan string) {
		<-dev.Wait()
		// Our own Close stops the device too; then nobody listens.
		select {
		case repair <- "device stopped":
		default:
		}
	}(b.repair)
	if d.sockPath != "" {
		if err := d.listenStatusLocked(dev); err != nil {
			b.log.Warn("no status socket; weft status cannot show handshakes", "device", d.Name, "socket", d.sockPath, "err", err)
		}
	}
	switch {
	case remade || (!exists && counts != nil):
		b.changed(counts, d.Name, trigger, metrics.KindDevice, "device created", "index", p.index, "peers", len(d.desired))
	default:
		b.log.Info("device running", "device", d.Name, "index", p.index, "listen_port", d.Port,
			"public_key", b.pub.String(), "attached", exists, "trigger", trigger)
	}
	return link, nil
}

// greetLocked starts a handshake with each of peers, so that a session
// exists before the first packet needs one. The side with the smaller
// public key starts at once, and starts again at greetRetries when no
// handshake completed by then; the other side starts only at greetLater,
// and only when there is still no session. A device that was
// just made (eager: an agent restart, or a repair) starts at once with
// every peer: the peers still hold sessions with the device that is gone,
// keep sending with them, and would start no handshake of their own.
//
// WireGuard keeps one handshake state per peer. When both sides start a
// handshake at once (the greeting on one side crosses the first packet of
// a pod on the other, or two agents start together), each answers the
// other's initiation, which replaces its own, and then drops the answer to
// its own: no session, and WireGuard itself tries again only 5 s later.
// The quick second attempt comes from one side only and well within the
// other side's 5 s, so it does not cross again. Callers hold mu.
func (b *Backend) greetLocked(d *wgDev, peers []peer, eager bool) {
	dev := d.plane.dev
	for _, p := range peers {
		smaller := bytes.Compare(b.pub[:], p.Key[:]) < 0
		retries := greetLater
		switch {
		case smaller:
			greet(dev, p.Key, false)
			retries = greetRetries
		case eager:
			greet(dev, p.Key, false)
		}
		// Later greetings act only while there is no session. The two
		// sides' times interleave, so that after two eager greetings
		// crossed (two devices made at once) the next attempts do not
		// cross again, and one that is lost under load is not the last.
		for _, d := range retries {
			time.AfterFunc(d, func() { greet(dev, p.Key, true) })
		}
	}
}

var (
	// greetRetries are when the side with the smaller key tries again.
	greetRetries = []time.Duration{300 * time.Millisecond, 1700 * time.Millisecond, 3500 * time.Millisecond}
	// greetLater are when the side with the greater key tries itself.
	greetLater = []time.Duration{time.Second, 2500 * time.Millisecond, 4500 * time.Millisecond}
)

// greet starts a handshake with the peer key of dev; unlessSession
// leaves a peer that has a session alone. A handshake sent less than 5 s
// ago blocks a new one in WireGuard, so a repeated greeting first drops
// the (sessionless) handshake state.
func greet(dev *device.Device, key Key, unlessSession bool) {
	wp := dev.LookupPeer(device.NoisePublicKey(key))
	if wp == nil {
		return
	}
	if unlessSession {
		text, err := dev.IpcGet()
		if err != nil {
			return // closed
		}
		st, err := ParseIpcGet(text)
		if err != nil {
			return
		}
		for _, ps := range st.Peers {
			if ps.Key == key && !ps.LastHandshake.IsZero() {
				return
			}
		}
		wp.ExpireCurrentKeypairs()
	}
	wp.SendKeepalive()
}

func isClosed(d *device.Device) bool {
	select {
	case <-d.Wait():
		return true
	default:
		return false
	}
}

// listenStatusLocked serves the device's UAPI on d's status socket (mode
// 0600), for weft status and wg. Callers hold mu.
func (d *wgDev) listenStatusLocked(dev *device.Device) error {
	os.Remove(d.sockPath)
	ln, err := net.Listen("unix", d.sockPath)
	if err != nil {
		return err
	}
	if err := os.Chmod(d.sockPath, 0o600); err != nil {
		ln.Close()
		return err
	}
	d.plane.ln = ln
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go dev.IpcHandle(c)
		}
	}()
	return nil
}

// setIPv6 turns IPv6 on a device on or off: on for a device that carries
// pods' IPv6 (a persistent TUN device an IPv4-only agent left has it
// off), off for one that does not, where with a link-local address the
// kernel would send router solicitations into the tunnel for nothing. A
// kernel without IPv6 has nothing to turn off.
func setIPv6(ns *vns.NsHandle, name string, on bool) error {
	v := "1"
	if on {
		v = "0"
	}
	// /proc/sys/net shows the namespace of the thread that opens it.
	err := netns.DoHandle(ns, func() error {
		return os.WriteFile("/proc/sys/net/ipv6/conf/"+name+"/disable_ipv6", []byte(v), 0)
	})
	if errors.Is(err, os.ErrNotExist) && !on {
		return nil
	}
	return err
}

// wgLogger sends the device's log to the backend's, at debug level: it
// logs every failed handshake and send, which for one unreachable peer
// is a line every few seconds. `weft status --check` reports those peers.
// Unless debug logging is on, the device gets wireguard-go's discarding
// logger, so that its calls on the data path format nothing.
func (b *Backend) wgLogger(dev string) *device.Logger {
	if !b.log.Enabled(context.Background(), slog.LevelDebug) {
		return &device.Logger{Verbosef: device.DiscardLogf, Errorf: device.DiscardLogf}
	}
	log := b.log.With("device", dev)
	return &device.Logger{
		Verbosef: func(format string, args ...any) { log.Debug(fmt.Sprintf(format, args...)) },
		Errorf:   func(format string, args ...any) { log.Debug(fmt.Sprintf(format, args...)) },
	}
}

// Status reads the state of flannel-wg, or of the mode's first device
// (flannel-wg-v6 in an IPv6-only network in Mode separate).
func (b *Backend) Status() (DeviceStatus, error) { return b.DeviceStatus(b.devs[0].Name) }

// DeviceStatus reads the state of the device named name.
func (b *Backend) DeviceStatus(name string) (DeviceStatus, error) {
	b.mu.Lock()
	var dev *device.Device
	for _, d := range b.devs {
		if d.Name == name {
			dev = d.plane.dev
		}
	}
	b.mu.Unlock()
	if dev == nil {
		return DeviceStatus{}, fmt.Errorf("wireguard: no device %s", name)
	}
	text, err := dev.IpcGet()
	if err != nil {
		return DeviceStatus{}, fmt.Errorf("wireguard: read the device's state: %w", err)
	}
	return ParseIpcGet(text)
}

// SetSocket sends the UAPI configuration text (wg set's, in the
// protocol's key=value form, without the "set=1" line) to the device
// behind the UAPI socket at path: an agent's status socket, or a
// standalone wireguard-go's /var/run/wireguard/<name>.sock. It fails with
// the device's errno when the device refuses it.
func SetSocket(path, text string, timeout time.Duration) error {
	c, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		return fmt.Errorf("connect to the wireguard socket: %w", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("set=1\n" + text + "\n")); err != nil {
		return fmt.Errorf("configure the device at %s: %w", path, err)
	}
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "errno="); ok {
			if v != "0" {
				return fmt.Errorf("the device at %s refused the configuration: errno %s", path, v)
			}
			return nil
		}
	}
	return fmt.Errorf("configure the device at %s: no answer: %w", path, cmp.Or(sc.Err(), io.ErrUnexpectedEOF))
}

// ReadStatusSocket asks an agent's device, through its status socket at
// path (StatusSocketName in its state directory), for its state.
func ReadStatusSocket(path string, timeout time.Duration) (DeviceStatus, error) {
	c, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		return DeviceStatus{}, fmt.Errorf("connect to the agent's wireguard status socket: %w", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("get=1\n\n")); err != nil {
		return DeviceStatus{}, fmt.Errorf("ask %s for the device's state: %w", path, err)
	}
	// The answer is key=value lines ending with an empty line.
	var text strings.Builder
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		if sc.Text() == "" {
			return ParseIpcGet(text.String())
		}
		text.WriteString(sc.Text() + "\n")
	}
	return DeviceStatus{}, fmt.Errorf("read the device's state from %s: %w", path, cmp.Or(sc.Err(), io.ErrUnexpectedEOF))
}
