package embedetcd_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/embedetcd"
	"github.com/weftnet/weft/internal/embedetcd/etcdtest"
)

func freePort(t *testing.T, host string) int {
	t.Helper()
	l, err := net.Listen("tcp", host+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func putGet(t *testing.T, endpoint, key, val string) string {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if val != "" {
		if _, err := cli.Put(ctx, key, val); err != nil {
			t.Fatalf("put via %s: %v", endpoint, err)
		}
	}
	resp, err := cli.Get(ctx, key)
	if err != nil {
		t.Fatalf("get via %s: %v", endpoint, err)
	}
	if len(resp.Kvs) == 0 {
		return ""
	}
	return string(resp.Kvs[0].Value)
}

// TestStartRestart serves on a loopback address other than 127.0.0.1 (as the
// lab serves on its own address) and keeps the data across a restart on the
// same directory.
func TestStartRestart(t *testing.T) {
	dir := t.TempDir()
	o := embedetcd.Options{
		Dir:       dir,
		ClientURL: fmt.Sprintf("http://127.0.0.2:%d", freePort(t, "127.0.0.2")),
		PeerURL:   fmt.Sprintf("http://127.0.0.2:%d", freePort(t, "127.0.0.2")),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := embedetcd.Start(ctx, o)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if s.Endpoint() != o.ClientURL {
		t.Errorf("Endpoint = %q, want %q", s.Endpoint(), o.ClientURL)
	}
	if got := putGet(t, s.Endpoint(), "/k", "v1"); got != "v1" {
		t.Fatalf("read back %q", got)
	}
	s.Close()
	s.Close() // idempotent

	s, err = embedetcd.Start(ctx, o)
	if err != nil {
		t.Fatalf("Start again on %s: %v", dir, err)
	}
	defer s.Close()
	if got := putGet(t, s.Endpoint(), "/k", ""); got != "v1" {
		t.Errorf("after restart /k = %q, want v1", got)
	}
}

func TestStartRejectsBadOptions(t *testing.T) {
	ctx := context.Background()
	for _, o := range []embedetcd.Options{
		{ClientURL: "http://127.0.0.1:1", PeerURL: "http://127.0.0.1:2"},
		{Dir: t.TempDir(), PeerURL: "http://127.0.0.1:2"},
		{Dir: t.TempDir(), ClientURL: "127.0.0.1:1", PeerURL: "http://127.0.0.1:2"},
	} {
		if _, err := embedetcd.Start(ctx, o); err == nil || !strings.Contains(err.Error(), "start embedded etcd") {
			t.Errorf("Start(%+v): err = %v, want a start error", o, err)
		}
	}
}

func TestStartForTest(t *testing.T) {
	a := etcdtest.StartForTest(t)
	b := etcdtest.StartForTest(t)
	if a.Endpoint() == b.Endpoint() {
		t.Fatalf("two servers share endpoint %s", a.Endpoint())
	}
	putGet(t, a.Endpoint(), "/only-in-a", "x")
	if got := putGet(t, b.Endpoint(), "/only-in-a", ""); got != "" {
		t.Errorf("servers share data")
	}
}
