package etcdstore_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/embedetcd/etcdtest"
	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/internal/store"
	etcdstore "github.com/weftnet/weft/internal/store/etcd"
)

// reports records what a store hands its trouble reporter, by op.
type reports struct {
	mu  sync.Mutex
	got []string // "op:cause" or "op:ok"
}

func (r *reports) add(op string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		r.got = append(r.got, op+":ok")
		return
	}
	r.got = append(r.got, op+":"+string(store.Classify(err)))
}

func (r *reports) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprint(r.got)
}

func (r *reports) has(s string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, g := range r.got {
		if g == s {
			return true
		}
	}
	return false
}

// TestConnectionLossIsReportedAtOnce: the client retries a broken
// connection by itself, so no call fails during a short outage; the store
// still names it as it starts (keepalive detects the silent partition)
// and says when the connection is back.
func TestConnectionLossIsReportedAtOnce(t *testing.T) {
	p := etcdtest.StartPartitionable(t)
	s := newStore(t, p.Endpoint(), etcdstore.Options{})
	var r reports
	s.ReportTrouble(r.add)
	got := startWatch(t, s)
	waitSnapshot(t, got, "")

	p.Cut()
	cut := time.Now()
	// Keepalive: a ping after 6 s of silence, 3 s to answer, then the
	// transport closes (13 s seen under load).
	nstest.Eventually(t, 30*time.Second, func() error {
		if !r.has("connection:unreachable") {
			return fmt.Errorf("no connection trouble reported yet (%v)", &r)
		}
		return nil
	})
	t.Logf("connection loss reported %v after the cut", time.Since(cut).Round(time.Millisecond))
	p.Heal()
	healed := time.Now()
	nstest.Eventually(t, 10*time.Second, func() error {
		if !r.has("connection:ok") {
			return fmt.Errorf("the connection's return was not reported (%v)", &r)
		}
		return nil
	})
	t.Logf("reconnection reported %v after the heal", time.Since(healed).Round(time.Millisecond))
}

// TestConfigChangesSignalsEdits: deleting or rewriting the config key is
// signalled at once, so the agent checks the config then rather than at
// its next periodic read.
func TestConfigChangesSignalsEdits(t *testing.T) {
	srv := etcdtest.StartForTest(t)
	cli := rawClient(t, srv)
	s := newStore(t, srv.Endpoint(), etcdstore.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	ch := s.ConfigChanges(ctx)
	// The watch must be in place before the edit: edit until it is seen.
	for _, edit := range []func() error{
		func() error { _, err := cli.Put(ctxT(t), s.ConfigKey(), `{"Network": "10.5.0.0/16"}`); return err },
		func() error { _, err := cli.Delete(ctxT(t), s.ConfigKey()); return err },
	} {
		deadline := time.After(10 * time.Second)
	wait:
		for {
			if err := edit(); err != nil {
				t.Fatal(err)
			}
			select {
			case <-ch:
				break wait
			case <-time.After(200 * time.Millisecond):
			case <-deadline:
				t.Fatal("no signal for an edit of the config key")
			}
		}
	}
	cancel()
	select {
	case _, ok := <-ch:
		for ok {
			_, ok = <-ch
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the channel was not closed after ctx ended")
	}
}
