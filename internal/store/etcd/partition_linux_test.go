package etcdstore_test

// These tests need root: etcd runs in a network namespace of its own,
// reached from the test (the agent's side) through a router namespace, so
// that a DROP rule there can partition the two the way a failed link or
// firewall does (packets vanish; nothing is refused):
//
//	store under test (root ns) ── router (netns, iptables DROP) ── embedded etcd (netns)

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/embedetcd/etcdtest"
	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/internal/store"
	etcdstore "github.com/weftnet/weft/internal/store/etcd"
)

// freshClient is a new etcd client; one made after a heal connects at once,
// so what it writes is in etcd a moment after the heal.
func freshClient(t *testing.T, p *etcdtest.Partitionable) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{p.Endpoint()}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// partitionFor is how long the partition lasts: longer than the TCP
// retransmission and gRPC reconnect backoffs grow in, as the lab's 20 s
// outages were.
const partitionFor = 20 * time.Second

// TestWatchResumesSoonAfterPartition partitions a watching store from etcd
// for 20 s while the store is probed every 5 s as the agent does, heals
// the partition, writes a lease and measures how long the watch takes to
// deliver it. Before keepalives and a short reconnect backoff this took
// 12.3 s here and 17–21 s in the lab after longer outages; now it is under
// a second (docs/benchmarks.md).
func TestWatchResumesSoonAfterPartition(t *testing.T) {
	p := etcdtest.StartPartitionable(t)
	s := newStore(t, p.Endpoint(), etcdstore.Options{})
	got := startWatch(t, s)
	waitSnapshot(t, got, "")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	probed := make(chan struct{})
	go func() {
		// The agent's probe: a config read every 5 s, each bounded by 5 s.
		defer close(probed)
		for {
			pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
			_, _ = s.RawConfig(pctx)
			pcancel()
			select {
			case <-ctx.Done():
				return
			case <-time.After(5 * time.Second):
			}
		}
	}()

	p.Cut()
	cutAt := time.Now()
	<-time.After(partitionFor) // the fault's length, not synchronisation
	p.Heal()
	healed := time.Now()
	t.Logf("partitioned for %v", healed.Sub(cutAt).Round(time.Millisecond))

	putLease(t, freshClient(t, p), "10.5.1.0/24", attrs("192.0.2.1"), 0)
	written := time.Now()
	nstest.Eventually(t, 8*time.Second, func() error {
		if ls, n := got.last(); n == 0 || subnetsOf(ls) != "10.5.1.0/24=192.0.2.1" {
			return fmt.Errorf("watch has not delivered the lease written after the heal (latest %q)", subnetsOf(ls))
		}
		return nil
	})
	seen := time.Now()
	t.Logf("lease written %v after the heal; watch delivered it %v after the write (%v after the heal)",
		written.Sub(healed).Round(time.Millisecond), seen.Sub(written).Round(time.Millisecond), seen.Sub(healed).Round(time.Millisecond))
	cancel()
	<-probed
}

// TestCallWhileCutOffSaysUnreachable starts a store while etcd's answers
// are dropped: a read bounded by 1 s (as the agent's first config read is)
// returns in about that time with an error that names etcd's endpoint and
// classifies as unreachable, rather than hanging or blaming the config.
func TestCallWhileCutOffSaysUnreachable(t *testing.T) {
	p := etcdtest.StartPartitionable(t)
	p.Cut()
	s := newStore(t, p.Endpoint(), etcdstore.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	_, err := s.Config(ctx)
	took := time.Since(start)
	if err == nil {
		t.Fatal("Config succeeded through the partition")
	}
	t.Logf("Config returned after %v: %v", took.Round(time.Millisecond), err)
	if took > 2*time.Second {
		t.Errorf("Config took %v, want about the caller's 1 s", took)
	}
	if c := store.Classify(err); c != store.CauseUnreachable {
		t.Errorf("Classify = %q, want unreachable", c)
	}
	if !strings.Contains(err.Error(), p.Endpoint()) {
		t.Errorf("error %q does not name etcd's endpoint %s", err, p.Endpoint())
	}

	// Once the path is back, the same store reads again.
	p.Heal()
	nstest.Eventually(t, 8*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := s.RawConfig(ctx)
		if err != nil && store.Classify(err) != store.CauseNoConfig {
			return err
		}
		return nil
	})
}
