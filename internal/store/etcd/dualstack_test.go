package etcdstore_test

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/weftnet/weft/internal/embedetcd/etcdtest"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/netconf"
	"github.com/weftnet/weft/internal/store"
	etcdstore "github.com/weftnet/weft/internal/store/etcd"
)

const dualConfig = `{"Network": "10.5.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:10:244::/56", "Backend": {"Type": "vxlan"}}`

// The key and value are flannel's byte for byte: "10.5.7.0-24&fd00:10:244:7::-64"
// and PublicIPv6 in compressed form, BackendV6Data after BackendData.
func TestDualStackKeyAndValueAreFlannels(t *testing.T) {
	srv := etcdtest.StartForTest(t)
	st := newStore(t, srv.Endpoint(), etcdstore.Options{Prefix: prefix})
	cli := rawClient(t, srv)
	cfg := mustConfig(t, dualConfig)
	a := lease.Attrs{
		PublicIP: netip.MustParseAddr("192.0.2.1"), PublicIPv6: netip.MustParseAddr("2001:db8:0:0::1"), BackendType: "vxlan",
		BackendData:   []byte(`{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:01"}`),
		BackendV6Data: []byte(`{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:02"}`),
	}
	l, err := st.Acquire(ctxT(t), cfg, store.AcquireRequest{Attrs: a,
		Previous: netip.MustParsePrefix("10.5.7.1/24"), PreviousIPv6: netip.MustParsePrefix("fd00:10:244:7::1/64")})
	if err != nil {
		t.Fatal(err)
	}
	key := prefix + "/subnets/10.5.7.0-24&fd00:10:244:7::-64"
	resp := getKV(t, cli, key)
	if len(resp.Kvs) != 1 {
		t.Fatalf("no key %s after Acquire of %v", key, l)
	}
	want := `{"PublicIP":"192.0.2.1","PublicIPv6":"2001:db8::1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:01"},"BackendV6Data":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:02"}}`
	if got := string(resp.Kvs[0].Value); got != want {
		t.Errorf("value:\n got %s\nwant %s", got, want)
	}
	if resp.Kvs[0].Lease == 0 {
		t.Errorf("key %s has no etcd lease", key)
	}
}

// A dual-stack lease flannel wrote is read by Watch with both subnets and
// PublicIPv6; a v4-only peer beside it keeps no IPv6 part.
func TestWatchDecodesFlannelDualStackLeases(t *testing.T) {
	srv := etcdtest.StartForTest(t)
	st := newStore(t, srv.Endpoint(), etcdstore.Options{Prefix: prefix})
	cli := rawClient(t, srv)
	ctx := ctxT(t)
	if _, err := cli.Put(ctx, prefix+"/subnets/10.5.1.0-24&fd00:10:244:1::-64",
		`{"PublicIP":"192.0.2.7","PublicIPv6":"2001:db8::7","BackendType":"host-gw"}`); err != nil {
		t.Fatal(err)
	}
	putLease(t, cli, "10.5.2.0/24", attrs("192.0.2.8"), 0)
	got := startWatch(t, st)
	ls := waitSnapshot(t, got, "10.5.1.0/24=192.0.2.7 10.5.2.0/24=192.0.2.8")
	if ls[0].IPv6Subnet != netip.MustParsePrefix("fd00:10:244:1::/64") || ls[0].Attrs.PublicIPv6 != netip.MustParseAddr("2001:db8::7") {
		t.Errorf("dual-stack lease decoded as %v", ls[0])
	}
	if ls[1].IPv6Subnet.IsValid() || ls[1].Attrs.PublicIPv6.IsValid() {
		t.Errorf("IPv4-only lease decoded with IPv6 parts: %v", ls[1])
	}
}

// Hosts racing for subnets get distinct subnets of both families.
func TestDualStackConcurrentAcquire(t *testing.T) {
	srv := etcdtest.StartForTest(t)
	// A /61 of /64 subnets has 7 to give (the first is skipped): a tight
	// IPv6 pool makes collisions likely.
	cfg := mustConfig(t, `{"Network": "10.5.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00::/61", "Backend": {"Type": "host-gw"}}`)
	const hosts = 7
	var wg sync.WaitGroup
	res := make([]lease.Lease, hosts)
	errs := make([]error, hosts)
	for i := range hosts {
		st := newStore(t, srv.Endpoint(), etcdstore.Options{Prefix: prefix})
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i], errs[i] = st.Acquire(ctxT(t), cfg, store.AcquireRequest{Attrs: attrs(fmt.Sprintf("192.0.2.%d", i+1))})
		}()
	}
	wg.Wait()
	seen4, seen6 := map[netip.Prefix]bool{}, map[netip.Prefix]bool{}
	for i, l := range res {
		if errs[i] != nil {
			t.Fatalf("host %d: %v", i, errs[i])
		}
		if seen4[l.Subnet] || seen6[l.IPv6Subnet] || !l.IPv6Subnet.IsValid() {
			t.Fatalf("host %d got %v: a subnet given twice, or no IPv6 subnet", i, l)
		}
		seen4[l.Subnet], seen6[l.IPv6Subnet] = true, true
	}
	st := newStore(t, srv.Endpoint(), etcdstore.Options{Prefix: prefix})
	_, err := st.Acquire(ctxT(t), cfg, store.AcquireRequest{Attrs: attrs("192.0.2.99")})
	if !errors.Is(err, store.ErrPoolExhausted) || !strings.Contains(err.Error(), "IPv6 subnets of fd00::/61") {
		t.Errorf("eighth host: %v, want the IPv6 pool exhausted", err)
	}
}

// An IPv6-only config has no etcd key form: the store refuses to store or
// use it, naming EnableIPv4.
func TestIPv6OnlyConfigRefused(t *testing.T) {
	srv := etcdtest.StartForTest(t)
	st := newStore(t, srv.Endpoint(), etcdstore.Options{Prefix: prefix})
	raw := `{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00::/56", "Backend": {"Type": "host-gw"}}`
	if err := st.PutConfig(ctxT(t), []byte(raw)); !errors.Is(err, netconf.ErrIPv6OnlyNeedsKube) {
		t.Errorf("PutConfig of an IPv6-only config: %v", err)
	}
	cli := rawClient(t, srv)
	if _, err := cli.Put(ctxT(t), st.ConfigKey(), raw); err != nil {
		t.Fatal(err)
	}
	_, err := st.Config(ctxT(t))
	if !errors.Is(err, store.ErrInvalidConfig) || !strings.Contains(err.Error(), "EnableIPv4 is false") {
		t.Errorf("Config of an IPv6-only config: %v, want ErrInvalidConfig naming EnableIPv4", err)
	}
}

// A lease that vanished is not re-created beside another host's key for
// the same IPv4 subnet with another IPv6 part.
func TestRenewDoesNotDuplicateAnIPv4Subnet(t *testing.T) {
	srv := etcdtest.StartForTest(t)
	st := newStore(t, srv.Endpoint(), etcdstore.Options{Prefix: prefix})
	cli := rawClient(t, srv)
	cfg := mustConfig(t, `{"Network": "10.5.0.0/16", "Backend": {"Type": "host-gw"}}`)
	l, err := st.Acquire(ctxT(t), cfg, store.AcquireRequest{Attrs: attrs("192.0.2.1"), Previous: netip.MustParsePrefix("10.5.7.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Delete(ctxT(t), subnetKey("10.5.7.0/24")); err != nil {
		t.Fatal(err)
	}
	other := prefix + "/subnets/10.5.7.0-24&fd00::-64"
	if _, err := cli.Put(ctxT(t), other, `{"PublicIP":"192.0.2.9","PublicIPv6":null,"BackendType":"host-gw"}`); err != nil {
		t.Fatal(err)
	}
	_, err = st.Renew(ctxT(t), l)
	if err == nil || !strings.Contains(err.Error(), "taken by another host (key "+other+")") {
		t.Errorf("Renew = %v, want it refused naming %s", err, other)
	}
	if resp := getKV(t, cli, subnetKey("10.5.7.0/24")); len(resp.Kvs) != 0 {
		t.Errorf("Renew re-created %s beside %s", subnetKey("10.5.7.0/24"), other)
	}
}
