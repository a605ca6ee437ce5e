package lab

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"

	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/store/etcd/zapslog"
)

// nsDial dials from inside the named namespace. The socket keeps that
// namespace for its whole life, so the connection is then used from any
// goroutine; this is how the lab, running in the root namespace, talks to
// etcd on the underlay and to agents' health endpoints without any route
// or address in the root namespace.
func nsDial(ctx context.Context, ns, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := netns.Do(ns, func() error {
		var err error
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// nsHTTPClient is an HTTP client whose connections start inside ns.
func nsHTTPClient(ns string, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return nsDial(ctx, ns, network, addr)
			},
			DisableKeepAlives: true,
		},
	}
}

// etcdClient returns a client for the lab's etcd that connects from inside
// the underlay namespace. Connecting is lazy; the first request waits for
// the server.
func etcdClient(topo Topology, log *slog.Logger) (*clientv3.Client, error) {
	return etcdClientAs(topo, log, []string{topo.Etcd.ClientURL}, "", "")
}

// etcdClientAs is etcdClient for other endpoints on the underlay,
// authenticating as user (none when empty).
func etcdClientAs(topo Topology, log *slog.Logger, endpoints []string, user, password string) (*clientv3.Client, error) {
	ns := topo.Underlay.NS
	cli, err := clientv3.New(clientv3.Config{
		Username:    user,
		Password:    password,
		Endpoints:   endpoints,
		DialTimeout: 2 * time.Second,
		// Appended after clientv3's own dial options, so this dialer wins.
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return nsDial(ctx, ns, "tcp", addr)
		})},
		Logger: zapslog.New(log, zapcore.ErrorLevel, "etcd-client"),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client for %s in netns %s: %w", strings.Join(endpoints, ","), ns, err)
	}
	return cli, nil
}
