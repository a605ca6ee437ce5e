package kubetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
)

// ApplyManifest creates or updates every object of a multi-document YAML
// file with server-side apply, so the server validates each one against
// its schema (an unknown or misplaced field fails), and returns them as
// applied. Namespaced objects without a namespace go to "default".
func (c *Cluster) ApplyManifest(t testing.TB, path string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := ReadManifest(path)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	cfg := c.AdminConfig()
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatalf("kubetest: discovery client: %v", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("kubetest: dynamic client: %v", err)
	}
	groups, err := restmapper.GetAPIGroupResources(dc)
	if err != nil {
		t.Fatalf("kubetest: discover API resources: %v", err)
	}
	mapper := restmapper.NewDiscoveryRESTMapper(groups)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out []*unstructured.Unstructured
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("kubetest: %s %s: unknown kind: %v", gvk, o.GetName(), err)
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
		applied, err := r.Apply(ctx, o.GetName(), o, metav1.ApplyOptions{FieldManager: "weft-kubetest", Force: true})
		if err != nil {
			t.Fatalf("kubetest: apply %s %s from %s: %v", gvk.Kind, o.GetName(), path, err)
		}
		out = append(out, applied)
	}
	return out
}

// ReadManifest decodes every non-empty document of a YAML (or JSON) file.
func ReadManifest(path string) ([]*unstructured.Unstructured, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for i := 0; ; i++ {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("%s: document %d: %w", path, i, err)
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetKind() == "" || u.GetAPIVersion() == "" || u.GetName() == "" {
			return nil, fmt.Errorf("%s: document %d lacks apiVersion, kind or metadata.name", path, i)
		}
		out = append(out, u)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no objects", path)
	}
	return out, nil
}

// ServiceAccountToken returns a token for ServiceAccount ns/name from the
// TokenRequest API (valid for an hour), so that code under test runs with
// exactly the permissions RBAC gives that account.
func (c *Cluster) ServiceAccountToken(t testing.TB, ns, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	exp := int64(3600)
	tr, err := c.Admin(t).CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authv1.TokenRequest{
		Spec: authv1.TokenRequestSpec{ExpirationSeconds: &exp},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubetest: token for ServiceAccount %s/%s: %v", ns, name, err)
	}
	return tr.Status.Token
}
