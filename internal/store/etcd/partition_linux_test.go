package etcdstore_test

// These tests need root: etcd runs in a network namespace of its own,
// reached from the test (the agent's side) through a router namespace, so
// that a DROP rule there can partition the two the way a failed link or
// firewall does (packets vanish; nothing is refused):
//
//	store under test (root ns) ── router (netns, iptables DROP) ── embedded etcd (netns)

import (
	"context"
	"crypto/rand"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/embedetcd"
	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/nstest"
	etcdstore "github.com/weftnet/weft/internal/store/etcd"
)

// execHost runs ip(8) in the test's own namespace.
func execHost(args ...string) (string, error) {
	out, err := exec.Command("ip", args...).CombinedOutput()
	return string(out), err
}

// partitionedEtcd is an etcd member behind a router that a test can make
// drop packets.
type partitionedEtcd struct {
	t        *testing.T
	router   string // the namespace between the test and etcd
	endpoint string
}

// startPartitionable starts etcd in a fresh namespace that the test's own
// namespace reaches through a router namespace:
//
//	test (root ns) 10.213.N.1 ── veth ── 10.213.N.2 router 10.213.N.5 ── veth ── 10.213.N.6 etcd
//
// The router is where faults are injected, so that neither end's own
// stack sees its packets refused (a DROP in a host's OUTPUT chain is
// reported back to TCP, which retries at once; on the path it is silent,
// as a failed link or firewall is). Everything is removed when the test
// ends.
func startPartitionable(t *testing.T) *partitionedEtcd {
	t.Helper()
	nstest.RequireRoot(t)
	nstest.RequireTools(t, "ip", "iptables")
	router := nstest.NewNS(t, "sr")
	etcdNS := nstest.NewNS(t, "se")
	host := nstest.UniqueName("wse")
	var b [1]byte
	_, _ = rand.Read(b[:])
	// A /29 out of 10.213.0.0/16 picked at random, so that parallel runs
	// do not share one.
	n := fmt.Sprintf("10.213.%d.", b[0]&^7)
	ip := func(args ...string) {
		t.Helper()
		if out, err := execHost(args...); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	ip("link", "add", host, "type", "veth", "peer", "name", "toagent", "netns", router)
	t.Cleanup(func() { _, _ = execHost("link", "del", host) })
	ip("addr", "add", n+"1/30", "dev", host)
	ip("link", "set", host, "up")
	ip("route", "add", n+"4/30", "via", n+"2")
	nstest.Exec(t, router, "ip", "link", "add", "toetcd", "type", "veth", "peer", "name", "eth0", "netns", etcdNS)
	nstest.Exec(t, router, "ip", "addr", "add", n+"2/30", "dev", "toagent")
	nstest.Exec(t, router, "ip", "addr", "add", n+"5/30", "dev", "toetcd")
	nstest.Exec(t, router, "ip", "link", "set", "toagent", "up")
	nstest.Exec(t, router, "ip", "link", "set", "toetcd", "up")
	nstest.Exec(t, router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	nstest.Exec(t, etcdNS, "ip", "addr", "add", n+"6/30", "dev", "eth0")
	nstest.Exec(t, etcdNS, "ip", "link", "set", "eth0", "up")
	nstest.Exec(t, etcdNS, "ip", "link", "set", "lo", "up")
	nstest.Exec(t, etcdNS, "ip", "route", "add", "default", "via", n+"5")

	var srv *embedetcd.Server
	// Listening sockets stay in the namespace they were created in; etcd
	// creates them before Start returns.
	err := netns.Do(etcdNS, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		var err error
		srv, err = embedetcd.Start(ctx, embedetcd.Options{
			Dir:       filepath.Join(t.TempDir(), "etcd"),
			ClientURL: "http://" + n + "6:2379",
			PeerURL:   "http://127.0.0.1:2380",
		})
		return err
	})
	if err != nil {
		t.Fatalf("start etcd in %s: %v", etcdNS, err)
	}
	t.Cleanup(srv.Close)
	return &partitionedEtcd{t: t, router: router, endpoint: srv.Endpoint()}
}

// cut makes the router drop everything etcd sends towards the store, as
// the common way to "block etcd" on an agent's host does (iptables -I
// INPUT -s <etcd> -j DROP): requests still arrive, and etcd's answers are
// lost and retransmitted with a growing backoff.
func (p *partitionedEtcd) cut() {
	nstest.Exec(p.t, p.router, "iptables", "-I", "FORWARD", "-i", "toetcd", "-j", "DROP")
}

// heal removes the DROP rule.
func (p *partitionedEtcd) heal() {
	nstest.Exec(p.t, p.router, "iptables", "-D", "FORWARD", "-i", "toetcd", "-j", "DROP")
}

// client is a fresh etcd client; one made after a heal connects at once,
// so what it writes is in etcd a moment after the heal.
func (p *partitionedEtcd) client() *clientv3.Client {
	p.t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{p.endpoint}, DialTimeout: 5 * time.Second})
	if err != nil {
		p.t.Fatalf("etcd client: %v", err)
	}
	p.t.Cleanup(func() { cli.Close() })
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
// 17–21 s (docs/benchmarks.md).
func TestWatchResumesSoonAfterPartition(t *testing.T) {
	p := startPartitionable(t)
	s := newStore(t, p.endpoint, etcdstore.Options{})
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

	p.cut()
	cutAt := time.Now()
	<-time.After(partitionFor) // the fault's length, not synchronisation
	p.heal()
	healed := time.Now()
	t.Logf("partitioned for %v", healed.Sub(cutAt).Round(time.Millisecond))

	putLease(t, p.client(), "10.5.1.0/24", attrs("192.0.2.1"), 0)
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
