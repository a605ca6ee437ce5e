// Package integration runs real weft agents against a real etcd in a lab of
// network namespaces and checks what an operator would: a restart does not
// disturb pods, a departed host's routes go away, hand-deleted routes come
// back, and a deleted own lease is re-created.
//
//	            netns <p>-ul: switch sw0 10.4.7.12/24, etcd :2379
//	       ┌──────────────────┬──────────────────┐
//	eth0 10.4.7.21     eth0 10.4.7.22     eth0 10.4.7.23
//	netns <p>-h1       netns <p>-h2       netns <p>-h3
//	weft agent         weft agent         weft agent
//	cni0 ── pod h1p1   cni0 ── pod h2p1   cni0 ── pod h3p1
package integration

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/nstest"
)

const prefix = "/coreos.com/network"

func upLab(t *testing.T, hosts, pods int) *lab.Lab {
	t.Helper()
	return upLabBackend(t, hosts, pods, "host-gw")
}

func upLabBackend(t *testing.T, hosts, pods int, backend string) *lab.Lab {
	t.Helper()
	l, _ := upLabSpec(t, lab.Spec{Hosts: hosts, Pods: pods, Backend: backend})
	return l
}

// routeVia returns the gateway of the route to dst (IPv4 or IPv6) in the
// host's netns, or an invalid address when there is none.
func routeVia(t *testing.T, l *lab.Lab, host string, dst netip.Prefix) netip.Addr {
	t.Helper()
	family := "-4"
	if dst.Addr().Is6() {
		family = "-6"
	}
	out, err := exec.Command("ip", "-n", l.NS(host), family, "route", "show", "exact", dst.String()).CombinedOutput()
	if err != nil {
		t.Fatalf("ip route show in %s: %v: %s", host, err, out)
	}
	f := strings.Fields(string(out))
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "via" {
			return netip.MustParseAddr(f[i+1])
		}
	}
	return netip.Addr{}
}

func etcd(t *testing.T, l *lab.Lab) *clientv3.Client {
	t.Helper()
	c, err := l.EtcdClient()
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func subnetOf(t *testing.T, l *lab.Lab, host string) netip.Prefix {
	t.Helper()
	s, ok := l.Subnet(host)
	if !ok {
		t.Fatalf("no subnet for %s", host)
	}
	return s
}

func hostIP(t *testing.T, l *lab.Lab, host string) netip.Addr {
	t.Helper()
	h, ok := l.Topology().Host(host)
	if !ok {
		t.Fatalf("no host %s", host)
	}
	return h.Addr.Addr()
}

// A deleted lease (a host gone for good, or an admin's etcdctl del) takes
// the host's route off every peer within 2 s; a hand-deleted route comes
// back well within the reconcile period.
func TestLeaseDeletionAndRouteRepair(t *testing.T) {
	l := upLab(t, 3, 1)
	cli := etcd(t, l)
	s2, s3 := subnetOf(t, l, "h2"), subnetOf(t, l, "h3")

	// Someone deletes h2's route on h1: it is back in well under the 10 s
	// reconcile period, because the agent hears the deletion.
	if out, err := exec.Command("ip", "-n", l.NS("h1"), "route", "del", s2.String()).CombinedOutput(); err != nil {
		t.Fatalf("ip route del: %v: %s", err, out)
	}
	t0 := time.Now()
	nstest.Eventually(t, 2*time.Second, func() error {
		if got := routeVia(t, l, "h1", s2); got != hostIP(t, l, "h2") {
			return fmt.Errorf("route to %s via %v, want via %v", s2, got, hostIP(t, l, "h2"))
		}
		return nil
	})
	t.Logf("route restored after %v", time.Since(t0).Round(time.Millisecond))

	// The repair and the peers show on h1's /metrics.
	code, m, err := l.AgentGet("h1", "/metrics")
	if err != nil || code != 200 {
		t.Fatalf("GET /metrics on h1: %d %v", code, err)
	}
	for _, want := range []string{`weft_reconcile_repairs_total{kind="route"} 1`, `weft_peers{backend="host-gw"} 2`, "weft_peer_program_latency_seconds_count 2"} {
		if !strings.Contains(m, want) {
			t.Errorf("h1 /metrics lacks %q", want)
		}
	}

	// h3 leaves: stop its agent (its routes elsewhere stay, as they must on
	// a plain restart), then its lease is deleted.
	if err := l.StopAgent("h3", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if got := routeVia(t, l, "h1", s3); got != hostIP(t, l, "h3") {
		t.Fatalf("stopping h3's agent must not touch h1's route to it; via %v", got)
	}
	key := prefix + "/subnets/" + lease.KeyName(s3, netip.Prefix{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if r, err := cli.Delete(ctx, key); err != nil || r.Deleted != 1 {
		t.Fatalf("delete %s: deleted=%v err=%v", key, r, err)
	}
	t0 = time.Now()
	for _, h := range []string{"h1", "h2"} {
		nstest.Eventually(t, 2*time.Second, func() error {
			if got := routeVia(t, l, h, s3); got.IsValid() {
				return fmt.Errorf("%s still routes %s via %v", h, s3, got)
			}
			return nil
		})
	}
	t.Logf("peers dropped the route %v after the lease was deleted", time.Since(t0).Round(time.Millisecond))
}

// Restarting an agent keeps its subnet and its pods reachable throughout:
// pings every 10 ms from a pod on h1 to a pod on h2 lose nothing while h2's
// agent is stopped with SIGTERM and started again.
func TestRestartKeepsSubnetAndTraffic(t *testing.T) {
	l := upLab(t, 2, 1)
	cli := etcd(t, l)
	before := subnetOf(t, l, "h2")
	dst, ok := l.PodAddr("h2p1")
	if !ok {
		t.Fatal("no pod h2p1")
	}

	var sent, lost atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			_, err := lab.Ping(ctx, l.NS("h1p1"), dst)
			cancel()
			sent.Add(1)
			if err != nil {
				lost.Add(1)
			}
		}
	}()
	atLeast := func(n int64) {
		nstest.Eventually(t, 10*time.Second, func() error {
			if s := sent.Load(); s < n {
				return fmt.Errorf("%d pings sent", s)
			}
			return nil
		})
	}

	atLeast(20)
	if err := l.StopAgent("h2", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.StartAgent(ctx, "h2"); err != nil {
		t.Fatal(err)
	}
	atLeast(sent.Load() + 20)
	close(stop)
	<-done
	if lost.Load() != 0 {
		t.Fatalf("pings across the restart: %d sent, %d lost; want none lost", sent.Load(), lost.Load())
	}
	t.Logf("pings across the restart: %d sent, 0 lost", sent.Load())

	// Same subnet, and still exactly one key for h2 in etcd.
	resp, err := cli.Get(ctx, prefix+"/subnets/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	var mine []string
	for _, kv := range resp.Kvs {
		var a lease.Attrs
		if err := a.UnmarshalJSON(kv.Value); err == nil && a.PublicIP == hostIP(t, l, "h2") {
			mine = append(mine, string(kv.Key))
		}
	}
	want := prefix + "/subnets/" + lease.KeyName(before, netip.Prefix{})
	if len(mine) != 1 || mine[0] != want {
		t.Fatalf("after restart h2 holds %v, want exactly %s", mine, want)
	}
	if got := routeVia(t, l, "h1", before); got != hostIP(t, l, "h2") {
		t.Fatalf("h1's route to h2 after restart via %v", got)
	}
}

// An administrator deletes a running host's lease: the agent puts it back
// for the same subnet instead of exiting (flannel exits), and its peers'
// routes return.
func TestDeletedOwnLeaseIsRecreated(t *testing.T) {
	l := upLab(t, 2, 1)
	cli := etcd(t, l)
	s2 := subnetOf(t, l, "h2")
	key := prefix + "/subnets/" + lease.KeyName(s2, netip.Prefix{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	nstest.Eventually(t, 5*time.Second, func() error {
		r, err := cli.Get(ctx, key)
		if err != nil {
			return err
		}
		if len(r.Kvs) != 1 {
			return fmt.Errorf("%s not re-created", key)
		}
		if r.Kvs[0].Lease == 0 {
			return fmt.Errorf("%s re-created without a TTL", key)
		}
		return nil
	})
	nstest.Eventually(t, 5*time.Second, func() error {
		if got := routeVia(t, l, "h1", s2); got != hostIP(t, l, "h2") {
			return fmt.Errorf("h1 routes %s via %v", s2, got)
		}
		return nil
	})
}

func pingOnce(l *lab.Lab, fromNS string, dst netip.Addr) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return lab.Ping(ctx, l.NS(fromNS), dst)
}
