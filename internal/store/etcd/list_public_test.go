package etcdstore_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/embedetcd/etcdtest"
	etcdstore "github.com/weftnet/weft/internal/store/etcd"
)

// List returns every valid lease in subnet order, a reservation with the
// zero expiration and a leased key with its etcd TTL, and skips garbage.
func TestList(t *testing.T) {
	srv := etcdtest.StartForTest(t)
	s := newStore(t, srv.Endpoint(), etcdstore.Options{})
	cli := rawClient(t, srv)
	ctx := ctxT(t)

	got, err := s.List(ctx)
	if err != nil || len(got) != 0 {
		t.Fatalf("List of an empty store = %v, %v; want nothing", got, err)
	}

	putLease(t, cli, "10.5.9.0/24", attrs("192.168.1.9"), 600)
	putLease(t, cli, "10.5.2.0/24", attrs("192.168.1.2"), 0)
	if _, err := cli.Put(ctx, subnetKey("10.5.3.0/24"), "not json"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, prefix+"/subnets/junk", "{}"); err != nil {
		t.Fatal(err)
	}

	before := time.Now()
	got, err = s.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(got) != 2 {
		t.Fatalf("List = %v, want the two valid leases", got)
	}
	if got[0].Subnet != netip.MustParsePrefix("10.5.2.0/24") || !got[0].Reservation() {
		t.Errorf("first lease = %v, want the reservation 10.5.2.0/24", got[0])
	}
	if got[0].Attrs.PublicIP != netip.MustParseAddr("192.168.1.2") {
		t.Errorf("reservation PublicIP = %v", got[0].Attrs.PublicIP)
	}
	l := got[1]
	if l.Subnet != netip.MustParsePrefix("10.5.9.0/24") || l.Reservation() {
		t.Fatalf("second lease = %v, want 10.5.9.0/24 with an expiration", l)
	}
	if d := l.Expiration.Sub(before); d < 590*time.Second || d > 601*time.Second {
		t.Errorf("expiration %v after listing, want about the 600 s TTL", d)
	}
}
