package kube

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/internal/store"
	kubestore "github.com/weftnet/weft/internal/store/kube"
	"github.com/weftnet/weft/test/kube/kubetest"
)

// TestControlPlaneInNamespace runs the control plane the way the lab
// needs it, inside an underlay namespace on a routable address, and a
// store in a second namespace (a lab host) that reaches it only over a
// veth with the ServiceAccount's kubeconfig:
//
//	netns <ul>: v0 10.4.7.12/24, etcd + kube-apiserver + controller-manager
//	      | veth
//	netns <h1>: eth0 10.4.7.21/24, this test binary as a helper process
//	            running kubestore.Acquire for node "h1"
func TestControlPlaneInNamespace(t *testing.T) {
	nstest.RequireRoot(t)
	ul := nstest.NewNS(t, "kul")
	h1 := nstest.NewNS(t, "kh1")
	nstest.Exec(t, ul, "ip", "link", "add", "v0", "type", "veth", "peer", "name", "eth0", "netns", h1)
	nstest.Exec(t, ul, "ip", "addr", "add", "10.4.7.12/24", "dev", "v0")
	nstest.Exec(t, ul, "ip", "link", "set", "v0", "up")
	nstest.Exec(t, h1, "ip", "addr", "add", "10.4.7.21/24", "dev", "eth0")
	nstest.Exec(t, h1, "ip", "link", "set", "eth0", "up")
	nstest.Exec(t, h1, "ip", "link", "set", "lo", "up")

	e := setup(t, kubetest.Options{NetNS: ul, Addr: netip.MustParseAddr("10.4.7.12")})
	if !strings.HasPrefix(e.c.URL(), "https://10.4.7.12:") {
		t.Fatalf("apiserver URL %s, want one on 10.4.7.12", e.c.URL())
	}
	e.c.CreateNode(t, "h1", nil)
	want := e.c.WaitPodCIDR(t, "h1", 10*time.Second)

	cmd := exec.Command("ip", "netns", "exec", h1, os.Args[0], "-test.run=^TestHelperAcquire$", "-test.count=1")
	cmd.Env = append(os.Environ(),
		"WEFT_KUBETEST_HELPER=1",
		"WEFT_KUBETEST_KUBECONFIG="+e.saKC,
		"WEFT_KUBETEST_NETCONF="+e.netConf,
		"NODE_NAME=h1",
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper in netns %s: %v\n%s", h1, err, out)
	}
	if !strings.Contains(string(out), "subnet="+want.String()) {
		t.Errorf("helper output lacks subnet=%s:\n%s", want, out)
	}
	if got := e.node(t, "h1").Annotations[p+"public-ip"]; got != "10.4.7.21" {
		t.Errorf("public-ip = %q, want 10.4.7.21", got)
	}
}

// TestHelperAcquire is the helper process of TestControlPlaneInNamespace;
// it does nothing unless WEFT_KUBETEST_HELPER=1.
func TestHelperAcquire(t *testing.T) {
	if os.Getenv("WEFT_KUBETEST_HELPER") != "1" {
		t.Skip("helper process for TestControlPlaneInNamespace")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := kubestore.New(ctx, kubestore.Options{
		KubeconfigFile: os.Getenv("WEFT_KUBETEST_KUBECONFIG"),
		NetConfigPath:  os.Getenv("WEFT_KUBETEST_NETCONF"),
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := s.Config(ctx)
	if err != nil {
		t.Fatal(err)
	}
	l, err := s.Acquire(ctx, cfg, store.AcquireRequest{Attrs: lease.Attrs{
		PublicIP: netip.MustParseAddr("10.4.7.21"), BackendType: "host-gw",
	}})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("node=%s subnet=%s\n", s.Node(), l.Subnet)
}
