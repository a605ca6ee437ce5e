package kube

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/internal/store"
	"github.com/weftnet/weft/test/kube/kubetest"
)

// TestKubeStoreDualStack runs the store against a dual-stack
// controller-manager (--cluster-cidr=10.244.0.0/16,fd00:10:244::/56):
// Acquire takes both podCIDRs, publishes flannel's v6 annotations beside
// the v4 ones with the manifest's RBAC, republishes a changed
// backend-v6-data, the node-public-ipv6 annotation
// overrides --public-ipv6, and Watch hands out peers with both subnets.
func TestKubeStoreDualStack(t *testing.T) {
	e := setup(t, kubetest.Options{ClusterCIDRv6: netip.MustParsePrefix("fd00:10:244::/56")})
	if err := os.WriteFile(e.netConf, []byte(`{"Network": "10.244.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:10:244::/56", "Backend": {"Type": "vxlan"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	e.c.CreateNode(t, "h1", nil)
	e.c.CreateNode(t, "h2", map[string]string{p + "node-public-ipv6": "2001:db8::99"})
	v4 := map[string]netip.Prefix{}
	v6 := map[string]netip.Prefix{}
	for _, n := range []string{"h1", "h2"} {
		e.c.WaitPodCIDR(t, n, 20*time.Second)
		node := e.node(t, n)
		for _, s := range node.Spec.PodCIDRs {
			pfx := netip.MustParsePrefix(s)
			if pfx.Addr().Is4() {
				v4[n] = pfx
			} else {
				v6[n] = pfx
			}
		}
		if !v4[n].IsValid() || !v6[n].IsValid() {
			t.Fatalf("node %s podCIDRs %v: want one of each family", n, node.Spec.PodCIDRs)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	s1, s2 := e.newStore(t, "h1", nil, true), e.newStore(t, "h2", nil, true)
	cfg, err := s1.Config(ctx)
	if err != nil || !cfg.EnableIPv6 {
		t.Fatalf("config = %+v, %v", cfg, err)
	}
	v6data := []byte(`{"VNI":1,"VtepMAC":"d2:0f:6f:22:fd:13"}`)
	l1, err := s1.Acquire(ctx, cfg, store.AcquireRequest{Attrs: lease.Attrs{
		PublicIP: ip("192.168.77.12"), PublicIPv6: ip("2001:db8::12"), BackendType: "vxlan", BackendData: vxlanData, BackendV6Data: v6data,
	}})
	if err != nil {
		t.Fatal(err)
	}
	if l1.Subnet != v4["h1"] || l1.IPv6Subnet != v6["h1"] || l1.Attrs.PublicIPv6 != ip("2001:db8::12") {
		t.Errorf("lease = %v, want %s and %s with PublicIPv6 2001:db8::12", l1, v4["h1"], v6["h1"])
	}
	n := e.node(t, "h1")
	for k, want := range map[string]string{
		p + "public-ip":       "192.168.77.12",
		p + "public-ipv6":     "2001:db8::12",
		p + "backend-data":    string(vxlanData),
		p + "backend-v6-data": string(v6data),
	} {
		if got := n.Annotations[k]; got != want {
			t.Errorf("annotation %s = %q, want %q", k, got, want)
		}
	}

	// The agent republishes its lease when the backend's data changes
	// (identity_watch.go: a new VTEP MAC): the same Acquire with the new
	// BackendV6Data rewrites backend-v6-data and nothing else.
	v6data2 := []byte(`{"VNI":1,"VtepMAC":"d2:0f:6f:22:fd:14"}`)
	if _, err := s1.Acquire(ctx, cfg, store.AcquireRequest{Attrs: lease.Attrs{
		PublicIP: ip("192.168.77.12"), PublicIPv6: ip("2001:db8::12"), BackendType: "vxlan", BackendData: vxlanData, BackendV6Data: v6data2,
	}, Previous: l1.Subnet, PreviousIPv6: l1.IPv6Subnet}); err != nil {
		t.Fatal(err)
	}
	n = e.node(t, "h1")
	if got := n.Annotations[p+"backend-v6-data"]; got != string(v6data2) {
		t.Errorf("after republishing, backend-v6-data = %q, want %q", got, v6data2)
	}
	if got := n.Annotations[p+"backend-data"]; got != string(vxlanData) {
		t.Errorf("after republishing the IPv6 data, backend-data = %q, want %q unchanged", got, vxlanData)
	}

	ov, ok, err := s2.PublicIPv6(ctx)
	if err != nil || !ok || ov != ip("2001:db8::99") {
		t.Fatalf("node-public-ipv6 override = %v %v %v", ov, ok, err)
	}
	if _, err := s2.Acquire(ctx, cfg, store.AcquireRequest{Attrs: lease.Attrs{
		PublicIP: ip("192.168.77.13"), PublicIPv6: ov, BackendType: "vxlan", BackendData: vxlanData, BackendV6Data: v6data,
	}}); err != nil {
		t.Fatal(err)
	}

	snaps := make(chan []lease.Lease, 64)
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = s1.Watch(wctx, func(ls []lease.Lease) { snaps <- ls }) }()
	var last []lease.Lease
	nstest.Eventually(t, 20*time.Second, func() error {
		for {
			select {
			case last = <-snaps:
				continue
			default:
			}
			break
		}
		for _, l := range last {
			if l.Subnet == v4["h2"] && l.IPv6Subnet == v6["h2"] && l.Attrs.PublicIPv6 == ip("2001:db8::99") {
				return nil
			}
		}
		return fmt.Errorf("latest snapshot %v has no dual-stack lease %s&%s for h2", last, v4["h2"], v6["h2"])
	})
}

// A dual-stack config on a cluster whose controller-manager hands out IPv4
// podCIDRs only: Acquire waits and says which --cluster-cidr is missing
// rather than lease an IPv4 subnet alone.
func TestKubeStoreDualStackConfigOnSingleStackCluster(t *testing.T) {
	e := setup(t, kubetest.Options{})
	if err := os.WriteFile(e.netConf, []byte(`{"Network": "10.244.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:10:244::/56", "Backend": {"Type": "host-gw"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	e.c.CreateNode(t, "w1", nil)
	e.c.WaitPodCIDR(t, "w1", 20*time.Second)
	var logs logBuf
	s := e.newStore(t, "w1", logs.logger(), true)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg, err := s.Config(ctx)
	if err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithCancel(ctx)
	res := make(chan error, 1)
	go func() {
		_, err := s.Acquire(actx, cfg, store.AcquireRequest{Attrs: lease.Attrs{PublicIP: ip("10.0.0.1"), PublicIPv6: ip("2001:db8::1"), BackendType: "host-gw"}})
		res <- err
	}()
	const why = `node \"w1\" has no IPv6 podCIDR yet: kube-controller-manager must run with --allocate-node-cidrs=true --cluster-cidr=10.244.0.0/16,fd00:10:244::/56`
	nstest.Eventually(t, 10*time.Second, func() error {
		if !strings.Contains(logs.String(), why) {
			return fmt.Errorf("no log line saying why; log so far:\n%s", logs.String())
		}
		return nil
	})
	select {
	case err := <-res:
		t.Fatalf("Acquire returned without an IPv6 podCIDR: %v", err)
	default:
	}
	acancel()
	if err := <-res; err == nil {
		t.Error("Acquire succeeded after cancel")
	}
}
