package etcdtest

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/embedetcd"
	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/nstest"
)

// Partitionable is an etcd member behind a router that a test can make
// drop packets. It needs root.
type Partitionable struct {
	*embedetcd.Server
	t      testing.TB
	router string // the namespace between the test and etcd
}

// StartPartitionable starts etcd in a fresh namespace that the test's own
// namespace reaches through a router namespace:
//
//	test (its ns) 10.213.N.1 ── veth ── .2 router .5 ── veth ── .6 etcd
//
// The router is where Cut drops packets, so that neither end's own stack
// sees them refused (a DROP in a host's OUTPUT chain is reported back to
// TCP, which retries at once; on the path it is silent, as a failed link
// or firewall is). Everything is removed when the test ends.
func StartPartitionable(t testing.TB) *Partitionable {
	t.Helper()
	nstest.RequireRoot(t)
	nstest.RequireTools(t, "ip", "iptables", "sysctl")
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
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	ip("link", "add", host, "type", "veth", "peer", "name", "toagent", "netns", router)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", host).Run() })
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

	w := &testWriter{t: t}
	t.Cleanup(func() { w.done.Store(true) })
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
			Log:       slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn})),
		})
		return err
	})
	if err != nil {
		t.Fatalf("start etcd in %s: %v", etcdNS, err)
	}
	t.Cleanup(srv.Close)
	return &Partitionable{Server: srv, t: t, router: router}
}

// Cut makes the router drop everything etcd sends towards the test, as
// the common way to "block etcd" on an agent's host does (iptables -I
// INPUT -s <etcd> -j DROP): requests still arrive, and etcd's answers are
// lost and retransmitted with a growing backoff.
func (p *Partitionable) Cut() {
	p.t.Helper()
	nstest.Exec(p.t, p.router, "iptables", "-I", "FORWARD", "-i", "toetcd", "-j", "DROP")
}

// Heal removes the DROP rule.
func (p *Partitionable) Heal() {
	p.t.Helper()
	nstest.Exec(p.t, p.router, "iptables", "-D", "FORWARD", "-i", "toetcd", "-j", "DROP")
}
