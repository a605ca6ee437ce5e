package etcdstore_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/embedetcd/etcdtest"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/store"
	etcdstore "github.com/weftnet/weft/internal/store/etcd"
)

// Two hosts with one PublicIP against real etcd: the second is refused
// and the first's key is untouched; Published does not hand the second
// the first's backend data; Renew of a key another host rewrote fails;
// without IDs (flannel's view) the lease is reused as before.
func TestAcquireRefusesAnotherHostsLeaseWithOurPublicIP(t *testing.T) {
	srv := etcdtest.StartForTest(t)
	cli := rawClient(t, srv)
	ctx := ctxT(t)
	cfg := mustConfig(t, `{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}`)

	a := attrs("192.168.1.3")
	a.BackendType = "vxlan"
	a.BackendData = json.RawMessage(`{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:01"}`)
	a.HostID = "hosta"
	first, err := newStore(t, srv.Endpoint(), etcdstore.Options{}).Acquire(ctx, cfg, store.AcquireRequest{Attrs: a})
	if err != nil {
		t.Fatal(err)
	}
	key := subnetKey(first.Subnet.String())
	before := getKV(t, cli, key).Kvs[0]
	if !strings.HasSuffix(string(before.Value), `,"WeftHostID":"hosta"}`) {
		t.Fatalf("stored %s", before.Value)
	}

	b := a
	b.BackendData = json.RawMessage(`{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:02"}`)
	b.HostID = "hostb"
	s2 := newStore(t, srv.Endpoint(), etcdstore.Options{})
	_, err = s2.Acquire(ctx, cfg, store.AcquireRequest{Attrs: b})
	var dup *lease.PublicIPInUseError
	if !errors.As(err, &dup) || dup.Other.Subnet != first.Subnet || dup.Other.Attrs.HostID != "hosta" {
		t.Fatalf("second host's Acquire: %v", err)
	}
	after := getKV(t, cli, key).Kvs[0]
	if string(after.Value) != string(before.Value) || after.ModRevision != before.ModRevision {
		t.Fatalf("the first host's key changed: %s → %s", before.Value, after.Value)
	}
	resp, err := cli.Get(ctx, prefix+"/subnets/", clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("%d keys (%v), want the first host's only", len(resp.Kvs), err)
	}
	if got, err := s2.Published(ctx, a.PublicIP, "hostb"); err != nil || got.BackendType != "" || got.BackendData != nil {
		t.Errorf("Published for the second host = %+v %v, want nothing", got, err)
	}
	if got, err := s2.Published(ctx, a.PublicIP, "hosta"); err != nil || string(got.BackendData) != `{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:01"}` {
		t.Errorf("Published for the first host = %+v %v", got, err)
	}

	// Renew as the second host of the first's key fails, saying why.
	impostor := first
	impostor.Attrs = b
	if _, err := s2.Renew(ctx, impostor); err == nil || !strings.Contains(err.Error(), "host ID hosta, this host is hostb") {
		t.Errorf("Renew of another host's key: %v", err)
	}

	// A host without an ID sees flannel's behaviour: the lease is its own.
	c := b
	c.HostID = ""
	got, err := s2.Acquire(ctx, cfg, store.AcquireRequest{Attrs: c})
	if err != nil || got.Subnet != first.Subnet {
		t.Fatalf("Acquire without a host ID: %v %v", got, err)
	}
}
