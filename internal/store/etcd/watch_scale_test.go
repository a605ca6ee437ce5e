package etcdstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/embedetcd/etcdtest"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/nstest"
	etcdstore "github.com/weftnet/weft/internal/store/etcd"
)

// TestWatchCoalescesWhileBusy: changes that arrive while fn is still busy
// with the previous snapshot reach it as one snapshot, not one per change,
// so a slow consumer never falls further behind than one call.
func TestWatchCoalescesWhileBusy(t *testing.T) {
	srv := etcdtest.StartForTest(t)
	cli := rawClient(t, srv)
	s := newStore(t, srv.Endpoint(), etcdstore.Options{})

	var (
		mu    sync.Mutex
		calls [][]lease.Lease
	)
	busy := make(chan struct{})
	release := make(chan struct{})
	var once, unblock sync.Once
	// Never leave Watch blocked in fn, even when the test fails early.
	free := func() { unblock.Do(func() { close(release) }) }
	fn := func(ls []lease.Lease) {
		mu.Lock()
		calls = append(calls, ls)
		n := len(calls)
		mu.Unlock()
		if n == 2 {
			// The first change after the snapshot: stay busy until the
			// rest of the burst is in etcd.
			once.Do(func() { close(busy) })
			<-release
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Watch(ctx, fn) }()
	t.Cleanup(func() {
		free()
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Watch returned %v", err)
		}
	})

	// The first put must come after the initial snapshot, so that it is
	// the second call: put earlier, it would be in the snapshot and no
	// second call would come.
	nstest.Eventually(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(calls) == 0 {
			return errors.New("no snapshot yet")
		}
		return nil
	})
	// An independent watcher tells when etcd has sent the whole burst out,
	// so that fn is released only once the store's stream has it too (or
	// nearly): released earlier, the test would measure how fast puts
	// trickle in under load, not whether queued ones are coalesced.
	wctx, wcancel := context.WithCancel(context.Background())
	defer wcancel()
	seen := make(chan struct{})
	wch := cli.Watch(wctx, subnetKey("10.7.1.0/24")[:strings.LastIndex(subnetKey("10.7.1.0/24"), "/")+1], clientv3.WithPrefix())
	go func() {
		n := 0
		for resp := range wch {
			if n += len(resp.Events); n >= 40 {
				close(seen)
				return
			}
		}
	}()
	putLease(t, cli, "10.7.1.0/24", attrs("192.168.7.1"), 0)
	select {
	case <-busy:
	case <-time.After(10 * time.Second):
		t.Fatal("the first put never reached fn")
	}
	for i := 2; i <= 40; i++ {
		putLease(t, cli, fmt.Sprintf("10.7.%d.0/24", i), attrs(fmt.Sprintf("192.168.7.%d", i)), 0)
	}
	select {
	case <-seen:
	case <-time.After(10 * time.Second):
		t.Fatal("an independent watcher never saw the 40 puts")
	}
	free()

	nstest.Eventually(t, 20*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if n := len(calls[len(calls)-1]); n != 40 {
			return fmt.Errorf("latest snapshot has %d leases, want 40", n)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	// Snapshot, the first put, then the 39 queued puts in a few calls (the
	// client hands queued responses over one at a time, so a drain may
	// find the next one not quite there yet), where one call per put would
	// make 41.
	if len(calls) > 10 {
		var sizes []string
		for _, c := range calls {
			sizes = append(sizes, fmt.Sprint(len(c)))
		}
		t.Errorf("%d calls for a snapshot and 40 puts, 39 of them while fn was busy (sizes %s); want at most 10", len(calls), strings.Join(sizes, " "))
	}
}

// TestWatchDeliversBeforeLookingUpExpirations: the first snapshot does not
// wait for a TimeToLive call per lease; it estimates, and the looked-up
// expirations follow in a later call.
func TestWatchDeliversBeforeLookingUpExpirations(t *testing.T) {
	srv := etcdtest.StartForTest(t)
	cli := rawClient(t, srv)
	// Leases of 10 minutes in a store whose own TTL (the estimate) is a
	// day: an estimate and a looked-up expiration cannot be mistaken.
	s := newStore(t, srv.Endpoint(), etcdstore.Options{WatchExpirations: true})
	for i := 1; i <= 20; i++ {
		putLease(t, cli, fmt.Sprintf("10.8.%d.0/24", i), attrs(fmt.Sprintf("192.168.8.%d", i)), 600)
	}
	got := startWatch(t, s)
	nstest.Eventually(t, 20*time.Second, func() error {
		ls, _ := got.last()
		if len(ls) != 20 {
			return fmt.Errorf("latest snapshot has %d leases", len(ls))
		}
		for _, l := range ls {
			if d := time.Until(l.Expiration); d > 11*time.Minute || d < 9*time.Minute {
				return fmt.Errorf("%s expires in %v, want about 10 minutes", l.Subnet, d)
			}
		}
		return nil
	})
	got.mu.Lock()
	first := got.calls[0]
	got.mu.Unlock()
	if len(first) != 20 {
		t.Fatalf("first snapshot has %d leases", len(first))
	}
	for _, l := range first {
		if d := time.Until(l.Expiration); d < 23*time.Hour {
			t.Errorf("first snapshot: %s expires in %v, want the store's one-day estimate (the lookups come later)", l.Subnet, d)
		}
	}
}

// TestWatchEstimatesExpirationsByDefault: without WatchExpirations no
// lease's expiration is looked up, however many deliveries follow; the
// estimate (the store's TTL) stands and reservations stay zero.
func TestWatchEstimatesExpirationsByDefault(t *testing.T) {
	srv := etcdtest.StartForTest(t)
	cli := rawClient(t, srv)
	s := newStore(t, srv.Endpoint(), etcdstore.Options{})
	for i := 1; i <= 20; i++ {
		putLease(t, cli, fmt.Sprintf("10.8.%d.0/24", i), attrs(fmt.Sprintf("192.168.8.%d", i)), 600)
	}
	putLease(t, cli, "10.8.99.0/24", attrs("192.168.8.99"), 0)
	got := startWatch(t, s)
	nstest.Eventually(t, 20*time.Second, func() error {
		if ls, _ := got.last(); len(ls) != 21 {
			return fmt.Errorf("latest snapshot has %d leases", len(ls))
		}
		return nil
	})
	// Another delivery: a batch of lookups, had one been started by the
	// first, would have had its chance to show.
	putLease(t, cli, "10.8.50.0/24", attrs("192.168.8.50"), 600)
	nstest.Eventually(t, 20*time.Second, func() error {
		if ls, _ := got.last(); len(ls) != 22 {
			return fmt.Errorf("latest snapshot has %d leases", len(ls))
		}
		return nil
	})
	ls, _ := got.last()
	for _, l := range ls {
		switch {
		case l.Subnet.String() == "10.8.99.0/24":
			if !l.Reservation() {
				t.Errorf("reservation %s has Expiration %v, want zero", l.Subnet, l.Expiration)
			}
		case time.Until(l.Expiration) < 23*time.Hour:
			t.Errorf("%s expires in %v, want the store's one-day estimate (no lookups without WatchExpirations)", l.Subnet, time.Until(l.Expiration))
		}
	}
}
