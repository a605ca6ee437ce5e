package etcdstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/embedetcd/etcdtest"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/nstest"
	etcdstore "github.com/weftnet/weft/internal/store/etcd"
)

// A lease's Created is its key's create revision, from List and from
// Watch alike: a later key is younger, and rewriting a key (a renewal, new
// backend data) does not make it younger, so the older of two conflicting
// leases stays the older.
func TestCreatedIsCreateRevision(t *testing.T) {
	srv := etcdtest.StartForTest(t)
	cli := rawClient(t, srv)
	s := newStore(t, srv.Endpoint(), etcdstore.Options{})
	putLease(t, cli, "10.244.2.0/24", attrs("10.4.7.22"), 0)
	putLease(t, cli, "10.244.1.0/24", attrs("10.4.7.21"), 0)
	putLease(t, cli, "10.244.2.0/24", attrs("10.4.7.22"), 0) // rewritten, not re-created

	created := func(ls []lease.Lease) (c1, c2 int64) {
		for _, l := range ls {
			switch l.Subnet.String() {
			case "10.244.1.0/24":
				c1 = l.Created
			case "10.244.2.0/24":
				c2 = l.Created
			}
		}
		return c1, c2
	}
	ls, err := s.List(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if c1, c2 := created(ls); c2 <= 0 || c1 <= c2 {
		t.Fatalf("List: Created of the first key %d, of the second %d; want 0 < first < second", c2, c1)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	snaps := make(chan []lease.Lease, 16)
	go func() { _ = s.Watch(ctx, func(ls []lease.Lease) { snaps <- ls }) }()
	putLease(t, cli, "10.244.3.0/24", attrs("10.4.7.23"), 0)
	var last []lease.Lease
	nstest.Eventually(t, 5*time.Second, func() error {
		for {
			select {
			case ls := <-snaps:
				last = ls
				continue
			default:
			}
			break
		}
		if len(last) != 3 {
			return fmt.Errorf("watch delivered %d leases", len(last))
		}
		c1, c2 := created(last)
		c3 := last[2].Created
		if c2 <= 0 || c1 <= c2 || c3 <= c1 {
			return fmt.Errorf("watch: Created %d, %d, %d; want increasing in the order the keys were created", c2, c1, c3)
		}
		return nil
	})
}
