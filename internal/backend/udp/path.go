package udp

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	"github.com/weftnet/weft/internal/metrics"
	"github.com/weftnet/weft/internal/tun"
)

// sockOffloads says which offloads the socket has, and why not.
type sockOffloads struct {
	gso, gro       bool
	gsoErr, groErr error
}

// fastPath is what the data path got from the kernel: offloads on
// flannel0 and on the socket, each asked for and taken where granted. It
// also holds the seams through which tests play a kernel that refuses.
type fastPath struct {
	// openTun attaches to flannel0; nil means tun.Open.
	openTun func(name string, o tun.Options) (tun.Device, error)
	// probeSock turns on and reports the socket's offloads; nil means
	// probeSocket.
	probeSock func(c *net.UDPConn) sockOffloads
	// off is Options.NoOffload: nothing is asked of the kernel.
	off bool

	gsoOff atomic.Bool // read per batch by the tun loops

	mu        sync.Mutex
	tunKnown  bool
	tunOn     bool
	tunErr    error
	sockKnown bool
	sock      sockOffloads
	reported  string // the last path logged, so each change is logged once
}

func (b *Backend) open(name string, o tun.Options) (tun.Device, error) {
	if b.fast.openTun != nil {
		return b.fast.openTun(name, o)
	}
	return tun.Open(name, o)
}

// gsoOn says whether new batches may use UDP_SEGMENT.
func (b *Backend) gsoOn() bool { return !b.fast.gsoOff.Load() }

// setSockOffloads records what the socket got.
func (b *Backend) setSockOffloads(so sockOffloads) {
	f := &b.fast
	f.gsoOff.Store(!so.gso)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sock, f.sockKnown = so, true
	b.reportPathLocked()
}

// gsoRefused records that the kernel refused a UDP_SEGMENT send.
func (b *Backend) gsoRefused(err error) {
	f := &b.fast
	f.gsoOff.Store(true)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sock.gso, f.sock.gsoErr = false, err
	b.reportPathLocked()
}

// setTunOffload records what flannel0's queue got.
func (b *Backend) setTunOffload(dev tun.Device) {
	f := &b.fast
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tunOn, f.tunErr = dev.Offload()
	f.tunKnown = true
	b.reportPathLocked()
}

// Path says which data path runs (metrics.UDPPathOffload or
// UDPPathBatch), and which offloads the kernel granted, by their
// metrics.UDPOffload* names.
func (b *Backend) Path() (string, map[string]bool) {
	f := &b.fast
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pathLocked()
}

func (f *fastPath) pathLocked() (string, map[string]bool) {
	path := metrics.UDPPathBatch
	if f.tunOn {
		path = metrics.UDPPathOffload
	}
	return path, map[string]bool{
		metrics.UDPOffloadTun: f.tunOn,
		metrics.UDPOffloadGSO: f.sock.gso,
		metrics.UDPOffloadGRO: f.sock.gro,
	}
}

// reportPathLocked sets the path metric, and logs the path once it is
// known and whenever it changes: at Info when every offload is on, at
// Warn with the kernel's refusals otherwise. Callers hold fast.mu.
func (b *Backend) reportPathLocked() {
	f := &b.fast
	if !f.tunKnown || !f.sockKnown {
		return
	}
	path, on := f.pathLocked()
	b.metrics.SetUDPPath(path, on)
	summary := fmt.Sprintf("%s %v", path, on)
	if summary == f.reported {
		return
	}
	f.reported = summary
	args := []any{"path", path, metrics.UDPOffloadTun, f.tunOn, metrics.UDPOffloadGSO, f.sock.gso, metrics.UDPOffloadGRO, f.sock.gro}
	if f.off {
		b.log.Info("udp data path: offloads turned off (--udp-offload=false)", args...)
		return
	}
	refused := errors.Join(f.tunErr, f.sock.gsoErr, f.sock.groErr)
	if refused == nil {
		b.log.Info("udp data path", args...)
		return
	}
	msg := "the kernel refused offloads; the data path does without them"
	if !f.tunOn {
		msg = "the kernel refused flannel0's offloads; using the batched data path (slower, same wire format)"
	}
	b.log.Warn(msg, append(args, "refused", refused.Error())...)
}
