package backend_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	vns "github.com/vishvananda/netns"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/backend/backendtest"
	"github.com/weftnet/weft/internal/metrics"
)

// fakeWatch is a subscription a test feeds by hand; every Subscribe makes
// a new channel, which the test can end to simulate a failed socket.
type fakeWatch struct {
	mu     sync.Mutex
	subs   int
	ch     chan int
	refuse error // Subscribe fails with it while set
}

func (w *fakeWatch) subscribe(ctx context.Context, _ *vns.NsHandle, onError func(error)) (<-chan int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.refuse != nil {
		return nil, w.refuse
	}
	w.subs++
	w.ch = make(chan int)
	return w.ch, nil
}

func (w *fakeWatch) current() (chan int, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ch, w.subs
}

// repairLog records the triggers of the repairs a loop ran.
type repairLog struct {
	mu       sync.Mutex
	triggers []string
}

func (r *repairLog) repair(trigger string) backend.Counts {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.triggers = append(r.triggers, trigger)
	return backend.Counts{metrics.KindRoute: 1}
}

func (r *repairLog) has(trigger string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range r.triggers {
		if t == trigger {
			return nil
		}
	}
	return errors.New("no repair with trigger " + trigger + " yet")
}

func (r *repairLog) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.triggers)
}

// odd is the watch's rule: odd events call for a repair, even ones not.
func odd(n int) string {
	if n%2 == 1 {
		return "odd event"
	}
	return ""
}

func startLoop(t *testing.T, cfg backend.RepairConfig) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- backend.RunRepairLoop(ctx, cfg) }()
	var (
		once sync.Once
		err  error
	)
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-done
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

func TestRepairLoopRepairsOnReportsAndCountsByKind(t *testing.T) {
	w := &fakeWatch{}
	var rl repairLog
	m := metrics.New()
	stop := startLoop(t, backend.RepairConfig{
		Period:  time.Hour,
		Watches: []backend.Watch{backend.NewWatch("numbers", nil, w.subscribe, odd)},
		Repair:  rl.repair,
		Metrics: m,
	})
	eventually(t, 5*time.Second, func() error { return rl.has("start") })
	ch, _ := w.current()
	ch <- 2 // calls for nothing
	ch <- 3
	eventually(t, 5*time.Second, func() error { return rl.has("odd event") })
	if n := rl.count(); n != 2 {
		t.Errorf("repairs = %d (%v), want 2: start and the odd event", n, rl.triggers)
	}
	if got := backendtest.Repairs(t, m, metrics.KindRoute); got != 2 {
		t.Errorf("route repairs counted = %v, want 2", got)
	}
	if err := stop(); err != nil {
		t.Errorf("RunRepairLoop returned %v when its context ended, want nil", err)
	}
}

func TestRepairLoopCoalescesABurst(t *testing.T) {
	w := &fakeWatch{}
	release := make(chan struct{})
	var rl repairLog
	startLoop(t, backend.RepairConfig{
		Period:  time.Hour,
		Watches: []backend.Watch{backend.NewWatch("numbers", nil, w.subscribe, odd)},
		Repair: func(trigger string) backend.Counts {
			if trigger == "start" {
				<-release
			}
			return rl.repair(trigger)
		},
	})
	// While the first repair runs, a burst queues up behind it.
	var ch chan int
	eventually(t, 5*time.Second, func() error {
		if ch, _ = w.current(); ch == nil {
			return errors.New("not subscribed yet")
		}
		return nil
	})
	for i := range 6 {
		ch <- 2*i + 1
	}
	close(release)
	eventually(t, 5*time.Second, func() error { return rl.has("odd event") })
	// Each report passes two goroutines on its way to the loop, so when
	// the sixth has been taken the first four are surely queued and make
	// one repair; the last two may come later, one repair each.
	if n := rl.count(); n-1 > 3 {
		t.Errorf("a burst of 6 reports made %d repairs (%v), want it coalesced", n-1, rl.triggers)
	}
}

func TestRepairLoopResubscribesAndRepairsWhenAWatchEnds(t *testing.T) {
	w := &fakeWatch{}
	var rl repairLog
	startLoop(t, backend.RepairConfig{
		Period:  time.Hour,
		Watches: []backend.Watch{backend.NewWatch("numbers", nil, w.subscribe, odd)},
		Repair:  rl.repair,
	})
	eventually(t, 5*time.Second, func() error { return rl.has("start") })
	ch, _ := w.current()
	close(ch) // the socket overflowed
	eventually(t, 5*time.Second, func() error { return rl.has("watch restarted") })
	if _, subs := w.current(); subs != 2 {
		t.Errorf("subscriptions = %d, want 2: the first and the renewed one", subs)
	}
}

func TestRepairLoopRetriesARefusedSubscriptionOnTheTimer(t *testing.T) {
	w := &fakeWatch{refuse: errors.New("no netlink here")}
	var rl repairLog
	startLoop(t, backend.RepairConfig{
		Period:  10 * time.Millisecond,
		Watches: []backend.Watch{backend.NewWatch("numbers", nil, w.subscribe, odd)},
		Repair:  rl.repair,
	})
	eventually(t, 5*time.Second, func() error { return rl.has("timer") })
	w.mu.Lock()
	w.refuse = nil
	w.mu.Unlock()
	var ch chan int
	eventually(t, 5*time.Second, func() error {
		if ch, _ = w.current(); ch == nil {
			return errors.New("not subscribed yet")
		}
		return nil
	})
	ch <- 1
	eventually(t, 5*time.Second, func() error { return rl.has("odd event") })
}

func TestRepairLoopNamesABurstByItsDominantTrigger(t *testing.T) {
	extra := make(chan string, 4)
	release := make(chan struct{})
	var rl repairLog
	startLoop(t, backend.RepairConfig{
		Period: time.Hour,
		Repair: func(trigger string) backend.Counts {
			if trigger == "run" {
				<-release
			}
			return rl.repair(trigger)
		},
		Dominant: "device deleted",
		Extra:    extra,
		Initial:  "run",
	})
	extra <- "neighbour deleted"
	extra <- "device deleted"
	extra <- "route deleted"
	close(release)
	eventually(t, 5*time.Second, func() error { return rl.has("device deleted") })
	if err := rl.has("run"); err != nil {
		t.Errorf("the first repair: %v", err)
	}
	if n := rl.count(); n != 2 {
		t.Errorf("repairs %v, want the initial one and one for the burst", rl.triggers)
	}
}

func TestRepairLoopEndsWithAFatalError(t *testing.T) {
	fatal := make(chan error, 1)
	var rl repairLog
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fatal <- errors.New("socket gone")
	err := backend.RunRepairLoop(ctx, backend.RepairConfig{Period: time.Hour, Repair: rl.repair, Fatal: fatal})
	if err == nil || err.Error() != "socket gone" {
		t.Errorf("RunRepairLoop = %v, want the fatal error", err)
	}
}

// eventually waits for cond to hold, failing the test after timeout; it is
// nstest.Eventually, which is Linux-only, for this portable test.
func eventually(t *testing.T, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still after %v: %v", timeout, err)
		}
		time.Sleep(time.Millisecond)
	}
}
