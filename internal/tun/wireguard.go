package tun

import (
	"os"
	"sync"

	wgtun "golang.zx2c4.com/wireguard/tun"
)

// WireGuard adapts d to wireguard-go's tun.Device, so that
// golang.zx2c4.com/wireguard/device moves packets through a device this
// package opened, with its offloads, persistence and namespace.
//
// wireguard-go's device reads and writes with offsets of 16 bytes, which
// Headroom covers, and buffers of 64 KiB, in which the offload device
// coalesces. The adapter feeds no events: the device's owner calls
// device.Up itself, and sets the MTU on the link. The events channel is
// closed by Close, which ends wireguard-go's event reader. File returns
// nil: weft's devices keep their descriptor to themselves, and
// wireguard-go's device does not ask for it on Linux.
func WireGuard(d Device) wgtun.Device {
	return &wgAdapter{d: d, events: make(chan wgtun.Event)}
}

type wgAdapter struct {
	d         Device
	events    chan wgtun.Event
	closeOnce sync.Once
}

func (a *wgAdapter) File() *os.File { return nil }

func (a *wgAdapter) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	return a.d.Read(bufs, sizes, offset)
}

func (a *wgAdapter) Write(bufs [][]byte, offset int) (int, error) {
	return a.d.Write(bufs, offset)
}

func (a *wgAdapter) MTU() (int, error) { return a.d.MTU() }

func (a *wgAdapter) Name() (string, error) { return a.d.Name(), nil }

func (a *wgAdapter) Events() <-chan wgtun.Event { return a.events }

func (a *wgAdapter) BatchSize() int { return a.d.BatchSize() }

func (a *wgAdapter) Close() error {
	err := a.d.Close()
	a.closeOnce.Do(func() { close(a.events) })
	return err
}
