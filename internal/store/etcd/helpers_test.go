package etcdstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/embedetcd"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/netconf"
	"github.com/weftnet/weft/internal/nstest"
	etcdstore "github.com/weftnet/weft/internal/store/etcd"
)

const prefix = "/coreos.com/network"

// newStore connects a Store to endpoint and closes it when the test ends.
func newStore(t testing.TB, endpoint string, o etcdstore.Options) *etcdstore.Store {
	t.Helper()
	o.Endpoints = []string{endpoint}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s, err := etcdstore.New(context.Background(), o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// rawClient is a plain etcd client for setting up and checking keys behind
// the store's back.
func rawClient(t testing.TB, srv *embedetcd.Server) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.Endpoint()}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustConfig(t testing.TB, raw string) *netconf.Config {
	t.Helper()
	c, err := netconf.Parse([]byte(raw))
	if err != nil {
		t.Fatalf("parse config %s: %v", raw, err)
	}
	return c
}

func attrs(ip string) lease.Attrs {
	return lease.Attrs{PublicIP: netip.MustParseAddr(ip), BackendType: "host-gw"}
}

func subnetKey(sn string) string {
	p := netip.MustParsePrefix(sn)
	return prefix + "/subnets/" + lease.KeyName(p, netip.Prefix{})
}

// putLease writes a lease key directly; ttl 0 makes it a reservation.
func putLease(t testing.TB, cli *clientv3.Client, sn string, a lease.Attrs, ttl int64) {
	t.Helper()
	ctx := ctxT(t)
	val, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	var opts []clientv3.OpOption
	if ttl > 0 {
		g, err := cli.Grant(ctx, ttl)
		if err != nil {
			t.Fatalf("grant: %v", err)
		}
		opts = append(opts, clientv3.WithLease(g.ID))
	}
	if _, err := cli.Put(ctx, subnetKey(sn), string(val), opts...); err != nil {
		t.Fatalf("put %s: %v", sn, err)
	}
}

// getKV reads one key; nil when absent.
func getKV(t testing.TB, cli *clientv3.Client, key string) *clientv3.GetResponse {
	t.Helper()
	resp, err := cli.Get(ctxT(t), key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	return resp
}

// logRecorder is a slog handler keeping every record as "LEVEL msg k=v ...".
type logRecorder struct {
	mu    sync.Mutex
	lines []string
	attrs []slog.Attr
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", rec.Level, rec.Message)
	for _, a := range r.attrs {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
	}
	rec.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	r.mu.Lock()
	r.lines = append(r.lines, b.String())
	r.mu.Unlock()
	return nil
}

func (r *logRecorder) WithAttrs(as []slog.Attr) slog.Handler {
	// Shares the line buffer with the parent; attrs only decorate.
	return &childRecorder{parent: r, attrs: as}
}

func (r *logRecorder) WithGroup(string) slog.Handler { return r }

// count is how many lines contain every one of subs.
func (r *logRecorder) count(subs ...string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
next:
	for _, l := range r.lines {
		for _, s := range subs {
			if !strings.Contains(l, s) {
				continue next
			}
		}
		n++
	}
	return n
}

func (r *logRecorder) all() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.lines, "\n")
}

type childRecorder struct {
	parent *logRecorder
	attrs  []slog.Attr
}

func (c *childRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (c *childRecorder) Handle(ctx context.Context, rec slog.Record) error {
	rec.AddAttrs(c.attrs...)
	return c.parent.Handle(ctx, rec)
}
func (c *childRecorder) WithAttrs(as []slog.Attr) slog.Handler {
	return &childRecorder{parent: c.parent, attrs: append(append([]slog.Attr{}, c.attrs...), as...)}
}
func (c *childRecorder) WithGroup(string) slog.Handler { return c }

// tcpProxy relays TCP connections to an etcd endpoint and can cut them, so
// a test can disconnect one client while others keep using etcd.
type tcpProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	paused bool                  // guarded by mu: refuse and cut connections
	conns  map[net.Conn]struct{} // guarded by mu
}

func startProxy(t testing.TB, endpoint string) *tcpProxy {
	t.Helper()
	u, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	p := &tcpProxy{ln: ln, target: u.Host, conns: make(map[net.Conn]struct{})}
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.cut()
	})
	return p
}

func (p *tcpProxy) Endpoint() string { return "http://" + p.ln.Addr().String() }

func (p *tcpProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		paused := p.paused
		p.mu.Unlock()
		if paused {
			c.Close()
			continue
		}
		b, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c] = struct{}{}
		p.conns[b] = struct{}{}
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			io.Copy(dst, src)
			dst.Close()
			src.Close()
			p.mu.Lock()
			delete(p.conns, dst)
			delete(p.conns, src)
			p.mu.Unlock()
		}
		go pipe(c, b)
		go pipe(b, c)
	}
}

func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

// Pause cuts every relayed connection and refuses new ones until Resume.
func (p *tcpProxy) Pause() {
	p.mu.Lock()
	p.paused = true
	p.mu.Unlock()
	p.cut()
}

func (p *tcpProxy) Resume() {
	p.mu.Lock()
	p.paused = false
	p.mu.Unlock()
}

// snapshots collects what Watch delivers.
type snapshots struct {
	mu    sync.Mutex
	calls [][]lease.Lease
}

func (s *snapshots) add(ls []lease.Lease) {
	s.mu.Lock()
	s.calls = append(s.calls, ls)
	s.mu.Unlock()
}

func (s *snapshots) last() ([]lease.Lease, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.calls) == 0 {
		return nil, 0
	}
	return s.calls[len(s.calls)-1], len(s.calls)
}

// subnetsOf renders a snapshot as "subnet=publicIP" in order.
func subnetsOf(ls []lease.Lease) string {
	var parts []string
	for _, l := range ls {
		parts = append(parts, l.Subnet.String()+"="+l.Attrs.PublicIP.String())
	}
	return strings.Join(parts, " ")
}

// startWatch runs Watch until the test ends and returns what it delivers.
func startWatch(t testing.TB, s *etcdstore.Store) *snapshots {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	got := &snapshots{}
	done := make(chan error, 1)
	go func() { done <- s.Watch(ctx, got.add) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Watch returned %v, want context.Canceled", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Watch did not return after cancel")
		}
	})
	return got
}

// waitSnapshot waits until the latest snapshot renders as want.
func waitSnapshot(t testing.TB, got *snapshots, want string) []lease.Lease {
	t.Helper()
	var ls []lease.Lease
	nstest.Eventually(t, 20*time.Second, func() error {
		var n int
		ls, n = got.last()
		if n == 0 || subnetsOf(ls) != want {
			return fmt.Errorf("latest snapshot (of %d) is %q, want %q", n, subnetsOf(ls), want)
		}
		return nil
	})
	return ls
}
