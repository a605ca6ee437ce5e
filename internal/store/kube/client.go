package kubestore

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
)

// Client is the part of the Kubernetes API the store uses: nodes (get,
// list, watch, patch of the status subresource) and one pod get, which is
// all flannel's ClusterRole grants.
//
// It is a REST client over the core/v1 group alone rather than client-go's
// generated Clientset. The Clientset's scheme registers every built-in API
// group (about 50) at program start; linking and initialising them cost the
// agent some 50 MB of binary and 15 MiB of resident memory for types it
// never decodes (docs/benchmarks.md, "Agent memory").
type Client struct {
	rc *rest.RESTClient
	// timeout bounds every request but watches (which the server ends
	// itself): an API server that stopped answering must not hang the
	// agent's call silently.
	timeout time.Duration
}

// DefaultCallTimeout bounds one API request unless Options.CallTimeout
// says otherwise. A page of a node list among thousands is the largest.
const DefaultCallTimeout = 10 * time.Second

// listTimeout is the least bound of a node list.
const listTimeout = time.Minute

// bound gives one request its deadline, unless the caller's is sooner.
func (c *Client) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.timeout)
}

// coreScheme knows core/v1 and the meta/v1 options and status types,
// enough to encode request parameters and decode Nodes, Pods, watch events
// and API errors.
var coreScheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := corev1.AddToScheme(s); err != nil {
		panic(fmt.Sprintf("register core/v1: %v", err))
	}
	return s
}()

var (
	coreCodecs = serializer.NewCodecFactory(coreScheme)
	coreParams = runtime.NewParameterCodec(coreScheme)
)

// NewClient returns a Client for the API server cfg points at. cfg is
// copied, not changed.
func NewClient(cfg *rest.Config) (*Client, error) {
	c := rest.CopyConfig(cfg)
	c.APIPath = "/api"
	c.GroupVersion = &corev1.SchemeGroupVersion
	c.NegotiatedSerializer = coreCodecs.WithoutConversion()
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	rc, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("create Kubernetes client for %s: %w", cfg.Host, err)
	}
	return &Client{rc: rc, timeout: DefaultCallTimeout}, nil
}

// GetNode reads one Node.
func (c *Client) GetNode(ctx context.Context, name string) (*corev1.Node, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	n := &corev1.Node{}
	err := c.rc.Get().Resource("nodes").Name(name).Do(ctx).Into(n)
	return n, err
}

// ListNodes lists Nodes.
//
// A list gets longer than other requests: the informer's first one is
// served from the API server's cache in one piece, every Node whole, some
// tens of megabytes among thousands of nodes.
func (c *Client) ListNodes(ctx context.Context, o metav1.ListOptions) (*corev1.NodeList, error) {
	ctx, cancel := context.WithTimeout(ctx, max(c.timeout, listTimeout))
	defer cancel()
	l := &corev1.NodeList{}
	err := c.rc.Get().Resource("nodes").VersionedParams(&o, coreParams).Do(ctx).Into(l)
	return l, err
}

// WatchNodes watches Nodes.
func (c *Client) WatchNodes(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
	o.Watch = true
	return c.rc.Get().Resource("nodes").VersionedParams(&o, coreParams).Watch(ctx)
}

// PatchNodeStatus sends a strategic-merge patch to nodes/<name>/status.
func (c *Client) PatchNodeStatus(ctx context.Context, name string, body []byte) error {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	return c.rc.Patch(types.StrategicMergePatchType).Resource("nodes").Name(name).SubResource("status").Body(body).Do(ctx).Error()
}

// GetPod reads one Pod.
func (c *Client) GetPod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	p := &corev1.Pod{}
	err := c.rc.Get().Namespace(namespace).Resource("pods").Name(name).Do(ctx).Into(p)
	return p, err
}
