package tun

import (
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/nstest"
)

// Two namespaces, each with an offload device, joined by a pump in the
// test that copies what one device reads into the other:
//
//	ns A: wtun0 10.9.0.1/24 ==Read==> pump ==Write==> wtun0 10.9.0.2/24 :ns B
//
// TCP between them crosses both devices' offloads: the sender's kernel
// hands A's device 64 KiB super-packets, which Read splits; Write on B
// coalesces the segments again before the receiver's kernel sees them.

// pump copies packets from src to dst until src is closed, and records
// the most packets one Read returned.
func pump(t *testing.T, src, dst Device, most *atomic.Int64, done *sync.WaitGroup) {
	done.Go(func() {
		bufs := make([][]byte, src.BatchSize())
		for i := range bufs {
			bufs[i] = make([]byte, Headroom+65535)
		}
		sizes := make([]int, len(bufs))
		out := make([][]byte, len(bufs))
		for {
			n, err := src.Read(bufs, sizes, Headroom)
			if err != nil {
				if !errors.Is(err, os.ErrClosed) {
					t.Errorf("pump read: %v", err)
				}
				return
			}
			if int64(n) > most.Load() {
				most.Store(int64(n))
			}
			for i := range n {
				out[i] = bufs[i][:Headroom+sizes[i]]
			}
			if _, err := dst.Write(out[:n], Headroom); err != nil && !errors.Is(err, os.ErrClosed) {
				t.Errorf("pump write: %v", err)
			}
		}
	})
}

func offloadPair(t *testing.T, o Options) (nsA, nsB string, a, b Device) {
	t.Helper()
	nstest.RequireRoot(t)
	nsA, nsB = nstest.NewNS(t, "tta"), nstest.NewNS(t, "ttb")
	a, b = openIn(t, nsA, "wtun0", o), openIn(t, nsB, "wtun0", o)
	for _, x := range []struct{ ns, addr string }{{nsA, "10.9.0.1/24"}, {nsB, "10.9.0.2/24"}} {
		nstest.Exec(t, x.ns, "ip", "addr", "add", x.addr, "dev", "wtun0")
		nstest.Exec(t, x.ns, "ip", "link", "set", "wtun0", "up")
	}
	return nsA, nsB, a, b
}

// transfer sends size random bytes over TCP from nsA to 10.9.0.2 in nsB
// and fails the test unless the receiver's SHA-256 matches the sender's.
func transfer(t *testing.T, nsA, nsB string, size int) {
	t.Helper()
	var ln net.Listener
	if err := netns.Do(nsB, func() (err error) {
		ln, err = net.Listen("tcp4", "10.9.0.2:5001")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		sum [32]byte
		n   int64
		err error
	}
	got := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- result{err: err}
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(60 * time.Second))
		h := sha256.New()
		n, err := io.Copy(h, c)
		got <- result{sum: [32]byte(h.Sum(nil)), n: n, err: err}
	}()
	data := make([]byte, size)
	rng := rand.NewChaCha8([32]byte{15})
	_, _ = rng.Read(data)
	want := sha256.Sum256(data)
	if err := netns.Do(nsA, func() error {
		c, err := net.DialTimeout("tcp4", "10.9.0.2:5001", 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(60 * time.Second))
		_, err = c.Write(data)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.n != int64(size) || r.sum != want {
			t.Fatalf("received %d bytes with sha256 %x; sent %d with %x", r.n, r.sum, size, want)
		}
	case <-time.After(90 * time.Second):
		t.Fatal("transfer did not finish in 90 s")
	}
}

func TestOffloadCarriesTCPIntact(t *testing.T) {
	nsA, nsB, a, b := offloadPair(t, Options{Offload: true})
	for _, d := range []Device{a, b} {
		if on, refused := d.Offload(); !on {
			t.Fatalf("%s: offloads off (%v); this kernel has had them since 2.6", d.Name(), refused)
		}
	}
	var most atomic.Int64
	var wg sync.WaitGroup
	pump(t, a, b, &most, &wg)
	pump(t, b, a, new(atomic.Int64), &wg)
	transfer(t, nsA, nsB, 32<<20)
	a.Close()
	b.Close()
	wg.Wait()
	// A TCP sender on a TSO device hands it super-packets: one Read must
	// have returned several MTU-sized segments.
	if most.Load() < 2 {
		t.Errorf("most packets from one Read: %d; no super-packet was split", most.Load())
	}
	t.Logf("most packets from one Read: %d", most.Load())
}

func TestMultiQueueOffloadCarriesTCPIntact(t *testing.T) {
	nstest.RequireRoot(t)
	nsA, nsB := nstest.NewNS(t, "tta"), nstest.NewNS(t, "ttb")
	open := func(ns string) []Device {
		var ds []Device
		if err := netns.Do(ns, func() (err error) {
			ds, err = OpenQueues("wtun%d", 2, Options{Offload: true})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			for _, d := range ds {
				d.Close()
			}
		})
		return ds
	}
	qa, qb := open(nsA), open(nsB)
	if qa[1].Name() != "wtun0" {
		t.Errorf("second queue attached to %q, want the first queue's wtun0", qa[1].Name())
	}
	if out := nstest.Exec(t, nsA, "ip", "-d", "link", "show", "wtun0"); !strings.Contains(out, "multi_queue") {
		t.Errorf("ip -d link show wtun0:\n%s\nwant a multi_queue tun device", out)
	}
	for _, x := range []struct{ ns, addr string }{{nsA, "10.9.0.1/24"}, {nsB, "10.9.0.2/24"}} {
		nstest.Exec(t, x.ns, "ip", "addr", "add", x.addr, "dev", "wtun0")
		nstest.Exec(t, x.ns, "ip", "link", "set", "wtun0", "up")
	}
	// Each queue of A feeds B's queue of the same number and back: the
	// kernel picks a queue per flow, so any pairing carries the flow.
	var wg sync.WaitGroup
	for i := range 2 {
		pump(t, qa[i], qb[i], new(atomic.Int64), &wg)
		pump(t, qb[i], qa[i], new(atomic.Int64), &wg)
	}
	transfer(t, nsA, nsB, 8<<20)
	for _, d := range append(qa, qb...) {
		d.Close()
	}
	wg.Wait()
}

func TestOpenQueuesRefusesSingleQueueDevice(t *testing.T) {
	ns, _ := setup(t, Options{Persist: true})
	err := netns.Do(ns, func() error {
		ds, err := OpenQueues("wtun0", 2, Options{})
		for _, d := range ds {
			d.Close()
		}
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "not a multi-queue tun device") {
		t.Errorf("OpenQueues over a single-queue device: %v", err)
	}
}

// TestOffloadDeviceSharesPlainContract runs the plain device's contract
// checks that hold for both: a deleted device fails Read with an error
// that is not os.ErrClosed, and Close unblocks Read with os.ErrClosed.
func TestOffloadDeviceSharesPlainContract(t *testing.T) {
	ns, d := setup(t, Options{Persist: true, Offload: true})
	if on, _ := d.Offload(); !on {
		t.Fatal("offloads off")
	}
	errc := make(chan error, 1)
	go func() {
		bufs, sizes := makeBufs(d.BatchSize(), Headroom+65535)
		for {
			if _, err := d.Read(bufs, sizes, Headroom); err != nil {
				errc <- err
				return
			}
		}
	}()
	nstest.Exec(t, ns, "ip", "link", "del", "wtun0")
	select {
	case err := <-errc:
		if errors.Is(err, os.ErrClosed) || !strings.Contains(err.Error(), "read tun device wtun0") {
			t.Errorf("Read after deletion: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Read still blocked 2s after the device was deleted")
	}
	d.Close()
	if _, err := d.Read(make([][]byte, 1), make([]int, 1), Headroom); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Read after Close: %v, want os.ErrClosed", err)
	}
	if _, err := d.Write([][]byte{make([]byte, Headroom+20)}, 5); err == nil {
		t.Error("Write with an offset below the virtio-net header succeeded")
	}
}
