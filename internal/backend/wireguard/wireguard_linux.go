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

// plane is the in-process WireGuard device on flannel-wg.
type plane struct {
	dev    *device.Device // nil until the first reconcile made it
	index  int            // flannel-wg's ifindex when dev was made
	stale  bool           // an IpcSet failed: the device must be configured afresh
	fresh  bool           // made since the last Apply: it has no sessions, its peers may hold old ones
	ln     net.Listener   // the status socket; nil when there is none
	repair chan string    // asks Run for a repair: the device stopped on its own, or an IpcSet failed (Run's Extra)
}

// Start creates flannel-wg (or attaches to the one a previous agent left),
// runs the WireGuard device on it with this host's key and listen port,
// gives it the own subnet's network address as a /32, its MTU and the route
// for the whole Network. Peers come with Apply.
func (b *Backend) Start(ctx context.Context, own lease.Lease) error {
	if !own.Subnet.IsValid() || !own.Subnet.Addr().Is4() || !b.network.Contains(own.Subnet.Addr()) || own.Subnet.Bits() <= b.network.Bits() {
		return fmt.Errorf("wireguard: own lease %s is not a subnet of the network %s", own.Subnet, b.network)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started || b.closed {
		return errors.New("wireguard: Start called twice")
	}
	b.own = lease.Lease{Subnet: own.Subnet.Masked(), Attrs: own.Attrs}
	b.plane.repair = make(chan string, 1)
	if err := b.reconcileLocked("start", nil); err != nil {
		b.closeLocked()
		return fmt.Errorf("wireguard: %w", err)
	}
	b.started = true
	b.ownLease.Store(&b.own)
	return nil
}

// Apply makes the device's peers those of leases: every wireguard lease
// but our own. Only peers that differ are touched, so the sessions of the
// others go on. A peer whose public key changed (it rotated its key) loses
// its old session and handshakes anew with the new key.
func (b *Backend) Apply(ctx context.Context, leases []lease.Lease) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	own := b.ownLease.Load()
	if own == nil {
		return errors.New("wireguard: Apply before Start")
	}
	st := desire(b.network, *own, b.ext.PublicIP, b.pub, b.set.ListenPort, leases)

	b.amu.Lock()
	backend.NoteIgnored(b.log, BackendType, b.ignored, st.ignored)
	b.ignored = st.ignored
	b.amu.Unlock()

	b.mu.Lock()
	defer b.mu.Unlock()
	errs := st.errs
	if text := updateConfig(b.desired, st.peers, b.set); text != "" && b.plane.dev != nil && !b.plane.stale {
		if err := b.plane.dev.IpcSet(text); err != nil {
			// A repair, now, configures the device afresh from desired.
			b.plane.stale = true
			errs = append(errs, fmt.Errorf("wireguard: configure peers: %w", err))
			select {
			case b.plane.repair <- "peer configuration failed":
			default:
			}
		}
	}
	changes := diffPeers(b.desired, st.peers)
	b.logChanges(changes)
	b.desired = st.peers
	if b.plane.dev != nil && !b.plane.stale {
		var fresh []peer
		for _, c := range changes {
			if c.kind != "removed" {
				fresh = append(fresh, c.peer)
			}
		}
		b.greetLocked(fresh, b.plane.fresh)
		b.plane.fresh = false
	}
	return errors.Join(errs...)
}

// Close stops the WireGuard device and the status socket. flannel-wg, its
// address and route stay (the TUN device is persistent): while no agent
// runs, the kernel drops what is routed into it rather than sending pod
// traffic out of the default route in the clear. Run calls Close when its
// context is done.
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
	b.stopPlaneLocked()
	return nil
}

// stopPlaneLocked closes the device and the status socket.
func (b *Backend) stopPlaneLocked() {
	p := &b.plane
	if p.ln != nil {
		p.ln.Close()
		os.Remove(b.sockPath)
		p.ln = nil
	}
	if p.dev != nil {
		d := p.dev
		p.dev = nil
		d.Close()
	}
}

// Run keeps flannel-wg as Start made it until ctx is done: every
// ReconcilePeriod, as soon as the kernel reports that the device, its
// address or the Network route changed or went away, and when the device
// stopped on its own (reading the TUN failed because flannel-wg was
// deleted). A deleted flannel-wg is created again and the device
// configured afresh with every peer.
func (b *Backend) Run(ctx context.Context) error {
	b.mu.Lock()
	if !b.started || b.closed {
		b.mu.Unlock()
		return errors.New("wireguard: Run needs a started backend")
	}
	extra := b.plane.repair
	b.mu.Unlock()
	defer b.Close()

	var watches []backend.Watch
	if !b.opts.NoSubscribe {
		ns := b.opts.Netns
		watches = []backend.Watch{
			backend.NewWatch("link changes", ns, kernel.WatchLinks,
				func(e kernel.LinkEvent) string {
					if e.Name == DeviceName || int32(e.Index) == b.devIndex.Load() {
						return "device changed"
					}
					return ""
				}),
			backend.NewWatch("address changes", ns, kernel.WatchAddrs,
				func(e kernel.AddrEvent) string {
					if int32(e.LinkIndex) == b.devIndex.Load() {
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
		Extra:   extra,
		Log:     b.log,
		Metrics: b.metrics,
	})
	if err != nil {
		return fmt.Errorf("wireguard: %w", err)
	}
	return nil
}

// routeTrigger says why a route event calls for a repair: the Network
// route was deleted or differs from the one through flannel-wg.
func (b *Backend) routeTrigger(e kernel.RouteEvent) string {
	if e.Route.Dst != b.network {
		return ""
	}
	idx := int(b.devIndex.Load())
	plan := map[netip.Prefix]kernel.Route{b.network: networkRoute(b.network, idx)}
	owned := func(r kernel.Route) bool { return r.Dst == b.network && r.LinkIndex == idx }
	switch {
	case kernel.RouteDrift(plan, e, owned, nil) == "":
		return ""
	case e.Deleted:
		return "route deleted"
	}
	return "route changed"
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
		b.log.Warn("repair of flannel-wg failed; retrying", "trigger", trigger, "err", msg)
	}
	b.failing = msg
	return counts
}

// reconcileLocked makes the device run on flannel-wg with every desired
// peer, and flannel-wg have its MTU, be up, hold exactly the own /32 among
// its IPv4 addresses, and carry the Network route. One change's failure
// does not stop the others. Changes count as repairs in counts unless it
// is nil (Start's). Callers hold mu.
func (b *Backend) reconcileLocked(trigger string, counts backend.Counts) error {
	if b.closed {
		return nil
	}
	h := b.opts.Handle
	link, err := b.ensureDeviceLocked(trigger, counts)
	if err != nil {
		return err
	}
	var errs []error
	attrs := link.Attrs()
	mtu := b.MTU()
	if attrs.MTU != mtu {
		// ip link set flannel-wg mtu MTU
		if err := h.LinkSetMTU(link, mtu); err != nil {
			errs = append(errs, fmt.Errorf("set mtu %d on %s: %w", mtu, DeviceName, err))
		} else {
			b.changed(counts, trigger, metrics.KindDevice, "device mtu set", "mtu", mtu, "was", attrs.MTU)
		}
	}
	if attrs.Flags&net.FlagUp == 0 {
		// ip link set flannel-wg up
		if err := h.LinkSetUp(link); err != nil {
			errs = append(errs, fmt.Errorf("set %s up: %w", DeviceName, err))
		} else {
			b.changed(counts, trigger, metrics.KindDevice, "device set up")
		}
	}
	errs = append(errs, b.syncAddressLocked(link, trigger, counts))

	// ip route replace NETWORK dev flannel-wg proto 87
	idx := attrs.Index
	want := networkRoute(b.network, idx)
	owned := func(r kernel.Route) bool { return r.Dst == b.network && r.LinkIndex == idx }
	res, err := kernel.Sync(h, []kernel.Route{want}, owned)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	names := map[int]string{idx: DeviceName}
	backend.NoteRouteOps(res.Done, names, func(msg string, args ...any) {
		b.changed(counts, trigger, metrics.KindRoute, msg, args...)
	})
	for _, f := range res.Failed {
		errs = append(errs, f)
	}
	return errors.Join(errs...)
}

// syncAddressLocked leaves exactly the own subnet's network address, as a
// /32, among flannel-wg's IPv4 addresses, as flannel gives it. Callers
// hold mu.
func (b *Backend) syncAddressLocked(link netlink.Link, trigger string, counts backend.Counts) error {
	return backend.SyncDeviceAddr(b.opts.Handle, link, b.own.Subnet, func(what, addr string) {
		b.changed(counts, trigger, metrics.KindAddress, what, "addr", addr)
	})
}

// ensureDeviceLocked returns flannel-wg's link with the WireGuard device
// running on it, making both afresh when the device is not running, the
// link is gone or was replaced, or an IpcSet failed. Callers hold mu.
func (b *Backend) ensureDeviceLocked(trigger string, counts backend.Counts) (netlink.Link, error) {
	h := b.opts.Handle
	p := &b.plane
	link, err := h.LinkByName(DeviceName)
	exists := err == nil
	if err != nil && !errors.As(err, &netlink.LinkNotFoundError{}) {
		return nil, fmt.Errorf("look up %s: %w", DeviceName, err)
	}
	if p.dev != nil && !p.stale && exists && link.Attrs().Index == p.index && !isClosed(p.dev) {
		return link, nil
	}
	remade := p.dev != nil
	b.stopPlaneLocked()
	if exists && link.Type() != "tuntap" {
		// flannel's kernel WireGuard device (type wireguard): flannel too
		// deletes the device it finds and makes its own.
		if err := h.LinkDel(link); err != nil {
			return nil, fmt.Errorf("delete %s of type %s to make a TUN device in its place: %w", DeviceName, link.Type(), err)
		}
		b.log.Info("deleted a device of another type", "device", DeviceName, "type", link.Type())
		exists = false
	}
	var dev *device.Device
	err = netns.DoHandle(b.opts.Netns, func() error {
		// The TUN and the UDP sockets are made in this thread's
		// namespace: the TUN here, the bind when the device goes up.
		// internal/tun gives flannel-wg what udp gives flannel0:
		// persistence, and TSO/USO offloads where the kernel has them.
		td, err := tun.Open(DeviceName, tun.Options{Persist: true, Offload: true})
		if err != nil {
			return fmt.Errorf("create TUN device %s: %w", DeviceName, err)
		}
		if on, refused := td.Offload(); !on {
			b.log.Info("TUN offloads refused; flannel-wg moves one packet per read", "device", DeviceName, "err", refused)
		}
		// The MTU before the device starts: wireguard-go reads it once,
		// and the adapter reports no link events.
		if l, err := h.LinkByName(DeviceName); err == nil {
			if err := h.LinkSetMTU(l, b.MTU()); err != nil {
				b.log.Debug("cannot set the new device's MTU; the repair will", "device", DeviceName, "err", err)
			}
		}
		tdev := tun.WireGuard(td)
		// The bind opens its sockets on Up, below, in this namespace; the
		// adapter reports no link events, so the device never goes down
		// and up (and reopens them) on its own.
		dev = device.NewDevice(tdev, conn.NewStdNetBind(), b.wgLogger())
		if err := dev.IpcSet(deviceConfig(b.priv, b.set.ListenPort, b.desired, b.set)); err != nil {
			dev.Close()
			return fmt.Errorf("configure the WireGuard device: %w", err)
		}
		if err := dev.Up(); err != nil {
			dev.Close()
			return fmt.Errorf("bring the WireGuard device up (listen on UDP port %d): %w", b.set.ListenPort, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	link, err = h.LinkByName(DeviceName)
	if err != nil {
		dev.Close()
		return nil, fmt.Errorf("look up %s after creating it: %w", DeviceName, err)
	}
	if err := disableIPv6(b.opts.Netns); err != nil {
		b.log.Debug("cannot disable IPv6 on the device", "device", DeviceName, "err", err)
	}
	p.dev, p.index, p.stale, p.fresh = dev, link.Attrs().Index, false, true
	b.greetLocked(b.desired, true)
	b.devIndex.Store(int32(p.index))
	go func(repair chan string) {
		<-dev.Wait()
		// Our own Close stops the device too; then nobody listens.
		select {
		case repair <- "device stopped":
		default:
		}
	}(p.repair)
	if b.sockPath != "" {
		if err := b.listenStatusLocked(dev); err != nil {
			b.log.Warn("no status socket; weft status cannot show handshakes", "socket", b.sockPath, "err", err)
		}
	}
	switch {
	case remade || (!exists && counts != nil):
		b.changed(counts, trigger, metrics.KindDevice, "device created", "index", p.index, "peers", len(b.desired))
	default:
		b.log.Info("device running", "device", DeviceName, "index", p.index, "listen_port", b.set.ListenPort,
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
func (b *Backend) greetLocked(peers []peer, eager bool) {
	dev := b.plane.dev
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

// listenStatusLocked serves the device's UAPI on the status socket (mode
// 0600), for weft status and wg. Callers hold mu.
func (b *Backend) listenStatusLocked(dev *device.Device) error {
	os.Remove(b.sockPath)
	ln, err := net.Listen("unix", b.sockPath)
	if err != nil {
		return err
	}
	if err := os.Chmod(b.sockPath, 0o600); err != nil {
		ln.Close()
		return err
	}
	b.plane.ln = ln
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

// disableIPv6 turns IPv6 off on flannel-wg: this build carries IPv4 only,
// and with a link-local address the kernel would send router
// solicitations into the tunnel for nothing. A kernel without IPv6 has
// nothing to turn off.
func disableIPv6(ns *vns.NsHandle) error {
	// /proc/sys/net shows the namespace of the thread that opens it.
	err := netns.DoHandle(ns, func() error {
		return os.WriteFile("/proc/sys/net/ipv6/conf/"+DeviceName+"/disable_ipv6", []byte("1"), 0)
	})
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// wgLogger sends the device's log to the backend's, at debug level: it
// logs every failed handshake and send, which for one unreachable peer
// is a line every few seconds. `weft status --check` reports those peers.
// Unless debug logging is on, the device gets wireguard-go's discarding
// logger, so that its calls on the data path format nothing.
func (b *Backend) wgLogger() *device.Logger {
	if !b.log.Enabled(context.Background(), slog.LevelDebug) {
		return &device.Logger{Verbosef: device.DiscardLogf, Errorf: device.DiscardLogf}
	}
	return &device.Logger{
		Verbosef: func(format string, args ...any) { b.log.Debug(fmt.Sprintf(format, args...)) },
		Errorf:   func(format string, args ...any) { b.log.Debug(fmt.Sprintf(format, args...)) },
	}
}

// Status reads the device's state.
func (b *Backend) Status() (DeviceStatus, error) {
	b.mu.Lock()
	dev := b.plane.dev
	b.mu.Unlock()
	if dev == nil {
		return DeviceStatus{}, errors.New("wireguard: no device")
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
