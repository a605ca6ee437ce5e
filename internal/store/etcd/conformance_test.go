package etcdstore_test

import (
	"context"
	"net/netip"
	"testing"

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
		Delete: func(sn netip.Prefix) error {
			_, err := cli.Delete(context.Background(), st.SubnetsPrefix()+lease.KeyName(sn, netip.Prefix{}))
			return err
		},
	})
}
