package kubecluster

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// ApplyManifest creates or updates every object of a multi-document YAML
// file with server-side apply, so the server validates each one against
// its schema (an unknown or misplaced field fails), and returns them as
// applied. Namespaced objects without a namespace go to "default".
func (c *Cluster) ApplyManifest(ctx context.Context, path string) ([]*unstructured.Unstructured, error) {
	objs, err := ReadManifest(path)
	if err != nil {
		return nil, err
	}
	cfg := c.AdminConfig()
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("discovery client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("dynamic client: %w", err)
	}
	groups, err := restmapper.GetAPIGroupResources(dc)
	if err != nil {
		return nil, fmt.Errorf("discover API resources: %w", err)
	}
	mapper := restmapper.NewDiscoveryRESTMapper(groups)
	var out []*unstructured.Unstructured
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return nil, fmt.Errorf("%s %s from %s: unknown kind: %w", gvk, o.GetName(), path, err)
		}
		ri := dyn.Resource(m.Resource)
		var r dynamic.ResourceInterface = ri
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			ns := o.GetNamespace()
			if ns == "" {
				ns = "default"
			}
			r = ri.Namespace(ns)
		}
		applied, err := r.Apply(ctx, o.GetName(), o, metav1.ApplyOptions{FieldManager: "weft-kubecluster", Force: true})
		if err != nil {
			return nil, fmt.Errorf("apply %s %s from %s: %w", gvk.Kind, o.GetName(), path, err)
		}
		out = append(out, applied)
	}
	return out, nil
}

// ServiceAccountToken returns a token for ServiceAccount ns/name from the
// TokenRequest API, valid for ttl, so that whoever holds it has exactly
// the permissions RBAC gives that account.
func (c *Cluster) ServiceAccountToken(ctx context.Context, ns, name string, ttl time.Duration) (string, error) {
	cs, err := c.Admin()
	if err != nil {
		return "", err
	}
	exp := int64(ttl / time.Second)
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authv1.TokenRequest{
		Spec: authv1.TokenRequestSpec{ExpirationSeconds: &exp},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for ServiceAccount %s/%s: %w", ns, name, err)
	}
	return tr.Status.Token, nil
}

// WriteKubeconfig writes a kubeconfig file for the apiserver that
// authenticates with token. It holds the server URL and the CA file's
// path only, so it works for any process that can route to Options.Addr
// and read the cluster's directory.
func (c *Cluster) WriteKubeconfig(path, token string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["weft"] = &clientcmdapi.Cluster{Server: c.URL(), CertificateAuthority: c.pki.caFile}
	cfg.AuthInfos["weft"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["weft"] = &clientcmdapi.Context{Cluster: "weft", AuthInfo: "weft"}
	cfg.CurrentContext = "weft"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return nil
}

// CreateNode creates a Node object the way a kubelet registers one (but
// with no kubelet behind it), with the given annotations.
func (c *Cluster) CreateNode(ctx context.Context, name string, annotations map[string]string) (*corev1.Node, error) {
	cs, err := c.Admin()
	if err != nil {
		return nil, err
	}
	n, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Labels:      map[string]string{"kubernetes.io/os": "linux", "kubernetes.io/hostname": name},
			Annotations: annotations,
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create node %s: %w", name, err)
	}
	return n, nil
}

// WaitPodCIDR waits until the controller-manager gave Node name a podCIDR
// and returns it; ctx bounds the wait.
func (c *Cluster) WaitPodCIDR(ctx context.Context, name string) (netip.Prefix, error) {
	cs, err := c.Admin()
	if err != nil {
		return netip.Prefix{}, err
	}
	nodes := cs.CoreV1().Nodes()
	for {
		n, err := nodes.Get(ctx, name, metav1.GetOptions{})
		if err == nil && n.Spec.PodCIDR != "" {
			p, err := netip.ParsePrefix(n.Spec.PodCIDR)
			if err != nil {
				return netip.Prefix{}, fmt.Errorf("node %s podCIDR %q: %w", name, n.Spec.PodCIDR, err)
			}
			return p, nil
		}
		rv := ""
		if err == nil {
			rv = n.ResourceVersion
		}
		w, werr := nodes.Watch(ctx, metav1.ListOptions{
			FieldSelector:   fields.OneTermEqualSelector("metadata.name", name).String(),
			ResourceVersion: rv,
		})
		if werr == nil {
			select {
			case <-w.ResultChan():
			case <-ctx.Done():
			}
			w.Stop()
		}
		select {
		case <-ctx.Done():
			return netip.Prefix{}, fmt.Errorf("node %s got no podCIDR (last error: %v): %w", name, err, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
