package tun_test

import (
	"testing"
	"time"

	"github.com/weftnet/weft/internal/tun"
	"github.com/weftnet/weft/internal/tun/tuntest"
)

func TestWireGuardAdapterPassesThrough(t *testing.T) {
	dev := tuntest.New("flannel-wg", 1420, 4)
	wg := tun.WireGuard(dev)
	if name, err := wg.Name(); name != "flannel-wg" || err != nil {
		t.Errorf("Name = %q, %v", name, err)
	}
	if mtu, err := wg.MTU(); mtu != 1420 || err != nil {
		t.Errorf("MTU = %d, %v", mtu, err)
	}
	if wg.BatchSize() != dev.BatchSize() {
		t.Errorf("BatchSize = %d, want the device's %d", wg.BatchSize(), dev.BatchSize())
	}
	dev.Inbound <- []byte("packet")
	bufs, sizes := [][]byte{make([]byte, 64)}, []int{0}
	if n, err := wg.Read(bufs, sizes, tun.Headroom); n != 1 || err != nil || string(bufs[0][tun.Headroom:tun.Headroom+sizes[0]]) != "packet" {
		t.Errorf("Read = %d, %v, %q", n, err, bufs[0][tun.Headroom:tun.Headroom+sizes[0]])
	}
	out := append(make([]byte, tun.Headroom), "reply"...)
	if n, err := wg.Write([][]byte{out}, tun.Headroom); n != 1 || err != nil || string(<-dev.Outbound) != "reply" {
		t.Errorf("Write = %d, %v", n, err)
	}
	if err := wg.Close(); err != nil {
		t.Fatal(err)
	}
	// wireguard-go's device ranges over Events until it is closed.
	select {
	case _, ok := <-wg.Events():
		if ok {
			t.Error("an event after Close")
		}
	case <-time.After(time.Second):
		t.Fatal("Events not closed by Close")
	}
	if err := wg.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
