// Package tuntest is a tun.Device made of channels, for unit tests of
// packet loops without root or a kernel: a test puts packets on Inbound as
// if the kernel had routed them into the device, and takes from Outbound
// what the code under test wrote into it.
package tuntest

import (
	"fmt"
	"os"
	"sync"

	"github.com/weftnet/weft/internal/tun"
)

// Device is a channel-backed tun.Device. Create it with New.
type Device struct {
	// Inbound carries the packets Read returns, one packet per receive.
	Inbound chan []byte
	// Outbound receives a copy of every packet Write accepts.
	Outbound chan []byte
	// Batch is what BatchSize reports; New sets 128, as the real devices.
	Batch int
	// Offloaded and Refused are what Offload reports, so that a test can
	// play a device with offloads on, or one whose offloads the kernel
	// refused. The fake never splits or coalesces: one packet in, one out.
	Offloaded bool
	Refused   error

	name      string
	mtu       int
	closeOnce sync.Once
	closed    chan struct{}
}

var _ tun.Device = (*Device)(nil)

// New returns a device called name with the given MTU; its channels hold
// up to depth packets each.
func New(name string, mtu, depth int) *Device {
	return &Device{
		Inbound:  make(chan []byte, depth),
		Outbound: make(chan []byte, depth),
		Batch:    128,
		name:     name,
		mtu:      mtu,
		closed:   make(chan struct{}),
	}
}

// Name returns the name New was given.
func (d *Device) Name() string { return d.name }

// MTU returns the MTU New was given.
func (d *Device) MTU() (int, error) { return d.mtu, nil }

// BatchSize returns Batch.
func (d *Device) BatchSize() int { return d.Batch }

// Offload returns Offloaded and Refused.
func (d *Device) Offload() (bool, error) { return d.Offloaded, d.Refused }

func (d *Device) errClosed(op string) error {
	return fmt.Errorf("%s %s: %w", op, d.name, os.ErrClosed)
}

// Read waits for a packet on Inbound, then takes whatever else is queued
// there, up to len(bufs), as the real device drains its queue.
func (d *Device) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	select {
	case <-d.closed:
		return 0, d.errClosed("read")
	case p := <-d.Inbound:
		sizes[0] = copy(bufs[0][offset:], p)
	}
	n := 1
	for n < len(bufs) {
		select {
		case p := <-d.Inbound:
			sizes[n] = copy(bufs[n][offset:], p)
			n++
		default:
			return n, nil
		}
	}
	return n, nil
}

// Write copies each packet to Outbound, blocking while Outbound is full,
// until the device is closed.
func (d *Device) Write(bufs [][]byte, offset int) (int, error) {
	for i, b := range bufs {
		p := append([]byte(nil), b[offset:]...)
		select {
		case <-d.closed:
			return i, d.errClosed("write")
		case d.Outbound <- p:
		}
	}
	return len(bufs), nil
}

// Close unblocks a pending Read or Write; later calls fail with
// os.ErrClosed. It may be called more than once.
func (d *Device) Close() error {
	d.closeOnce.Do(func() { close(d.closed) })
	return nil
}
