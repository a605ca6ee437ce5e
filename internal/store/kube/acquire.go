package kubestore

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/netconf"
	"github.com/weftnet/weft/internal/store"
)

// waitReminder is how often a wait for the node or its podCIDR is logged
// again after the first message.
const waitReminder = time.Minute

// wantState remembers what Acquire published.
type wantState struct {
	mu  sync.Mutex
	d   desired // guarded by mu
	set bool    // guarded by mu
}

// Acquire implements store.Store. The subnet is the node's podCIDR (first
// IPv4, and first IPv6 when the config enables it), which must lie inside
// the config's Network. A node that does not exist yet or has no podCIDR
// is waited for, with a log line naming the cause, until ctx is done.
// Then flannel's annotations are written with one strategic-merge patch
// of nodes/<name>/status, unless they are already in place.
// req.Previous is ignored: the controller-manager decides the subnet.
func (s *Store) Acquire(ctx context.Context, cfg *netconf.Config, req store.AcquireRequest) (lease.Lease, error) {
	if s.node == "" {
		return lease.Lease{}, errNoNode
	}
	n, v4, v6, err := s.waitPodCIDR(ctx, cfg)
	if err != nil {
		return lease.Lease{}, err
	}
	if cfg.EnableIPv4 && !contains(cfg.Network, v4) {
		return lease.Lease{}, fmt.Errorf("node %q podCIDR %s is not inside the Network %s of %s: kube-controller-manager's --cluster-cidr (kubeadm: --pod-network-cidr) must equal Network", s.node, v4, cfg.Network, s.netConf)
	}
	var l lease.Lease
	if cfg.EnableIPv4 {
		l.Subnet = v4
	}
	if cfg.EnableIPv6 {
		if !contains(cfg.IPv6Network, v6) {
			return lease.Lease{}, fmt.Errorf("node %q IPv6 podCIDR %v is not inside the IPv6Network %s of %s", s.node, v6, cfg.IPv6Network, s.netConf)
		}
		l.IPv6Subnet = v6
	}
	d := desired{attrs: req.Attrs, withV6: cfg.EnableIPv6, v6only: !cfg.EnableIPv4}
	attrs, err := s.publish(ctx, n, d)
	if err != nil {
		return lease.Lease{}, err
	}
	s.want.mu.Lock()
	s.want.d, s.want.set = d, true
	s.want.mu.Unlock()
	l.Attrs = attrs
	return l, nil
}

// Renew implements store.Store. A podCIDR does not expire, so there is
// nothing to extend; the agent calls Renew when its own lease went missing
// from a snapshot, and Renew then writes the annotations again if someone
// removed or changed them. The lease is returned unchanged.
func (s *Store) Renew(ctx context.Context, l lease.Lease) (lease.Lease, error) {
	s.want.mu.Lock()
	d, set := s.want.d, s.want.set
	s.want.mu.Unlock()
	if !set {
		return l, nil
	}
	n, err := s.getNode(ctx)
	if err != nil {
		return l, err
	}
	if _, err := s.publish(ctx, n, d); err != nil {
		return l, err
	}
	return l, nil
}

// publish writes the annotations d amounts to on node n, if n does not
// carry them already, and returns the attributes published.
func (s *Store) publish(ctx context.Context, n *corev1.Node, d desired) (lease.Attrs, error) {
	want, attrs, err := s.keys.annotations(n.Annotations, d)
	if err != nil {
		return lease.Attrs{}, fmt.Errorf("node %q: %w", s.node, err)
	}
	diff := changed(n.Annotations, want)
	if len(diff) == 0 {
		s.log.Debug("node annotations already up to date")
		return attrs, nil
	}
	body, err := annotationPatch(diff)
	if err != nil {
		return lease.Attrs{}, fmt.Errorf("encode annotations for node %q: %w", s.node, err)
	}
	if err := s.patchStatus(ctx, body); err != nil {
		return lease.Attrs{}, fmt.Errorf("write annotations on node %q: %w", s.node, err)
	}
	s.log.Info("published node annotations", "public-ip", want[s.keys.publicIP], "public-ipv6", want[s.keys.publicIPv6], "backend-type", want[s.keys.backendType], "backend-data", want[s.keys.backendData])
	return attrs, nil
}

// annotationPatch renders a strategic-merge patch that sets annotations.
// encoding/json sorts map keys, which gives flannel's exact body:
//
//	{"metadata":{"annotations":{"<p>/backend-data":"...","<p>/backend-type":"...",...}}}
func annotationPatch(set map[string]string) ([]byte, error) {
	return json.Marshal(map[string]any{"metadata": map[string]any{"annotations": set}})
}

// patchStatus sends a strategic-merge patch to nodes/<own>/status, the only
// write flannel's RBAC grants.
func (s *Store) patchStatus(ctx context.Context, body []byte) error {
	return s.cs.PatchNodeStatus(ctx, s.node, body)
}

// waitPodCIDR returns the own node once it exists and has the pod CIDRs
// the config needs (an IPv4 one unless IPv4 is disabled, an IPv6 one when
// IPv6 is enabled). It logs why it waits once, then every waitReminder, and
// wakes up on every change of the node.
func (s *Store) waitPodCIDR(ctx context.Context, cfg *netconf.Config) (*corev1.Node, netip.Prefix, netip.Prefix, error) {
	var lastMsg string
	var lastLog time.Time
	started := time.Now()
	say := func(msg string, args ...any) {
		if msg != lastMsg || time.Since(lastLog) >= waitReminder {
			if msg == lastMsg {
				args = append(args, "waiting", time.Since(started).Round(time.Second))
			}
			s.log.Warn(msg, args...)
			lastMsg, lastLog = msg, time.Now()
		}
	}
	for {
		n, err := s.cs.GetNode(ctx, s.node)
		rv := ""
		switch {
		case err == nil:
			v4, v6, err := podCIDRs(n)
			if err != nil {
				return nil, netip.Prefix{}, netip.Prefix{}, err
			}
			if (!cfg.EnableIPv4 || v4.IsValid()) && (!cfg.EnableIPv6 || v6.IsValid()) {
				if lastMsg != "" {
					s.log.Info("node has its podCIDR now", "podCIDR", v4, "waited", time.Since(started).Round(time.Millisecond))
				}
				return n, v4, v6, nil
			}
			rv = n.ResourceVersion
			fam := ""
			if cfg.EnableIPv4 && v4.IsValid() {
				fam = "IPv6 "
			}
			// The controller-manager's flag names every family the config
			// enables, IPv4 first, as kubeadm's --pod-network-cidr does.
			var nets []string
			if cfg.EnableIPv4 {
				nets = append(nets, cfg.Network.String())
			}
			if cfg.EnableIPv6 {
				nets = append(nets, cfg.IPv6Network.String())
			}
			net := strings.Join(nets, ",")
			say(fmt.Sprintf("node %q has no %spodCIDR yet: kube-controller-manager must run with --allocate-node-cidrs=true --cluster-cidr=%s (kubeadm: --pod-network-cidr); waiting for it", s.node, fam, net))
		case apierrors.IsNotFound(err):
			say(fmt.Sprintf("node %q does not exist (yet): the kubelet registers it; check NODE_NAME; waiting for it", s.node))
		case ctx.Err() != nil:
			return nil, netip.Prefix{}, netip.Prefix{}, ctx.Err()
		default:
			return nil, netip.Prefix{}, netip.Prefix{}, fmt.Errorf("get node %q: %w", s.node, err)
		}
		if err := s.awaitNodeChange(ctx, rv); err != nil {
			return nil, netip.Prefix{}, netip.Prefix{}, err
		}
	}
}

// awaitNodeChange returns when the own node changes after resourceVersion
// rv (any change when rv is empty), after at most waitReminder, or with
// ctx's error. Watch failures fall back to a short sleep, so the caller's
// GET loop is never tight.
func (s *Store) awaitNodeChange(ctx context.Context, rv string) error {
	timeout := int64(waitReminder / time.Second)
	w, err := s.cs.WatchNodes(ctx, metav1.ListOptions{
		FieldSelector:   fields.OneTermEqualSelector("metadata.name", s.node).String(),
		ResourceVersion: rv,
		TimeoutSeconds:  &timeout,
	})
	minWait := time.NewTimer(200 * time.Millisecond)
	defer minWait.Stop()
	if err != nil {
		s.log.Debug("watch own node; polling instead", "err", err)
		return sleep(ctx, time.Second)
	}
	defer w.Stop()
	reminder := time.NewTimer(waitReminder)
	defer reminder.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-w.ResultChan():
	case <-reminder.C:
	}
	// A watch that ends at once (expired resource version, say) must not
	// turn the caller's loop into a busy one.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-minWait.C:
		return nil
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// v6only reports whether the config Acquire was called with is
// IPv6-only, which decides how peers' Nodes are read (leaseOf6).
func (s *Store) v6only() bool {
	s.want.mu.Lock()
	defer s.want.mu.Unlock()
	return s.want.set && s.want.d.v6only
}
