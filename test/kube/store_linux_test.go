package kube

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/netconf"
	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/internal/store"
	kubestore "github.com/weftnet/weft/internal/store/kube"
	"github.com/weftnet/weft/internal/testbin"
	"github.com/weftnet/weft/test/kube/kubetest"
)

// The manifest's names.
const (
	namespace      = "kube-weft"
	serviceAccount = "weft"
	p              = "flannel.alpha.coreos.com/"
)

// env is a control plane with deploy/kube-weft.yml applied and a
// kubeconfig holding a token of the manifest's ServiceAccount.
type env struct {
	c       *kubetest.Cluster
	admin   kubernetes.Interface
	saKC    string // kubeconfig with the ServiceAccount token
	saToken string
	netConf string                       // net-conf.json from the manifest's ConfigMap
	objs    []*unstructured.Unstructured // the manifest as applied
}

func setup(t *testing.T, o kubetest.Options) *env {
	t.Helper()
	c := kubetest.StartWith(t, o)
	e := &env{c: c, admin: c.Admin(t)}
	root, err := testbin.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	e.objs = c.ApplyManifest(t, filepath.Join(root, "deploy", "kube-weft.yml"))
	t.Logf("applied %d objects of deploy/kube-weft.yml in %v", len(e.objs), time.Since(start).Round(time.Millisecond))
	var conf string
	for _, o := range e.objs {
		if o.GetKind() == "ConfigMap" {
			conf, _, _ = unstructuredString(o.Object, "data", "net-conf.json")
		}
	}
	if conf == "" {
		t.Fatal("the manifest's ConfigMap has no net-conf.json")
	}
	e.netConf = filepath.Join(t.TempDir(), "net-conf.json")
	if err := os.WriteFile(e.netConf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	e.saToken = c.ServiceAccountToken(t, namespace, serviceAccount)
	e.saKC = c.Kubeconfig(t, e.saToken)
	return e
}

func unstructuredString(obj map[string]any, path ...string) (string, bool, error) {
	var cur any = obj
	for _, k := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return "", false, nil
		}
		cur = m[k]
	}
	s, ok := cur.(string)
	return s, ok, nil
}

// newStore builds the store as the agent does, from the ServiceAccount's
// kubeconfig.
func (e *env) newStore(t *testing.T, node string, log *slog.Logger, markUp bool) *kubestore.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := kubestore.New(ctx, kubestore.Options{
		KubeconfigFile:            e.saKC,
		NodeName:                  node,
		NetConfigPath:             e.netConf,
		SetNodeNetworkUnavailable: markUp,
		Log:                       log,
	})
	if err != nil {
		t.Fatalf("kubestore.New: %v", err)
	}
	return s
}

func (e *env) node(t *testing.T, name string) *corev1.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := e.admin.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get node %s: %v", name, err)
	}
	return n
}

// logBuf collects a logger's output for assertions.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(b)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuf) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

var (
	vxlanData = json.RawMessage(`{"VNI":1,"VtepMAC":"d2:0f:6f:22:fd:12"}`)
	ip        = netip.MustParseAddr
)

// TestKubeStore runs the store against a real apiserver and
// controller-manager with the manifest's RBAC.
func TestKubeStore(t *testing.T) {
	e := setup(t, kubetest.Options{})
	for _, n := range []string{"h1", "h2"} {
		e.c.CreateNode(t, n, nil)
	}
	cidr := map[string]netip.Prefix{}
	for _, n := range []string{"h1", "h2"} {
		cidr[n] = e.c.WaitPodCIDR(t, n, 10*time.Second)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var cfg *netconf.Config
	t.Run("config from the manifest's net-conf.json", func(t *testing.T) {
		s := e.newStore(t, "h1", nil, true)
		var err error
		cfg, err = s.Config(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Network != netip.MustParsePrefix("10.244.0.0/16") || cfg.BackendType != "vxlan" {
			t.Errorf("config = %+v, want Network 10.244.0.0/16 and vxlan", cfg)
		}
	})
	if cfg == nil {
		t.FailNow()
	}

	t.Run("acquire writes flannel's annotations byte for byte", func(t *testing.T) {
		var logs logBuf
		s := e.newStore(t, "h1", logs.logger(), true)
		l, err := s.Acquire(ctx, cfg, store.AcquireRequest{Attrs: lease.Attrs{
			PublicIP: ip("192.168.77.12"), BackendType: "vxlan", BackendData: vxlanData,
		}})
		if err != nil {
			t.Fatal(err)
		}
		if l.Subnet != cidr["h1"] || l.Attrs.PublicIP != ip("192.168.77.12") || !l.Reservation() {
			t.Errorf("lease = %v, want subnet %s, public IP 192.168.77.12, no expiry", l, cidr["h1"])
		}
		// flannel.md §5: what flannel v0.28.9 leaves on a vxlan node.
		want := map[string]string{
			p + "backend-data":        `{"VNI":1,"VtepMAC":"d2:0f:6f:22:fd:12"}`,
			p + "backend-type":        "vxlan",
			p + "kube-subnet-manager": "true",
			p + "public-ip":           "192.168.77.12",
		}
		n := e.node(t, "h1")
		for k, v := range want {
			if got, ok := n.Annotations[k]; !ok || got != v {
				t.Errorf("annotation %s = %q (present %v), want %q", k, got, ok, v)
			}
		}
		for k := range n.Annotations {
			if strings.HasPrefix(k, p) {
				if _, ok := want[k]; !ok {
					t.Errorf("unexpected annotation %s=%q", k, n.Annotations[k])
				}
			}
		}

		// Already in place: no write at all.
		rv := n.ResourceVersion
		if _, err := s.Acquire(ctx, cfg, store.AcquireRequest{Attrs: lease.Attrs{
			PublicIP: ip("192.168.77.12"), BackendType: "vxlan", BackendData: vxlanData,
		}}); err != nil {
			t.Fatal(err)
		}
		if got := e.node(t, "h1").ResourceVersion; got != rv {
			t.Errorf("second Acquire with the same attributes wrote the node (resourceVersion %s -> %s)", rv, got)
		}

		// A restarted agent finds its VtepMAC where flannel keeps it.
		got, err := e.newStore(t, "h1", nil, true).StoredBackendData(ctx)
		if err != nil || got.BackendType != "vxlan" || string(got.BackendData) != string(vxlanData) {
			t.Errorf("StoredBackendData = %+v, %v; want vxlan, %s", got, err, vxlanData)
		}
	})

	t.Run("NetworkUnavailable condition is flannel's", func(t *testing.T) {
		s := e.newStore(t, "h1", nil, true)
		before := time.Now().Add(-time.Second).Truncate(time.Second)
		if err := s.MarkNetworkAvailable(ctx); err != nil {
			t.Fatal(err)
		}
		var cond *corev1.NodeCondition
		conds := e.node(t, "h1").Status.Conditions
		for i := range conds {
			if conds[i].Type == corev1.NodeNetworkUnavailable {
				cond = &conds[i]
			}
		}
		if cond == nil {
			t.Fatal("no NetworkUnavailable condition")
		}
		if cond.Status != corev1.ConditionFalse || cond.Reason != "FlannelIsUp" || cond.Message != "Flannel is running on this node" {
			t.Errorf("condition = %+v, want False/FlannelIsUp/\"Flannel is running on this node\"", cond)
		}
		if cond.LastHeartbeatTime.Time.Before(before) || !cond.LastTransitionTime.Equal(&cond.LastHeartbeatTime) {
			t.Errorf("condition times = heartbeat %v transition %v, want both now", cond.LastHeartbeatTime, cond.LastTransitionTime)
		}
	})

	t.Run("host-gw with public-ip-overwrite, node-public-ip, condition disabled", func(t *testing.T) {
		patchAnnotations(t, e.admin, "h2", map[string]any{
			p + "public-ip-overwrite": "203.0.113.7",
			p + "node-public-ip":      "192.168.77.22",
		})
		s := e.newStore(t, "h2", nil, false)
		npip, ok, err := s.NodePublicIP(ctx)
		if err != nil || !ok || npip != ip("192.168.77.22") {
			t.Errorf("NodePublicIP = %v, %v, %v; want 192.168.77.22", npip, ok, err)
		}
		l, err := s.Acquire(ctx, cfg, store.AcquireRequest{Attrs: lease.Attrs{PublicIP: npip, BackendType: "host-gw"}})
		if err != nil {
			t.Fatal(err)
		}
		if l.Subnet != cidr["h2"] || l.Attrs.PublicIP != ip("203.0.113.7") {
			t.Errorf("lease = %v, want %s with the overwrite 203.0.113.7", l, cidr["h2"])
		}
		n := e.node(t, "h2")
		if got := n.Annotations[p+"public-ip"]; got != "203.0.113.7" {
			t.Errorf("public-ip = %q, want the overwrite 203.0.113.7", got)
		}
		if got := n.Annotations[p+"backend-data"]; got != "null" {
			t.Errorf("host-gw backend-data = %q, want the string null", got)
		}
		if err := s.MarkNetworkAvailable(ctx); err != nil {
			t.Fatal(err)
		}
		for _, c := range e.node(t, "h2").Status.Conditions {
			if c.Type == corev1.NodeNetworkUnavailable {
				t.Errorf("condition set although SetNodeNetworkUnavailable is false: %+v", c)
			}
		}
	})

	t.Run("podCIDR outside Network is refused", func(t *testing.T) {
		other, err := netconf.Parse([]byte(`{"Network":"10.9.0.0/16","Backend":{"Type":"host-gw"}}`))
		if err != nil {
			t.Fatal(err)
		}
		_, err = e.newStore(t, "h2", nil, true).Acquire(ctx, other, store.AcquireRequest{Attrs: lease.Attrs{PublicIP: ip("10.0.0.2"), BackendType: "host-gw"}})
		if err == nil || !strings.Contains(err.Error(), "--cluster-cidr") {
			t.Errorf("Acquire = %v, want an error naming --cluster-cidr", err)
		}
	})

	t.Run("node name from the pod", func(t *testing.T) {
		automount := false
		pod, err := e.admin.CoreV1().Pods(namespace).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "weft-probe"},
			Spec: corev1.PodSpec{
				NodeName:                     "h2",
				ServiceAccountName:           serviceAccount,
				AutomountServiceAccountToken: &automount,
				Containers:                   []corev1.Container{{Name: "c", Image: "example.invalid/none"}},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		sa, err := kubestore.NewClient(e.c.TokenConfig(e.saToken))
		if err != nil {
			t.Fatal(err)
		}
		env := map[string]string{"POD_NAMESPACE": namespace, "POD_NAME": pod.Name}
		got, err := kubestore.NodeName(ctx, sa, func(k string) string { return env[k] })
		if err != nil || got != "h2" {
			t.Errorf("NodeName from pod = %q, %v; want h2", got, err)
		}
		env["NODE_NAME"] = "h9"
		if got, _ := kubestore.NodeName(ctx, sa, func(k string) string { return env[k] }); got != "h9" {
			t.Errorf("NodeName with NODE_NAME = %q, want h9", got)
		}
	})

	t.Run("watch", func(t *testing.T) { testWatch(t, e, cfg, cidr) })
}

// testWatch follows the peer set while nodes come, change and go.
func testWatch(t *testing.T, e *env, cfg *netconf.Config, cidr map[string]netip.Prefix) {
	var logs logBuf
	s := e.newStore(t, "h1", logs.logger(), true)
	ctx, cancel := context.WithCancel(context.Background())
	var (
		mu     sync.Mutex
		latest []lease.Lease
		calls  int
	)
	done := make(chan error, 1)
	go func() {
		done <- s.Watch(ctx, func(ls []lease.Lease) {
			mu.Lock()
			latest, calls = ls, calls+1
			mu.Unlock()
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != context.Canceled {
			t.Errorf("Watch returned %v, want context.Canceled", err)
		}
	})
	bySubnet := func(sn netip.Prefix) (lease.Lease, bool) {
		mu.Lock()
		defer mu.Unlock()
		for _, l := range latest {
			if l.Subnet == sn {
				return l, true
			}
		}
		return lease.Lease{}, false
	}
	waitLease := func(what string, d time.Duration, ok func() error) {
		t.Helper()
		start := time.Now()
		nstest.Eventually(t, d, ok)
		t.Logf("%s after %v", what, time.Since(start).Round(time.Millisecond))
	}

	// The first snapshot holds both acquired nodes.
	waitLease("first snapshot", 10*time.Second, func() error {
		for _, n := range []string{"h1", "h2"} {
			if _, ok := bySubnet(cidr[n]); !ok {
				return fmt.Errorf("%s (%s) not in the snapshot", n, cidr[n])
			}
		}
		return nil
	})
	if l, _ := bySubnet(cidr["h2"]); l.Attrs.BackendType != "host-gw" || l.Attrs.PublicIP != ip("203.0.113.7") || l.Attrs.BackendData != nil {
		t.Errorf("h2's lease = %v data %q, want host-gw 203.0.113.7 without data", l, l.Attrs.BackendData)
	}

	// A node whose annotations flannel wrote (node-by-node migration)
	// is a peer as it is.
	e.c.CreateNode(t, "h3", map[string]string{
		p + "backend-data":        `{"VNI":1,"VtepMAC":"aa:bb:cc:00:00:03"}`,
		p + "backend-type":        "vxlan",
		p + "kube-subnet-manager": "true",
		p + "public-ip":           "192.168.77.13",
	})
	cidr["h3"] = e.c.WaitPodCIDR(t, "h3", 10*time.Second)
	waitLease("flannel-written h3 in the snapshot", 2*time.Second, func() error {
		l, ok := bySubnet(cidr["h3"])
		if !ok {
			return fmt.Errorf("h3 (%s) not in the snapshot", cidr["h3"])
		}
		if l.Attrs.PublicIP != ip("192.168.77.13") || string(l.Attrs.BackendData) != `{"VNI":1,"VtepMAC":"aa:bb:cc:00:00:03"}` {
			return fmt.Errorf("h3's lease = %v %s", l, l.Attrs.BackendData)
		}
		return nil
	})

	// A changed annotation reaches the snapshot.
	patchAnnotations(t, e.admin, "h3", map[string]any{p + "public-ip": "192.168.77.33"})
	waitLease("h3's new public-ip in the snapshot", 2*time.Second, func() error {
		if l, _ := bySubnet(cidr["h3"]); l.Attrs.PublicIP != ip("192.168.77.33") {
			return fmt.Errorf("h3's public IP is %v", l.Attrs.PublicIP)
		}
		return nil
	})

	// Garbage and bare nodes: skipped, one line for the garbage one
	// however often it changes, and the others stay.
	e.c.CreateNode(t, "junk", map[string]string{
		p + "backend-data":        `{"VNI":1,"VtepMAC":`,
		p + "backend-type":        "vxlan",
		p + "kube-subnet-manager": "true",
		p + "public-ip":           "not-an-address",
	})
	e.c.CreateNode(t, "bare", nil)
	junkCIDR := e.c.WaitPodCIDR(t, "junk", 10*time.Second)
	e.c.WaitPodCIDR(t, "bare", 10*time.Second)
	for i := range 3 {
		patchLabels(t, e.admin, "junk", map[string]any{"weft.test/poke": fmt.Sprint(i)})
	}
	patchAnnotations(t, e.admin, "h3", map[string]any{p + "public-ip": "192.168.77.43"})
	waitLease("h3 changed again after the junk", 2*time.Second, func() error {
		if l, _ := bySubnet(cidr["h3"]); l.Attrs.PublicIP != ip("192.168.77.43") {
			return fmt.Errorf("h3's public IP is %v", l.Attrs.PublicIP)
		}
		return nil
	})
	if _, ok := bySubnet(junkCIDR); ok {
		t.Errorf("the garbage node's subnet %s is in the snapshot", junkCIDR)
	}
	if n := warnings(logs.String(), "peer-node=junk"); n != 1 {
		t.Errorf("%d log lines about the garbage node, want 1:\n%s", n, logs.String())
	}
	if warnings(logs.String(), "peer-node=bare") != 0 || warnings(logs.String(), "peer-node=h3") != 0 {
		t.Errorf("a node without annotations or without a podCIDR yet was warned about:\n%s", logs.String())
	}
	for _, n := range []string{"h1", "h2", "h3"} {
		if _, ok := bySubnet(cidr[n]); !ok {
			t.Errorf("%s left the snapshot", n)
		}
	}

	// Node updates that touch no lease (labels here, kubelet status in a
	// real cluster) deliver nothing new.
	mu.Lock()
	before := calls
	mu.Unlock()
	for i := range 3 {
		patchLabels(t, e.admin, "h2", map[string]any{"weft.test/poke": fmt.Sprint(i)})
	}
	patchAnnotations(t, e.admin, "h3", map[string]any{p + "public-ip": "192.168.77.53"})
	waitLease("marker change", 2*time.Second, func() error {
		if l, _ := bySubnet(cidr["h3"]); l.Attrs.PublicIP != ip("192.168.77.53") {
			return fmt.Errorf("h3's public IP is %v", l.Attrs.PublicIP)
		}
		return nil
	})
	mu.Lock()
	if calls != before+1 {
		t.Errorf("%d snapshots for 3 label changes and 1 lease change, want 1", calls-before)
	}
	mu.Unlock()

	// Deleting a node removes its lease within 2 s.
	if err := e.admin.CoreV1().Nodes().Delete(context.Background(), "h3", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitLease("deleted h3 gone from the snapshot", 2*time.Second, func() error {
		if _, ok := bySubnet(cidr["h3"]); ok {
			return fmt.Errorf("h3 is still in the snapshot")
		}
		return nil
	})
	if strings.Contains(logs.String(), "panic") {
		t.Errorf("panic in the log:\n%s", logs.String())
	}
}

// warnings counts the WARN lines of a text log that contain s.
func warnings(log, s string) int {
	n := 0
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "level=WARN") && strings.Contains(l, s) {
			n++
		}
	}
	return n
}

func patchAnnotations(t *testing.T, cs kubernetes.Interface, node string, set map[string]any) {
	t.Helper()
	patchMeta(t, cs, node, map[string]any{"annotations": set})
}

func patchLabels(t *testing.T, cs kubernetes.Interface, node string, set map[string]any) {
	t.Helper()
	patchMeta(t, cs, node, map[string]any{"labels": set})
}

func patchMeta(t *testing.T, cs kubernetes.Interface, node string, meta map[string]any) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"metadata": meta})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cs.CoreV1().Nodes().Patch(ctx, node, types.StrategicMergePatchType, body, metav1.PatchOptions{}); err != nil {
		t.Fatalf("patch node %s: %v", node, err)
	}
}

// TestAcquireWaitsForPodCIDR starts the store before the controller-manager:
// Acquire says why it waits and returns, without a restart, once the
// podCIDR is assigned.
func TestAcquireWaitsForPodCIDR(t *testing.T) {
	e := setup(t, kubetest.Options{DeferControllerManager: true})
	e.c.CreateNode(t, "w1", nil)
	var logs logBuf
	s := e.newStore(t, "w1", logs.logger(), true)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg, err := s.Config(ctx)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		l   lease.Lease
		err error
	}
	res := make(chan result, 1)
	go func() {
		l, err := s.Acquire(ctx, cfg, store.AcquireRequest{Attrs: lease.Attrs{PublicIP: ip("10.0.0.1"), BackendType: "host-gw"}})
		res <- result{l, err}
	}()
	const why = `node \"w1\" has no podCIDR yet: kube-controller-manager must run with --allocate-node-cidrs=true --cluster-cidr=10.244.0.0/16 (kubeadm: --pod-network-cidr)`
	nstest.Eventually(t, 10*time.Second, func() error {
		if !strings.Contains(logs.String(), why) {
			return fmt.Errorf("no log line saying why; log so far:\n%s", logs.String())
		}
		return nil
	})
	select {
	case r := <-res:
		t.Fatalf("Acquire returned before the node had a podCIDR: %v, %v", r.l, r.err)
	default:
	}

	start := time.Now()
	e.c.StartControllerManager(t)
	var r result
	select {
	case r = <-res:
	case <-time.After(30 * time.Second):
		t.Fatalf("Acquire still waiting 30 s after the controller-manager started; log:\n%s", logs.String())
	}
	t.Logf("Acquire returned %v after the controller-manager started", time.Since(start).Round(time.Millisecond))
	if r.err != nil {
		t.Fatal(r.err)
	}
	if want := e.c.WaitPodCIDR(t, "w1", time.Second); r.l.Subnet != want {
		t.Errorf("lease subnet %s, want the assigned podCIDR %s", r.l.Subnet, want)
	}
	if n := strings.Count(logs.String(), "has no podCIDR yet"); n != 1 {
		t.Errorf("%d waiting messages, want 1:\n%s", n, logs.String())
	}
	if got := e.node(t, "w1").Annotations[p+"kube-subnet-manager"]; got != "true" {
		t.Errorf("annotations not written after the wait: kube-subnet-manager=%q", got)
	}
}
