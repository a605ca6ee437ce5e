package integration

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/internal/subnetenv"
)

// A mixed cluster: the config gains EnableIPv6 and one host (h2) is
// restarted on it while h1 still runs with the IPv4-only config it read.
// h2 keeps its IPv4 subnet under a dual-stack key (one key, moved in one
// transaction), writes the IPv6 lines of subnet.env, says at ERROR that
// IPv6 is leased but not programmed, and IPv4 traffic between the hosts'
// pods keeps flowing both ways; h1 reads h2's new key as a peer.
func TestMixedClusterGainsIPv6(t *testing.T) {
	l := upLab(t, 2, 1)
	cli := etcd(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	before := subnetOf(t, l, "h2")
	cfgKey := prefix + "/config"
	resp, err := cli.Get(ctx, cfgKey)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("read config: %v %v", resp, err)
	}
	old := string(resp.Kvs[0].Value)
	dual := strings.Replace(old, `{"Network":`, `{"EnableIPv6": true, "IPv6Network": "fd00:10:244::/56", "Network":`, 1)
	if dual == old {
		t.Fatalf("cannot add IPv6 to the lab's config %s", old)
	}
	if _, err := cli.Put(ctx, cfgKey, dual); err != nil {
		t.Fatal(err)
	}

	if err := l.StopAgent("h2", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := l.StartAgent(ctx, "h2"); err != nil {
		t.Fatal(err)
	}
	if got := subnetOf(t, l, "h2"); got != before {
		t.Fatalf("h2 moved from %s to %s when IPv6 was enabled", before, got)
	}

	// Exactly one key for h2, now dual-stack, with the same IPv4 subnet.
	var keys []string
	var v6 netip.Prefix
	nstest.Eventually(t, 10*time.Second, func() error {
		r, err := cli.Get(ctx, prefix+"/subnets/", clientv3.WithPrefix())
		if err != nil {
			return err
		}
		keys = keys[:0]
		for _, kv := range r.Kvs {
			var a lease.Attrs
			if a.UnmarshalJSON(kv.Value) == nil && a.PublicIP == hostIP(t, l, "h2") {
				keys = append(keys, string(kv.Key))
			}
		}
		if len(keys) != 1 {
			return fmt.Errorf("h2 holds %v", keys)
		}
		v4, six, err := lease.ParseKeyName(strings.TrimPrefix(keys[0], prefix+"/subnets/"))
		if err != nil || v4 != before || !six.IsValid() || !netip.MustParsePrefix("fd00:10:244::/56").Contains(six.Addr()) {
			return fmt.Errorf("h2's key %s: want %s with an IPv6 subnet of fd00:10:244::/56 (%v)", keys[0], before, err)
		}
		v6 = six
		return nil
	})

	h2, _ := l.Topology().Host("h2")
	env, err := subnetenv.Read(h2.SubnetFile)
	if err != nil || env.Subnet != before || env.IPv6Subnet != v6 || len(env.IPv6Network) != 1 {
		t.Errorf("h2 subnet.env = %+v, %v; want %s and %s", env, err, before, v6)
	}
	if log := l.AgentLog("h2"); !strings.Contains(log, "level=ERROR") || !strings.Contains(log, "this version programs IPv4 only") {
		t.Errorf("h2's log does not say at ERROR that IPv6 is not programmed:\n%s", log)
	}

	// IPv4 keeps working across the mixed cluster, both ways.
	for _, pair := range [][2]string{{"h1p1", "h2p1"}, {"h2p1", "h1p1"}} {
		dst, ok := l.PodAddr(pair[1])
		if !ok {
			t.Fatalf("no pod %s", pair[1])
		}
		nstest.Eventually(t, 10*time.Second, func() error {
			pctx, pcancel := context.WithTimeout(ctx, time.Second)
			defer pcancel()
			_, err := lab.Ping(pctx, l.NS(pair[0]), dst)
			return err
		})
	}
	if got := routeVia(t, l, "h1", before); got != hostIP(t, l, "h2") {
		t.Errorf("h1's route to h2's %s via %v, want %s", before, got, hostIP(t, l, "h2"))
	}
}
