package udp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"
	vns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/kernel"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/metrics"
	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/tun"
)

// supported reports whether this platform can run the backend.
func supported() error { return nil }

// Start attaches to flannel0 (creating it), gives it the own subnet's
// network address as a /32, flannel0's MTU and the route for the whole
// Network, and binds the UDP socket to the external address and Port. The
// packet loops start with Run; until then the kernel queues what arrives.
func (b *Backend) Start(ctx context.Context, own lease.Lease) error {
	if !own.Subnet.IsValid() || !own.Subnet.Addr().Is4() || !b.network.Contains(own.Subnet.Addr()) || own.Subnet.Bits() <= b.network.Bits() {
		return fmt.Errorf("udp: own lease %s is not a subnet of the network %s", own.Subnet, b.network)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started || b.closed {
		return errors.New("udp: Start called twice")
	}
	b.own = lease.Lease{Subnet: own.Subnet.Masked(), Attrs: own.Attrs}

	local := netip.AddrPortFrom(b.ext.Addr, uint16(b.port))
	err := netns.DoHandle(b.opts.Netns, func() (err error) {
		b.sock, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(local))
		return err
	})
	if err != nil {
		return fmt.Errorf("udp: listen on %s: %w", local, err)
	}
	tuneSocket(b.sock)
	if err := b.reconcileLocked("start", nil); err != nil {
		b.closeLocked()
		return fmt.Errorf("udp: %w", err)
	}
	b.started = true
	b.ownLease.Store(&b.own)
	return nil
}

// Close detaches from flannel0 and closes the socket; flannel0, its
// address and route stay (the device is persistent). Run calls it when its
// context is done; call it directly only when Run never ran.
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
	var errs []error
	if b.dev != nil {
		errs = append(errs, b.dev.Close())
	}
	for _, q := range b.extra {
		errs = append(errs, q.Close())
	}
	if b.sock != nil {
		errs = append(errs, b.sock.Close())
	}
	return errors.Join(errs...)
}

// Run moves packets until ctx is done, and keeps flannel0 as Start made
// it: every ReconcilePeriod, and as soon as the kernel reports that the
// device, its address or the Network route changed or went away (the
// kernel's echo of the backend's own route calls for nothing). A deleted
// flannel0 is created again, and the loops move to it. When ctx is done Run
// detaches from flannel0, closes the socket and returns nil; it returns an
// error only when the socket fails for good.
func (b *Backend) Run(ctx context.Context) error {
	b.mu.Lock()
	if !b.started || b.closed || b.loops != nil {
		b.mu.Unlock()
		return errors.New("udp: Run needs a started backend and runs once")
	}
	l := &loops{b: b, devFailed: make(chan string, 1), fatal: make(chan error, 1)}
	b.loops = l
	l.start(b.sock)
	l.startTun(b.dev)
	for _, q := range b.extra {
		l.startTun(q)
	}
	b.mu.Unlock()
	defer l.wg.Wait()
	defer b.Close()

	var watches []backend.Watch
	if !b.opts.NoSubscribe {
		ns := b.opts.Netns
		watches = []backend.Watch{
			backend.NewWatch("link changes", ns, kernel.WatchLinks,
				func(e kernel.LinkEvent) string {
					if e.Name == DeviceName || int32(e.Index) == b.curIndex.Load() {
						return "device changed"
					}
					return ""
				}),
			backend.NewWatch("address changes", ns, kernel.WatchAddrs,
				func(e kernel.AddrEvent) string {
					if int32(e.LinkIndex) == b.curIndex.Load() {
						return "address changed"
					}
					return ""
				}),
			backend.NewWatch("routes", ns, kernel.WatchRoutes, b.routeTrigger),
		}
	}
	last := b.Stats()
	err := backend.RunRepairLoop(ctx, backend.RepairConfig{
		Period:  b.opts.ReconcilePeriod,
		Watches: watches,
		Repair:  b.reconcile,
		Initial: "run",
		Extra:   l.devFailed,
		Fatal:   l.fatal,
		OnTick:  func() { last = b.logDrops(last) },
		Log:     b.log,
		Metrics: b.metrics,
	})
	if err != nil {
		return fmt.Errorf("udp: %w", err)
	}
	return nil
}

// routeTrigger says why a route event calls for a repair, "" when it
// does not: the Network route was deleted, or differs from the one
// through flannel0 (kernel.RouteDrift).
func (b *Backend) routeTrigger(e kernel.RouteEvent) string {
	if e.Route.Dst != b.network {
		return ""
	}
	idx := int(b.curIndex.Load())
	plan := map[netip.Prefix]kernel.Route{b.network: networkRoute(b.network, idx)}
	owned := func(r kernel.Route) bool { return r.Dst == b.network && r.LinkIndex == idx }
	if kernel.RouteDrift(plan, e, owned, nil) == "" {
		return ""
	}
	return kernel.RouteTrigger(e)
}

// reconcile runs reconcileLocked, logs a failure once until it changes,
// and returns what it repaired.
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
		b.log.Warn("repair of flannel0 failed; retrying", "trigger", trigger, "err", msg)
	}
	b.failing = msg
	return counts
}

// markBroken notes that reading dev failed, so that the next reconcile
// attaches again, unless dev was replaced meanwhile.
func (b *Backend) markBroken(dev tun.Device) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dev == dev || slices.Contains(b.extra, dev) {
		b.broken = true
	}
}

// reconcileLocked makes flannel0 exist and be attached, with the MTU, up,
// exactly the own /32 among its IPv4 addresses, and the Network route
// through it. One change's failure does not stop the others. It counts
// its changes as repairs in counts, unless that is nil (Start's). Callers
// hold mu.
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
	if attrs.MTU != b.mtu {
		// ip link set flannel0 mtu MTU
		if err := h.LinkSetMTU(link, b.mtu); err != nil {
			errs = append(errs, fmt.Errorf("set mtu %d on %s: %w", b.mtu, DeviceName, err))
		} else {
			b.changed(counts, trigger, metrics.KindDevice, "device mtu set", "mtu", b.mtu, "was", attrs.MTU)
		}
	}
	if attrs.TxQLen != txQueueLen {
		// ip link set flannel0 txqueuelen 1000
		if err := h.LinkSetTxQLen(link, txQueueLen); err != nil {
			errs = append(errs, fmt.Errorf("set txqueuelen %d on %s: %w", txQueueLen, DeviceName, err))
		} else {
			b.changed(counts, trigger, metrics.KindDevice, "device queue set", "txqueuelen", txQueueLen, "was", attrs.TxQLen)
		}
	}
	if attrs.Flags&net.FlagUp == 0 {
		// ip link set flannel0 up
		if err := h.LinkSetUp(link); err != nil {
			errs = append(errs, fmt.Errorf("set %s up: %w", DeviceName, err))
		} else {
			b.changed(counts, trigger, metrics.KindDevice, "device set up")
		}
	}
	errs = append(errs, b.syncAddressLocked(link, trigger, counts))

	// ip route replace NETWORK dev flannel0 proto 87 (scope global, as
	// flannel's: the source of host-originated packets is then the
	// flannel0 address, which the peers route back here)
	want := networkRoute(b.network, b.devIndex)
	owned := func(r kernel.Route) bool { return r.Dst == b.network && r.LinkIndex == b.devIndex }
	res, err := kernel.Sync(h, []kernel.Route{want}, owned)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	names := map[int]string{b.devIndex: DeviceName}
	backend.NoteRouteOps(res.Done, names, func(msg string, args ...any) {
		b.changed(counts, trigger, metrics.KindRoute, msg, args...)
	})
	for _, f := range res.Failed {
		errs = append(errs, f)
	}
	return errors.Join(errs...)
}

// syncAddressLocked leaves exactly the own subnet's network address, as a
// /32, among flannel0's IPv4 addresses: flannel's choice, so that no
// broadcast routes appear and host-originated packets have a source that
// peers route back. Callers hold mu.
func (b *Backend) syncAddressLocked(link netlink.Link, trigger string, counts backend.Counts) error {
	return backend.SyncDeviceAddr(b.opts.Handle, link, b.own.Subnet, func(what, addr string) {
		b.changed(counts, trigger, metrics.KindAddress, what, "addr", addr)
	})
}

// ensureDeviceLocked returns flannel0's link, attaching to it again (and
// so creating it) when it is gone, was replaced, or reading it failed. A
// TUN device can be deleted (ip link del flannel0) while we hold its file
// descriptor: the kernel detaches the fd, which from then on only fails
// with EBADFD. Callers hold mu.
func (b *Backend) ensureDeviceLocked(trigger string, counts backend.Counts) (netlink.Link, error) {
	h := b.opts.Handle
	link, err := h.LinkByName(DeviceName)
	exists := err == nil
	if err != nil && !errors.As(err, &netlink.LinkNotFoundError{}) {
		return nil, fmt.Errorf("look up %s: %w", DeviceName, err)
	}
	if b.dev != nil && !b.broken && exists && link.Attrs().Index == b.devIndex {
		return link, nil
	}
	reopen := b.dev != nil
	if reopen {
		b.dev.Close()
		b.dev = nil
		for _, q := range b.extra {
			q.Close()
		}
		b.extra = nil
	}
	queues, err := b.openQueues()
	if err != nil {
		return nil, err
	}
	dev := queues[0]
	link, err = h.LinkByName(dev.Name())
	if err != nil {
		for _, q := range queues {
			q.Close()
		}
		return nil, fmt.Errorf("look up %s after attaching to it: %w", dev.Name(), err)
	}
	if err := disableIPv6(b.opts.Netns, dev.Name()); err != nil {
		b.log.Debug("cannot disable IPv6 on the device", "device", dev.Name(), "err", err)
	}
	b.dev, b.extra, b.devIndex, b.broken = dev, queues[1:], link.Attrs().Index, false
	b.cur.Store(&devRef{dev: dev})
	b.curIndex.Store(int32(b.devIndex))
	msg := "device attached"
	switch {
	case !exists:
		msg = "device created"
	case reopen:
		msg = "device reattached"
	}
	if reopen || !exists {
		b.changed(counts, trigger, metrics.KindDevice, msg, "index", b.devIndex)
	} else {
		b.log.Info(msg, "device", DeviceName, "index", b.devIndex, "trigger", trigger)
	}
	if b.loops != nil {
		for _, q := range queues {
			b.loops.startTun(q)
		}
	}
	return link, nil
}

// openQueues attaches to flannel0 with Options.Queues queues, in the
// backend's namespace. A single-queue flannel0 (left by an older agent or
// by flannel, persistent) refuses a multi-queue attach: then one queue is
// attached, and the log says how to get more.
func (b *Backend) openQueues() ([]tun.Device, error) {
	o := tun.Options{Persist: true, Offload: !b.fast.off}
	var queues []tun.Device
	err := netns.DoHandle(b.opts.Netns, func() (err error) {
		if b.opts.Queues > 1 {
			queues, err = tun.OpenQueues(DeviceName, b.opts.Queues, o)
			if err == nil || !errors.Is(err, unix.EINVAL) {
				return err
			}
			b.log.Warn("flannel0 is a single-queue device; attaching one queue (delete it to get more)", "queues", b.opts.Queues, "err", err)
		}
		dev, err := b.open(DeviceName, o)
		queues = []tun.Device{dev}
		return err
	})
	if err != nil {
		return nil, err
	}
	return queues, nil
}

// disableIPv6 turns IPv6 off on the device: the udp backend carries IPv4
// only (as flannel's), and with a link-local address the kernel would send
// router solicitations and MLD reports into flannel0 for nothing. A kernel
// without IPv6 has nothing to turn off.
func disableIPv6(ns *vns.NsHandle, name string) error {
	// /proc/sys/net shows the namespace of the thread that opens it.
	err := netns.DoHandle(ns, func() error {
		return os.WriteFile("/proc/sys/net/ipv6/conf/"+name+"/disable_ipv6", []byte("1"), 0)
	})
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// changed logs one kernel change, and counts it as a repair in counts
// unless that is nil (Start made it). Callers hold mu.
func (b *Backend) changed(counts backend.Counts, trigger, kind, msg string, args ...any) {
	b.log.Info(msg, append([]any{"device", DeviceName, "trigger", trigger}, args...)...)
	if counts != nil {
		b.repairs.Add(1)
		counts.Add(kind, 1)
	}
}

// logDrops logs what the data path dropped since last, in one line.
func (b *Backend) logDrops(last Stats) Stats {
	now := b.Stats()
	d := func(a, b uint64) uint64 { return a - b }
	if now.SendErrors != last.SendErrors || now.DeliverErrors != last.DeliverErrors ||
		now.Oversized != last.Oversized || now.Malformed != last.Malformed ||
		now.TTLExpired != last.TTLExpired || now.NoLease != last.NoLease {
		b.log.Info("packets dropped since the last report",
			"send_errors", d(now.SendErrors, last.SendErrors),
			"deliver_errors", d(now.DeliverErrors, last.DeliverErrors),
			"no_lease", d(now.NoLease, last.NoLease),
			"ttl_expired", d(now.TTLExpired, last.TTLExpired),
			"oversized", d(now.Oversized, last.Oversized),
			"malformed", d(now.Malformed, last.Malformed))
	}
	return now
}

// loops are the packet goroutines of one Run.
type loops struct {
	b         *Backend
	wg        sync.WaitGroup
	devFailed chan string // reading a device failed, not by Close: a trigger for a repair
	fatal     chan error  // the socket failed
}

// rxMessages is how many messages one receive asks for with UDP_GRO: each
// is a run of up to 64 datagrams in a 64 KiB buffer.
const rxMessages = 16

// start runs the socket → flannel0 direction.
func (l *loops) start(sock *net.UDPConn) {
	b := l.b
	so := b.probeSock(sock)
	b.setSockOffloads(so)
	var r *receiver
	var err error
	if so.gro {
		r, err = newReceiver(sock, rxMessages, groBufSize, true)
	} else {
		r, err = newReceiver(sock, batchSize, b.mtu+Overhead, false)
	}
	if err != nil {
		l.fatal <- err
		return
	}
	l.wg.Go(func() {
		sizes := make([]int, len(r.pkts))
		out := make([][]byte, len(r.pkts))
		var w tunWriter
		var st Stats
		for {
			n, bad, err := r.read(sizes)
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					select {
					case l.fatal <- fmt.Errorf("receive from %s: %w", sock.LocalAddr(), err):
					default:
					}
				}
				return
			}
			st.Malformed += uint64(bad)
			k := decap(r.pkts, sizes, n, b.mtu, out, &st)
			if k > 0 {
				m := w.write(b.cur.Load().dev, out[:k])
				st.Delivered += uint64(m)
				st.DeliverErrors += uint64(k - m)
			}
			b.stats.add(&st)
		}
	})
}

// tunWriter hands packets to flannel0. The offload device coalesces the
// segments of a flow into one super-packet (GRO) in the first segment's
// buffer, so each packet is copied into a buffer of its own, with
// Headroom in front and room for 64 KiB behind; the copy costs far less
// than the write(2) per packet it saves. The plain device takes the
// packets where they are.
type tunWriter struct {
	bufs [][]byte // Headroom + 64 KiB each, made on first use
	out  [][]byte
}

// write writes pkts to dev and returns how many it accepted.
func (w *tunWriter) write(dev tun.Device, pkts [][]byte) int {
	if on, _ := dev.Offload(); !on {
		m, _ := dev.Write(pkts, 0)
		return m
	}
	if w.bufs == nil {
		w.bufs = makeBufs(dev.BatchSize(), tun.Headroom+groBufSize)
		w.out = make([][]byte, len(w.bufs))
	}
	accepted := 0
	for len(pkts) > 0 {
		k := min(len(pkts), len(w.bufs))
		for i, p := range pkts[:k] {
			w.out[i] = w.bufs[i][:tun.Headroom+copy(w.bufs[i][tun.Headroom:], p)]
		}
		m, _ := dev.Write(w.out[:k], tun.Headroom)
		accepted += m
		pkts = pkts[k:]
	}
	return accepted
}

// maxReadErrors is how many failed reads of an offload device in a row
// make the loop attach to flannel0 again. One failed read is one
// super-packet wireguard-go could not split (a malformed one, or more
// segments than buffers), which costs that packet only.
const maxReadErrors = 16

// startTun runs the flannel0 → socket direction for dev. Each device gets
// its own goroutine and buffers, so the loop of a replaced device can
// finish its last batch while the new one starts.
func (l *loops) startTun(dev tun.Device) {
	b := l.b
	size := dev.BatchSize()
	s, err := newSender(b.sock, size, b.gsoOn())
	if err != nil {
		select {
		case l.fatal <- err:
		default:
		}
		return
	}
	b.setTunOffload(dev)
	offload, _ := dev.Offload()
	off := 0
	if offload {
		off = tun.Headroom
	}
	l.wg.Go(func() {
		bufs := makeBufs(size, off+b.mtu+Overhead)
		sizes := make([]int, size)
		tx := newTxBatch(size)
		ic := newICMPBatch(size)
		icOut := make([][]byte, size)
		var st Stats
		failures := 0
		for {
			n, err := dev.Read(bufs, sizes, off)
			if err != nil {
				if errors.Is(err, os.ErrClosed) {
					return
				}
				failures++
				if offload && !errors.Is(err, unix.EBADFD) && failures < maxReadErrors {
					st.Malformed++
					b.stats.add(&st)
					continue
				}
				b.log.Warn("reading flannel0 failed; attaching to it again", "err", err)
				b.markBroken(dev)
				select {
				case l.devFailed <- "device read failed":
				default:
				}
				return
			}
			failures = 0
			encap(b.peers.Load(), bufs, sizes, n, off, b.mtu, tx, ic, &st)
			if tx.n > 0 {
				sent, failed, _ := s.write(tx)
				st.Sent += uint64(sent)
				st.SendErrors += uint64(failed)
				if s.gsoErr != nil && b.gsoOn() {
					b.gsoRefused(s.gsoErr)
				}
			}
			if ic.n > 0 {
				for i := range ic.n {
					icOut[i] = ic.room[i][:tun.Headroom+len(ic.out[i])]
				}
				m, _ := dev.Write(icOut[:ic.n], tun.Headroom)
				st.ICMPSent += uint64(m)
			}
			b.stats.add(&st)
		}
	})
}

func makeBufs(n, size int) [][]byte {
	back := make([]byte, n*size)
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = back[i*size : (i+1)*size : (i+1)*size]
	}
	return bufs
}
