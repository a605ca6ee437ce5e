// Package etcdtest starts an embedded etcd for integration tests. It needs
// no root and touches nothing outside loopback and the test's temp dir.
package etcdtest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/embedetcd"
)

// StartForTest starts a fresh etcd member on free loopback ports with its
// data in t.TempDir(), and stops it when the test ends. It fails the test
// when etcd does not start. etcd's warnings go to t.Log.
func StartForTest(t testing.TB) *embedetcd.Server {
	t.Helper()
	dir := t.TempDir()
	w := &testWriter{t: t}
	// etcd goroutines may still log while the server shuts down; t.Log must
	// not be called once the test has finished, so the writer goes quiet
	// after the last cleanup (cleanups run last-registered first).
	t.Cleanup(func() { w.done.Store(true) })
	var lastErr error
	// A port found free can be taken by another process before etcd binds
	// it; try again with new ports rather than fail the test.
	for i := range 5 {
		ports, err := freePorts(2)
		if err != nil {
			t.Fatalf("find free loopback ports for etcd: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		s, err := embedetcd.Start(ctx, embedetcd.Options{
			Dir:       filepath.Join(dir, strconv.Itoa(i)),
			ClientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[0]),
			PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[1]),
			Log:       slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn})),
		})
		cancel()
		if err == nil {
			t.Cleanup(s.Close)
			return s
		}
		lastErr = err
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	t.Fatalf("start embedded etcd: %v", lastErr)
	return nil
}

// freePorts reserves n distinct loopback ports by binding them all at once
// (so they differ), then releases them for etcd to bind.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// testWriter sends log lines to t.Log so they show only for failing or
// verbose tests.
type testWriter struct {
	t    testing.TB
	done atomic.Bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	if !w.done.Load() {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}
