package etcdstore_test

// These tests run against a real etcd member embedded in the test process
// on loopback (no root needed):
//
//	  store under test ──┐
//	  (maybe via tcpProxy)├──► embedded etcd 127.0.0.1:<free>
//	  raw clientv3 ───────┘    (setup and checks behind the store's back)

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/embedetcd/etcdtest"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/internal/store"
	etcdstore "github.com/weftnet/weft/internal/store/etcd"
)

// tinyNet has a pool of three subnets: 10.0.0.16/28, .32/28 and .48/28.
const tinyNet = `{"Network":"10.0.0.0/26","SubnetLen":28,"Backend":{"Type":"host-gw"}}`

func TestConfig(t *testing.T) {
	srv := etcdtest.StartForTest(t)
	s := newStore(t, srv.Endpoint(), etcdstore.Options{})
	cli := rawClient(t, srv)
	ctx := ctxT(t)

	if got := s.ConfigKey(); got != "/coreos.com/network/config" {
		t.Errorf("ConfigKey = %q", got)
	}

	_, err := s.Config(ctx)
	if !errors.Is(err, store.ErrNoConfig) {
		t.Fatalf("Config with no key: err = %v, want ErrNoConfig", err)
	}

	if _, err := cli.Put(ctx, s.ConfigKey(), `{"Network": "10.5.0.0/16", "SubnetLen": 40}`); err != nil {
		t.Fatal(err)
	}
	_, err = s.Config(ctx)
	if err == nil || errors.Is(err, store.ErrNoConfig) || !strings.Contains(err.Error(), s.ConfigKey()) {
		t.Fatalf("Config with invalid JSON: err = %v, want a parse error naming the key", err)
	}

	raw := `{"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan"}}`
	if err := s.PutConfig(ctx, []byte(raw)); err != nil {
		t.Fatalf("PutConfig: %v", err)
	}
	cfg, err := s.Config(ctx)
	if err != nil {
		t.Fatalf("Config: %v", err)
	}
	if cfg.Network != netip.MustParsePrefix("10.5.0.0/16") || cfg.SubnetLen != 24 || cfg.BackendType != "vxlan" {
		t.Errorf("Config = %+v", cfg)
	}
	if got := string(getKV(t, cli, s.ConfigKey()).Kvs[0].Value); got != raw {
		t.Errorf("stored config = %q, want the bytes given %q", got, raw)
	}

	err = s.PutConfig(ctx, []byte(`{"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan"`))
	if err == nil || !strings.Contains(err.Error(), "refuse") {
		t.Fatalf("PutConfig of broken JSON: err = %v, want a refusal", err)
	}
	if got := string(getKV(t, cli, s.ConfigKey()).Kvs[0].Value); got != raw {
		t.Errorf("refused PutConfig still changed the key to %q", got)
	}
}

func TestOptionsLogValueRedactsPassword(t *testing.T) {
	var b strings.Builder
	log := slog.New(slog.NewTextHandler(&b, nil))
	log.Info("etcd", "options", etcdstore.Options{Username: "flannel", Password: "hunter2", Endpoints: []string{"https://e:2379"}})
	if strings.Contains(b.String(), "hunter2") {
		t.Errorf("password logged: %s", b.String())
	}
	if !strings.Contains(b.String(), "flannel") || !strings.Contains(b.String(), "REDACTED") {
		t.Errorf("log line lacks the username or the redaction mark: %s", b.String())
	}
}

func TestNewRejectsHalfTLS(t *testing.T) {
	_, err := etcdstore.New(ctxT(t), etcdstore.Options{Endpoints: []string{"https://127.0.0.1:1"}, CertFile: "/nonexistent.pem"})
	if err == nil || !strings.Contains(err.Error(), "together") {
		t.Fatalf("New with cert but no key: err = %v", err)
	}
}

func TestAcquireCreatesKeyWithLease(t *testing.T) {
	srv := etcdtest.StartForTest(t)
	s := newStore(t, srv.Endpoint(), etcdstore.Options{LeaseTTL: time.Hour})
	cli := rawClient(t, srv)
	ctx := ctxT(t)
	cfg := mustConfig(t, `{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}`)

	a := lease.Attrs{
		PublicIP:    netip.MustParseAddr("192.168.1.3"),
		BackendType: "vxlan",
		BackendData: json.RawMessage(`{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}`),
	}
	before := time.Now()
	l, err := s.Acquire(ctx, cfg, store.AcquireRequest{Attrs: a})
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	if !cfg.Network.Contains(l.Subnet.Addr()) || l.Subnet.Bits() != 24 {
		t.Errorf("subnet %s is not a /24 of %s", l.Subnet, cfg.Network)
	}
	if !l.Attrs.Equal(a) {
		t.Errorf("returned attrs %+v, want %+v", l.Attrs, a)
	}
	if l.Expiration.Before(before.Add(59*time.Minute)) || l.Expiration.After(time.Now().Add(time.Hour)) {
		t.Errorf("Expiration %v is not about an hour from now", l.Expiration)
	}

	resp, err := cli.Get(ctx, prefix+"/subnets/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 {
		t.Fatalf("%d keys under subnets/, want 1", len(resp.Kvs))
	}
	kv := resp.Kvs[0]
	if want := subnetKey(l.Subnet.String()); string(kv.Key) != want {
		t.Errorf("key %q, want %q", kv.Key, want)
	}
	want := `{"PublicIP":"192.168.1.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}}`
	if string(kv.Value) != want {
		t.Errorf("value\n %s\nwant\n %s", kv.Value, want)
	}
	if kv.Lease == 0 {
		t.Fatal("key has no etcd lease attached")
	}
	ttl, err := cli.TimeToLive(ctx, clientv3.LeaseID(kv.Lease))
	if err != nil {
		t.Fatal(err)
	}
	if ttl.GrantedTTL != 3600 || ttl.TTL < 3590 || ttl.TTL > 3600 {
		t.Errorf("etcd lease granted %d s with %d s left, want 3600", ttl.GrantedTTL, ttl.TTL)
	}
}

func TestAcquireReusesLeaseOfSamePublicIP(t *testing.T) {
	srv := etcdtest.StartForTest(t)
	cli := rawClient(t, srv)
	ctx := ctxT(t)
	cfg := mustConfig(t, `{"Network":"10.5.0.0/16","Backend":{"Type":"host-gw"}}`)

	first, err := newStore(t, srv.Endpoint(), etcdstore.Options{}).Acquire(ctx, cfg, store.AcquireRequest{Attrs: attrs("192.168.1.3")})
	if err != nil {
		t.Fatal(err)
	}
	// A restarted host, with a new client and new backend data, and a
	// Previous that points elsewhere: its existing lease wins.
	a := attrs("192.168.1.3")
	a.BackendType = "vxlan"
	a.BackendData = json.RawMessage(`{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:01"}`)
	again, err := newStore(t, srv.Endpoint(), etcdstore.Options{}).Acquire(ctx, cfg, store.AcquireRequest{
		Attrs: a, Previous: netip.MustParsePrefix("10.5.200.0/24"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if again.Subnet != first.Subnet {
		t.Errorf("re-Acquire got %s, want the existing %s", again.Subnet, first.Subnet)
	}
	resp, err := cli.Get(ctx, prefix+"/subnets/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 {
		t.Fatalf("%d keys, want 1", len(resp.Kvs))
	}
	if !strings.Contains(string(resp.Kvs[0].Value), `"VtepMAC":"aa:bb:cc:dd:ee:01"`) || resp.Kvs[0].Lease == 0 {
		t.Errorf("reused key holds %s with lease %x, want the new attrs with a lease", resp.Kvs[0].Value, resp.Kvs[0].Lease)
	}
}

func TestAcquirePrevious(t *testing.T) {
	srv := etcdtest.StartForTest(t)
	cli := rawClient(t, srv)
	s := newStore(t, srv.Endpoint(), etcdstore.Options{})
	ctx := ctxT(t)
	cfg := mustConfig(t, `{"Network":"10.5.0.0/16","Backend":{"Type":"host-gw"}}`)

	prev := netip.MustParsePrefix("10.5.77.0/24")
	l, err := s.Acquire(ctx, cfg, store.AcquireRequest{Attrs: attrs("192.168.1.3"), Previous: prev})
	if err != nil {
		t.Fatal(err)
	}
	if l.Subnet != prev {
		t.Errorf("free Previous %s not reused: got %s", prev, l.Subnet)
	}

	taken := netip.MustParsePrefix("10.5.78.0/24")
	putLease(t, cli, taken.String(), attrs("192.168.1.9"), 3600)
	l, err = s.Acquire(ctx, cfg, store.AcquireRequest{Attrs: attrs("192.168.1.4"), Previous: taken})
	if err != nil {
		t.Fatal(err)
	}
	if l.Subnet == taken || l.Subnet == prev {
		t.Errorf("got %s, which another host holds", l.Subnet)
	}
	if v := string(getKV(t, cli, subnetKey(taken.String())).Kvs[0].Value); !strings.Contains(v, "192.168.1.9") {
		t.Errorf("the other host's lease was changed to %s", v)
	}
}

func TestAcquireReservations(t *testing.T) {
	srv := etcdtest.StartForTest(t)
	cli := rawClient(t, srv)
	s := newStore(t, srv.Endpoint(), etcdstore.Options{})
	ctx := ctxT(t)
	cfg := mustConfig(t, tinyNet)

	// .16 reserved for us (with stale attributes), .32 reserved for someone
	// else; .48 is the only free subnet.
	old := attrs("192.168.1.3")
	old.BackendType = "udp"
	putLease(t, cli, "10.0.0.16/28", old, 0)
	putLease(t, cli, "10.0.0.32/28", attrs("192.168.1.9"), 0)

	l, err := s.Acquire(ctx, cfg, store.AcquireRequest{Attrs: attrs("192.168.1.3")})
	if err != nil {
		t.Fatal(err)
	}
	if l.Subnet != netip.MustParsePrefix("10.0.0.16/28") || !l.Reservation() {
		t.Fatalf("got %s (reservation %v), want our reservation 10.0.0.16/28", l.Subnet, l.Reservation())
	}
	kv := getKV(t, cli, subnetKey("10.0.0.16/28")).Kvs[0]
	if kv.Lease != 0 {
		t.Errorf("reservation got an etcd lease %x attached", kv.Lease)
	}
	if want := `{"PublicIP":"192.168.1.3","PublicIPv6":null,"BackendType":"host-gw"}`; string(kv.Value) != want {
		t.Errorf("reservation value %s, want updated %s", kv.Value, want)
	}
	// Renewing a reservation changes nothing.
	r, err := s.Renew(ctx, l)
	if err != nil || r.Subnet != l.Subnet || !r.Reservation() || !r.Attrs.Equal(l.Attrs) {
		t.Errorf("Renew of a reservation = %+v, %v; want it unchanged", r, err)
	}
	if kv := getKV(t, cli, subnetKey("10.0.0.16/28")).Kvs[0]; kv.Lease != 0 {
		t.Errorf("Renew attached etcd lease %x to the reservation", kv.Lease)
	}

	// Other hosts get the free subnet, then nothing; never .32.
	l, err = s.Acquire(ctx, cfg, store.AcquireRequest{Attrs: attrs("192.168.1.4")})
	if err != nil {
		t.Fatal(err)
	}
	if l.Subnet != netip.MustParsePrefix("10.0.0.48/28") {
		t.Errorf("got %s, want the only free 10.0.0.48/28", l.Subnet)
	}
	_, err = s.Acquire(ctx, cfg, store.AcquireRequest{Attrs: attrs("192.168.1.5"), Previous: netip.MustParsePrefix("10.0.0.32/28")})
	if !errors.Is(err, store.ErrPoolExhausted) {
		t.Errorf("Acquire with only another host's reservation left: err = %v, want ErrPoolExhausted", err)
	}
	if v := string(getKV(t, cli, subnetKey("10.0.0.32/28")).Kvs[0].Value); !strings.Contains(v, "192.168.1.9") {
		t.Errorf("another host's reservation was changed to %s", v)
	}
}

func TestAcquirePoolExhausted(t *testing.T) {
	srv := etcdtest.StartForTest(t)
	s := newStore(t, srv.Endpoint(), etcdstore.Options{})
	ctx := ctxT(t)
	cfg := mustConfig(t, tinyNet)

	got := map[netip.Prefix]bool{}
	for i := range 3 {
		l, err := s.Acquire(ctx, cfg, store.AcquireRequest{Attrs: attrs(fmt.Sprintf("192.168.1.%d", 10+i))})
		if err != nil {
			t.Fatalf("Acquire %d: %v", i, err)
		}
		got[l.Subnet] = true
	}
	if len(got) != 3 {
		t.Errorf("3 hosts got %d distinct subnets", len(got))
	}
	_, err := s.Acquire(ctx, cfg, store.AcquireRequest{Attrs: attrs("192.168.1.99")})
	if !errors.Is(err, store.ErrPoolExhausted) {
		t.Fatalf("4th Acquire: err = %v, want ErrPoolExhausted", err)
	}
	if !strings.Contains(err.Error(), "acquire lease under /coreos.com/network/subnets/") {
		t.Errorf("error does not say what was done: %v", err)
	}
}

func TestAcquireConcurrent(t *testing.T) {
	srv := etcdtest.StartForTest(t)
	cli := rawClient(t, srv)
	ctx := ctxT(t)
	// 31 subnets for 20 hosts: collisions are likely and must be resolved.
	cfg := mustConfig(t, `{"Network":"10.0.0.0/19","SubnetLen":24,"Backend":{"Type":"host-gw"}}`)

	const hosts = 20
	logs := &logRecorder{}
	stores := make([]*etcdstore.Store, hosts)
	for i := range stores {
		stores[i] = newStore(t, srv.Endpoint(), etcdstore.Options{Log: slog.New(logs)})
	}
	got := make([]lease.Lease, hosts)
	errs := make([]error, hosts)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range hosts {
		wg.Go(func() {
			<-start
			got[i], errs[i] = stores[i].Acquire(ctx, cfg, store.AcquireRequest{Attrs: attrs(fmt.Sprintf("192.168.2.%d", i+1))})
		})
	}
	close(start)
	wg.Wait()
	t.Logf("%d lost races resolved by retrying", logs.count("lost a race"))

	owner := map[netip.Prefix]int{}
	for i := range hosts {
		if errs[i] != nil {
			t.Errorf("host %d: %v", i, errs[i])
			continue
		}
		if j, dup := owner[got[i].Subnet]; dup {
			t.Errorf("hosts %d and %d both got %s", j, i, got[i].Subnet)
		}
		owner[got[i].Subnet] = i
	}
	resp, err := cli.Get(ctx, prefix+"/subnets/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != hosts {
		t.Errorf("%d keys in etcd, want %d", len(resp.Kvs), hosts)
	}
	for _, kv := range resp.Kvs {
		sn, _, err := lease.ParseKeyName(strings.TrimPrefix(string(kv.Key), prefix+"/subnets/"))
		if err != nil {
			t.Fatal(err)
		}
		i, ok := owner[sn]
		if !ok {
			t.Errorf("key %s belongs to no host", kv.Key)
			continue
		}
		if want := fmt.Sprintf(`"PublicIP":"192.168.2.%d"`, i+1); !strings.Contains(string(kv.Value), want) {
			t.Errorf("key %s holds %s, want host %d's", kv.Key, kv.Value, i)
		}
	}
}

func TestRenew(t *testing.T) {
	srv := etcdtest.StartForTest(t)
	cli := rawClient(t, srv)
	s := newStore(t, srv.Endpoint(), etcdstore.Options{LeaseTTL: 5 * time.Second})
	ctx := ctxT(t)
	cfg := mustConfig(t, `{"Network":"10.5.0.0/16","Backend":{"Type":"host-gw"}}`)

	l, err := s.Acquire(ctx, cfg, store.AcquireRequest{Attrs: attrs("192.168.1.3")})
	if err != nil {
		t.Fatal(err)
	}
	key := subnetKey(l.Subnet.String())
	ttlLeft := func() int64 {
		t.Helper()
		kv := getKV(t, cli, key).Kvs[0]
		r, err := cli.TimeToLive(ctx, clientv3.LeaseID(kv.Lease))
		if err != nil {
			t.Fatal(err)
		}
		return r.TTL
	}
	nstest.Eventually(t, 10*time.Second, func() error {
		if left := ttlLeft(); left > 3 {
			return fmt.Errorf("%d s left", left)
		}
		return nil
	})
	r, err := s.Renew(ctx, l)
	if err != nil {
		t.Fatalf("Renew: %v", err)
	}
	if left := ttlLeft(); left < 4 {
		t.Errorf("after Renew %d s left, want about 5", left)
	}
	if !r.Expiration.After(l.Expiration) || r.Subnet != l.Subnet {
		t.Errorf("Renew returned %v, want %s with an expiration after %v", r, l.Subnet, l.Expiration)
	}

	// An administrator deletes the key: Renew puts it back, with a lease.
	if _, err := cli.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	r, err = s.Renew(ctx, r)
	if err != nil {
		t.Fatalf("Renew after delete: %v", err)
	}
	kv := getKV(t, cli, key).Kvs
	if len(kv) != 1 || kv[0].Lease == 0 || !strings.Contains(string(kv[0].Value), "192.168.1.3") {
		t.Fatalf("Renew did not re-create the key with a lease: %v", kv)
	}

	// The etcd lease is revoked (its key goes with it): same.
	if _, err := cli.Revoke(ctx, clientv3.LeaseID(kv[0].Lease)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Renew(ctx, r); err != nil {
		t.Fatalf("Renew after revoke: %v", err)
	}
	if kv := getKV(t, cli, key).Kvs; len(kv) != 1 || kv[0].Lease == 0 {
		t.Fatalf("Renew did not re-create the key after revoke: %v", kv)
	}

	// Another host took the subnet meanwhile: Renew says so.
	if _, err := cli.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	putLease(t, cli, l.Subnet.String(), attrs("192.168.1.9"), 60)
	_, err = s.Renew(ctx, r)
	if err == nil || !strings.Contains(err.Error(), "another host") {
		t.Fatalf("Renew of a subnet another host holds: err = %v", err)
	}
	if v := string(getKV(t, cli, key).Kvs[0].Value); !strings.Contains(v, "192.168.1.9") {
		t.Errorf("Renew overwrote the other host's lease: %s", v)
	}
}

func TestWatch(t *testing.T) {
	srv := etcdtest.StartForTest(t)
	cli := rawClient(t, srv)
	ctx := ctxT(t)
	proxy := startProxy(t, srv.Endpoint())
	logs := &logRecorder{}
	s := newStore(t, proxy.Endpoint(), etcdstore.Options{Log: slog.New(logs)})

	putLease(t, cli, "10.5.1.0/24", attrs("192.168.1.1"), 3600)
	putLease(t, cli, "10.5.2.0/24", attrs("192.168.1.2"), 0)
	got := startWatch(t, s)

	// Snapshot, with expirations: zero only for the reservation.
	ls := waitSnapshot(t, got, "10.5.1.0/24=192.168.1.1 10.5.2.0/24=192.168.1.2")
	if ls[0].Reservation() || time.Until(ls[0].Expiration) < 59*time.Minute {
		t.Errorf("leased key has Expiration %v, want about an hour from now", ls[0].Expiration)
	}
	if !ls[1].Reservation() {
		t.Errorf("reservation has Expiration %v, want zero", ls[1].Expiration)
	}

	putLease(t, cli, "10.5.3.0/24", attrs("192.168.1.3"), 3600)
	ls = waitSnapshot(t, got, "10.5.1.0/24=192.168.1.1 10.5.2.0/24=192.168.1.2 10.5.3.0/24=192.168.1.3")
	if ls[2].Reservation() {
		t.Errorf("added lease delivered without Expiration")
	}
	if _, err := cli.Delete(ctx, subnetKey("10.5.1.0/24")); err != nil {
		t.Fatal(err)
	}
	waitSnapshot(t, got, "10.5.2.0/24=192.168.1.2 10.5.3.0/24=192.168.1.3")

	// Garbage from a peer is skipped, once logged, and the rest kept.
	if _, err := cli.Put(ctx, subnetKey("10.5.4.0/24"), "this is not json"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, prefix+"/subnets/not-a-subnet", `{"PublicIP":"192.168.1.8","PublicIPv6":null}`); err != nil {
		t.Fatal(err)
	}
	putLease(t, cli, "10.5.5.0/24", attrs("192.168.1.5"), 3600)
	waitSnapshot(t, got, "10.5.2.0/24=192.168.1.2 10.5.3.0/24=192.168.1.3 10.5.5.0/24=192.168.1.5")
	putLease(t, cli, "10.5.6.0/24", attrs("192.168.1.6"), 3600)
	waitSnapshot(t, got, "10.5.2.0/24=192.168.1.2 10.5.3.0/24=192.168.1.3 10.5.5.0/24=192.168.1.5 10.5.6.0/24=192.168.1.6")
	for _, key := range []string{subnetKey("10.5.4.0/24"), prefix + "/subnets/not-a-subnet"} {
		if n := logs.count("WARN", key); n != 1 {
			t.Errorf("%d warnings about %s, want 1; log:\n%s", n, key, logs.all())
		}
	}

	// Disconnected, the watcher misses changes that etcd then compacts
	// away; on reconnect it must list again and deliver a fresh snapshot.
	proxy.Pause()
	if _, err := cli.Delete(ctx, subnetKey("10.5.2.0/24")); err != nil {
		t.Fatal(err)
	}
	putLease(t, cli, "10.5.7.0/24", attrs("192.168.1.7"), 3600)
	for i := range 20 {
		if _, err := cli.Put(ctx, prefix+"/unrelated", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	rev := getKV(t, cli, prefix+"/unrelated").Header.Revision
	if _, err := cli.Compact(ctx, rev); err != nil {
		t.Fatalf("compact: %v", err)
	}
	proxy.Resume()
	waitSnapshot(t, got, "10.5.3.0/24=192.168.1.3 10.5.5.0/24=192.168.1.5 10.5.6.0/24=192.168.1.6 10.5.7.0/24=192.168.1.7")
	if n := logs.count("compacted"); n == 0 {
		t.Errorf("the watcher did not go through compaction; log:\n%s", logs.all())
	}
	// The garbage is still there after the re-list and is not reported again.
	for _, key := range []string{subnetKey("10.5.4.0/24"), prefix + "/subnets/not-a-subnet"} {
		if n := logs.count("WARN", key); n != 1 {
			t.Errorf("%d warnings about %s after re-list, want 1", n, key)
		}
	}

	// And it keeps following changes.
	putLease(t, cli, "10.5.8.0/24", attrs("192.168.1.8"), 3600)
	waitSnapshot(t, got, "10.5.3.0/24=192.168.1.3 10.5.5.0/24=192.168.1.5 10.5.6.0/24=192.168.1.6 10.5.7.0/24=192.168.1.7 10.5.8.0/24=192.168.1.8")
}

// TestWatchOneCallPerResponse checks that a transaction changing many keys
// at once reaches fn as one call, not one per key.
func TestWatchOneCallPerResponse(t *testing.T) {
	srv := etcdtest.StartForTest(t)
	cli := rawClient(t, srv)
	ctx := ctxT(t)
	s := newStore(t, srv.Endpoint(), etcdstore.Options{})
	got := startWatch(t, s)
	waitSnapshot(t, got, "")
	_, before := got.last()

	var ops []clientv3.Op
	var want []string
	for i := 1; i <= 50; i++ {
		val, _ := json.Marshal(attrs(fmt.Sprintf("192.168.3.%d", i)))
		ops = append(ops, clientv3.OpPut(subnetKey(fmt.Sprintf("10.6.%d.0/24", i)), string(val)))
		want = append(want, fmt.Sprintf("10.6.%d.0/24=192.168.3.%d", i, i))
	}
	if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(want, func(a, b string) int {
		return netip.MustParsePrefix(strings.Split(a, "=")[0]).Addr().Compare(netip.MustParsePrefix(strings.Split(b, "=")[0]).Addr())
	})
	waitSnapshot(t, got, strings.Join(want, " "))
	if _, n := got.last(); n != before+1 {
		t.Errorf("one transaction of 50 keys gave %d calls, want 1", n-before)
	}
}

func TestLeaseExpires(t *testing.T) {
	srv := etcdtest.StartForTest(t)
	cli := rawClient(t, srv)
	ctx := ctxT(t)
	s := newStore(t, srv.Endpoint(), etcdstore.Options{LeaseTTL: 2 * time.Second})
	cfg := mustConfig(t, `{"Network":"10.5.0.0/16","Backend":{"Type":"host-gw"}}`)

	got := startWatch(t, s)
	waitSnapshot(t, got, "")
	l, err := s.Acquire(ctx, cfg, store.AcquireRequest{Attrs: attrs("192.168.1.3")})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(l.Expiration); d <= 0 || d > 3*time.Second {
		t.Errorf("Expiration %v from now, want about 2 s", d)
	}
	waitSnapshot(t, got, l.Subnet.String()+"=192.168.1.3")
	waitSnapshot(t, got, "")
	if kvs := getKV(t, cli, subnetKey(l.Subnet.String())).Kvs; len(kvs) != 0 {
		t.Errorf("key still there after its TTL: %s", kvs[0].Value)
	}
}
