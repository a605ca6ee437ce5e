package kubetest

import (
	"context"
	"net/netip"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"

	"github.com/weftnet/weft/internal/kubecluster"
)

// Options shape a control plane. The zero value runs everything on
// 127.0.0.1 in the test's own namespace with the controller-manager
// allocating /24s out of 10.244.0.0/16, flannel's default Network.
type Options struct {
	// NetNS, when set, is the network namespace the processes run in (via
	// `ip netns exec`), e.g. a lab's underlay; its loopback is brought up.
	NetNS string
	// Addr is the address every process listens on; default 127.0.0.1.
	// With NetNS it must be an address of that namespace that agents can
	// route to (the underlay bridge's, say).
	Addr netip.Addr
	// ClusterCIDR is kube-controller-manager's --cluster-cidr; default
	// 10.244.0.0/16, with --node-cidr-mask-size=24.
	ClusterCIDR netip.Prefix
	// ClusterCIDRv6 makes the cluster dual-stack (Nodes get a /64 of it
	// beside their IPv4 podCIDR).
	ClusterCIDRv6 netip.Prefix
	// DeferControllerManager leaves kube-controller-manager stopped until
	// StartControllerManager, so that Nodes exist without a podCIDR.
	DeferControllerManager bool
	// Controllers are kube-controller-manager's --controllers; default
	// node-ipam-controller alone.
	Controllers []string
	// Users get tokens of their own (kubecluster.Options.Users).
	Users []kubecluster.User
	// AuditNodeStatus logs every nodes/status patch to AuditLog().
	AuditNodeStatus bool
}

// Cluster is a running control plane, stopped when the test that started
// it ends. The embedded kubecluster.Cluster's methods that return errors
// are shadowed here by ones that fail the test.
type Cluster struct {
	*kubecluster.Cluster
}

// Start starts a control plane with default Options; see StartWith.
func Start(t testing.TB) *Cluster {
	t.Helper()
	return StartWith(t, Options{})
}

// StartWith starts etcd and kube-apiserver, waits until the apiserver is
// ready (about 3 s), starts kube-controller-manager unless deferred, and
// registers their shutdown with t.Cleanup. It fails the test on error
// and skips it, outside CI, when the binaries are not built (Binaries).
func StartWith(t testing.TB, o Options) *Cluster {
	t.Helper()
	bin := Binaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	kc, err := kubecluster.Start(ctx, kubecluster.Options{
		BinDir:                 bin,
		Dir:                    t.TempDir(),
		NetNS:                  o.NetNS,
		Addr:                   o.Addr,
		ClusterCIDR:            o.ClusterCIDR,
		ClusterCIDRv6:          o.ClusterCIDRv6,
		DeferControllerManager: o.DeferControllerManager,
		Controllers:            o.Controllers,
		Users:                  o.Users,
		AuditNodeStatus:        o.AuditNodeStatus,
	})
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	c := &Cluster{kc}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("control plane logs:\n%s", kc.LogTails(40))
		}
		kc.Stop()
	})
	return c
}

// StartControllerManager starts kube-controller-manager (see
// kubecluster.Cluster.StartControllerManager).
func (c *Cluster) StartControllerManager(t testing.TB) {
	t.Helper()
	if err := c.Cluster.StartControllerManager(); err != nil {
		t.Fatalf("kubetest: %v", err)
	}
}

// Admin is a clientset on AdminConfig.
func (c *Cluster) Admin(t testing.TB) kubernetes.Interface {
	t.Helper()
	cs, err := c.Cluster.Admin()
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	return cs
}

// Kubeconfig writes a kubeconfig file for the apiserver that
// authenticates with token and returns its path (in the cluster's
// directory).
func (c *Cluster) Kubeconfig(t testing.TB, token string) string {
	t.Helper()
	f, err := os.CreateTemp(c.Dir(), "kubeconfig-*")
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	f.Close()
	if err := c.WriteKubeconfig(f.Name(), token); err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	return f.Name()
}

// CreateNode creates a Node object the way a kubelet registers one (but
// with no kubelet behind it), with the given annotations, and returns it.
func (c *Cluster) CreateNode(t testing.TB, name string, annotations map[string]string) *corev1.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := c.Cluster.CreateNode(ctx, name, annotations)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	return n
}

// WaitPodCIDR waits up to timeout for the controller-manager to give
// Node name a podCIDR and returns it.
func (c *Cluster) WaitPodCIDR(t testing.TB, name string, timeout time.Duration) netip.Prefix {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	p, err := c.Cluster.WaitPodCIDR(ctx, name)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	return p
}

// ApplyManifest applies every object of a YAML file with server-side
// apply (see kubecluster.Cluster.ApplyManifest) and returns them as
// applied.
func (c *Cluster) ApplyManifest(t testing.TB, path string) []*unstructured.Unstructured {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	objs, err := c.Cluster.ApplyManifest(ctx, path)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	return objs
}

// ReadManifest decodes every non-empty document of a YAML (or JSON) file.
func ReadManifest(path string) ([]*unstructured.Unstructured, error) {
	return kubecluster.ReadManifest(path)
}

// ServiceAccountToken returns a token for ServiceAccount ns/name from the
// TokenRequest API (valid for an hour), so that code under test runs with
// exactly the permissions RBAC gives that account.
func (c *Cluster) ServiceAccountToken(t testing.TB, ns, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok, err := c.Cluster.ServiceAccountToken(ctx, ns, name, time.Hour)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	return tok
}
