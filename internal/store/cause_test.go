package store_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/weftnet/weft/internal/netconf"
	"github.com/weftnet/weft/internal/store"
)

// TestClassify feeds the classifier the error values the libraries
// really return, wrapped as the stores wrap them.
func TestClassify(t *testing.T) {
	_, parseErr := netconf.Parse([]byte(`{"Network": "10.5.0.0/33"}`))
	if parseErr == nil {
		t.Fatal("netconf.Parse accepted a /33")
	}
	nodes := schema.GroupResource{Resource: "nodes"}
	dialRefused := &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 2379},
		Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}
	cases := []struct {
		name string
		err  error
		want store.Cause
	}{
		{"no config", fmt.Errorf("read network config /coreos.com/network/config from etcd: %w", store.ErrNoConfig), store.CauseNoConfig},
		{"parse error", fmt.Errorf("%w /coreos.com/network/config in etcd: %w", store.ErrInvalidConfig, parseErr), store.CauseInvalidConfig},
		{"etcd auth failed", fmt.Errorf("connect to etcd: %w", rpctypes.ErrAuthFailed), store.CauseAuth},
		{"etcd invalid token", rpctypes.ErrInvalidAuthToken, store.CauseAuth},
		{"etcd permission denied", fmt.Errorf("read: %w", rpctypes.ErrPermissionDenied), store.CausePermission},
		{"etcd permission from status", rpctypes.Error(status.Error(codes.PermissionDenied, "etcdserver: permission denied")), store.CausePermission},
		{"grpc unauthenticated", status.Error(codes.Unauthenticated, "bad token"), store.CauseAuth},
		{"grpc unavailable", fmt.Errorf("read: %w", status.Error(codes.Unavailable, `connection error: desc = "transport: Error while dialing: dial tcp 10.0.0.1:2379: connect: connection refused"`)), store.CauseUnreachable},
		{"grpc deadline while connecting", status.Error(codes.DeadlineExceeded, `latest balancer error: connection error: desc = "transport: Error while dialing: dial tcp 10.0.0.1:2379: i/o timeout"`), store.CauseUnreachable},
		{"grpc deadline connected", status.Error(codes.DeadlineExceeded, "context deadline exceeded"), store.CauseTimeout},
		{"grpc tls", status.Error(codes.Unavailable, `connection error: desc = "transport: authentication handshake failed: tls: failed to verify certificate: x509: certificate signed by unknown authority"`), store.CauseTLS},
		{"x509 pointer", fmt.Errorf("dial: %w", &x509.UnknownAuthorityError{}), store.CauseTLS},
		{"etcd no leader", rpctypes.ErrNoLeader, store.CauseUnreachable},
		{"etcd server timeout", rpctypes.ErrTimeout, store.CauseTimeout},
		{"context deadline", fmt.Errorf("read: %w", context.DeadlineExceeded), store.CauseTimeout},
		{"unreachable sentinel", fmt.Errorf("etcd at http://10.0.0.1:2379: %w: %w", store.ErrUnreachable, context.DeadlineExceeded), store.CauseUnreachable},
		{"dial refused", fmt.Errorf("get node: %w", dialRefused), store.CauseUnreachable},
		{"dns", &net.DNSError{Err: "no such host", Name: "etcd.invalid", IsNotFound: true}, store.CauseUnreachable},
		{"kube unauthorized", fmt.Errorf("get node %q: %w", "n1", apierrors.NewUnauthorized("Unauthorized")), store.CauseAuth},
		{"kube forbidden", apierrors.NewForbidden(nodes, "n1", errors.New(`User "system:serviceaccount:kube-flannel:flannel" cannot patch resource "nodes/status"`)), store.CausePermission},
		{"kube timeout", apierrors.NewTimeoutError("request did not complete", 5), store.CauseTimeout},
		{"kube unavailable", apierrors.NewServiceUnavailable("apiserver is shutting down"), store.CauseUnreachable},
		{"kube not found", apierrors.NewNotFound(nodes, "n1"), store.CauseOther},
		{"other", errors.New("something else"), store.CauseOther},
	}
	for _, c := range cases {
		if got := store.Classify(c.err); got != c.want {
			t.Errorf("%s: Classify(%v) = %q, want %q", c.name, c.err, got, c.want)
		}
	}
	if got := store.Classify(nil); got != "" {
		t.Errorf("Classify(nil) = %q, want empty", got)
	}
}

// TestExplainNamesCauseAndError checks that the sentence starts with the
// cause in words and keeps the error's own text (what and where).
func TestExplainNamesCauseAndError(t *testing.T) {
	err := fmt.Errorf("read network config /coreos.com/network/config from etcd at http://10.0.0.1:2379: %w: %w",
		store.ErrUnreachable, status.Error(codes.Unavailable, "connect: connection refused"))
	got := store.Explain(err)
	if !strings.HasPrefix(got, "store unreachable: ") || !strings.Contains(got, "http://10.0.0.1:2379") || !strings.Contains(got, "connection refused") {
		t.Errorf("Explain = %q, want the cause then the error naming the endpoint and the reason", got)
	}
	for _, c := range store.Causes {
		if c.Phrase() == "" {
			t.Errorf("cause %q has no phrase", c)
		}
	}
}
