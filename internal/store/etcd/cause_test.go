package etcdstore_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/embedetcd/etcdtest"
	"github.com/weftnet/weft/internal/store"
	etcdstore "github.com/weftnet/weft/internal/store/etcd"
)

// The errors a real etcd gives for bad credentials, missing permissions
// and a TLS mismatch are told apart by store.Classify, and a store call
// that cannot connect returns by its call timeout naming the endpoint.
func TestStoreErrorsAreClassified(t *testing.T) {
	srv := etcdtest.StartForTest(t)
	cli := rawClient(t, srv)
	ctx := ctxT(t)
	for _, step := range []func() error{
		func() error { _, err := cli.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := cli.UserAdd(ctx, "weft", "weftpw"); return err },
		func() error { _, err := cli.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatalf("set up etcd auth: %v", err)
		}
	}

	t.Run("wrong password", func(t *testing.T) {
		_, err := etcdstore.New(ctx, etcdstore.Options{Endpoints: []string{srv.Endpoint()}, Username: "weft", Password: "wrong"})
		if err == nil {
			t.Fatal("New succeeded with a wrong password")
		}
		t.Log(err)
		if c := store.Classify(err); c != store.CauseAuth {
			t.Errorf("Classify(%v) = %q, want auth", err, c)
		}
	})
	t.Run("no permission", func(t *testing.T) {
		s := newStore(t, srv.Endpoint(), etcdstore.Options{Username: "weft", Password: "weftpw"})
		_, err := s.Config(ctx)
		t.Log(err)
		if c := store.Classify(err); c != store.CausePermission {
			t.Errorf("Classify(%v) = %q, want permission", err, c)
		}
	})
	t.Run("https to a plain endpoint", func(t *testing.T) {
		ep := strings.Replace(srv.Endpoint(), "http://", "https://", 1)
		s := newStore(t, ep, etcdstore.Options{CallTimeout: time.Second})
		start := time.Now()
		_, err := s.Config(context.Background())
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("Config took %v with a 1 s call timeout", took)
		}
		t.Log(err)
		if c := store.Classify(err); c != store.CauseTLS {
			t.Errorf("Classify(%v) = %q, want tls", err, c)
		}
		if err == nil || !strings.Contains(err.Error(), ep) {
			t.Errorf("error %v does not name the endpoint %s", err, ep)
		}
	})
	t.Run("nothing listening", func(t *testing.T) {
		p := startProxy(t, srv.Endpoint())
		p.Pause()
		s := newStore(t, p.Endpoint(), etcdstore.Options{CallTimeout: time.Second})
		_, err := s.Config(context.Background())
		t.Log(err)
		if c := store.Classify(err); c != store.CauseUnreachable {
			t.Errorf("Classify(%v) = %q, want unreachable", err, c)
		}
	})
}
