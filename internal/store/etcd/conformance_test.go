package etcdstore_test

import (
	"context"
	"net/netip"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/embedetcd/etcdtest"
	"github.com/weftnet/weft/internal/lease"
	etcdstore "github.com/weftnet/weft/internal/store/etcd"
	"github.com/weftnet/weft/internal/store/storetest"
)

// The etcd store and the fake the agent's tests use pass the same suite.
func TestConformance(t *testing.T) {
	srv := etcdtest.StartForTest(t)
	st := newStore(t, srv.Endpoint(), etcdstore.Options{Prefix: prefix})
	cli := rawClient(t, srv)
	storetest.Conformance(t, storetest.Harness{
		Store:     st,
		SetConfig: func(raw string) error { return st.PutConfig(context.Background(), []byte(raw)) },
		Delete:    deleteLease(st, cli),
	})
}

func TestDualStackConformance(t *testing.T) {
	srv := etcdtest.StartForTest(t)
	st := newStore(t, srv.Endpoint(), etcdstore.Options{Prefix: prefix})
	cli := rawClient(t, srv)
	storetest.DualStackConformance(t, storetest.Harness{
		Store:     st,
		SetConfig: func(raw string) error { return st.PutConfig(context.Background(), []byte(raw)) },
		Delete:    deleteLease(st, cli),
	})
}

// deleteLease deletes the key of the lease of IPv4 subnet sn, with or
// without an IPv6 part.
func deleteLease(st *etcdstore.Store, cli *clientv3.Client) func(sn netip.Prefix) error {
	return func(sn netip.Prefix) error {
		key := st.SubnetsPrefix() + lease.KeyName(sn, netip.Prefix{})
		if _, err := cli.Delete(context.Background(), key); err != nil {
			return err
		}
		_, err := cli.Delete(context.Background(), key+"&", clientv3.WithPrefix())
		return err
	}
}
