package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/weftnet/weft/internal/kubecluster"
	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/internal/testbin"
	"github.com/weftnet/weft/test/kube/kubetest"
)

const (
	clusterCIDR = "10.244.0.0/16" // deploy/kube-weft.yml's Network
	underlayIP  = "10.9.0.1"
	echoPort    = 8080
	nodeCount   = 3
	podCount    = 6
	// addLatencyPods is how many echo pods the ADD latency is measured
	// over (issue 13's closing note asks for 30).
	addLatencyPods = 30
)

// clusterControllers are the kube-controller-manager controllers a
// cluster with kubelets needs here: podCIDRs (weft's prerequisite),
// DaemonSets, Deployments, garbage collection (deleting a Deployment
// deletes its pods), ServiceAccounts and kube-root-ca.crt (every pod's
// projected token volume), the node lifecycle (taints follow the
// conditions weft and kubelet set) and EndpointSlices (Services).
var clusterControllers = []string{
	"node-ipam-controller", "daemonset-controller", "deployment-controller", "replicaset-controller",
	"garbage-collector-controller", "serviceaccount-controller", "root-ca-certificate-publisher-controller",
	"node-lifecycle-controller", "endpointslice-controller",
}

func TestClusterVXLAN(t *testing.T)  { testCluster(t, "vxlan") }
func TestClusterHostGW(t *testing.T) { testCluster(t, "host-gw") }

// env is a variable make test-cluster sets, or a skip (a fatal error in
// make test-cluster itself, which sets WEFT_CLUSTER_TEST=1).
func env(t *testing.T, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		t.Fatalf("%s is not set: run this test through `make test-cluster`", name)
	}
	return v
}

// testCluster is issue 13's proof on real parts: three nodes, each a
// network namespace plus a mount namespace running containerd 2.x with
// Debian's runc, kubelet and kube-proxy; a control plane with
// kube-scheduler in the underlay; deploy/kube-weft.yml applied as `make
// image` rendered it; the DaemonSet's pods started by the kubelets
// through CRI; then test pods through CRI and the CNI plugin weft's init
// container installed, talking to each other.
//
//	<p>ul: br0 10.9.0.1/24, etcd, kube-apiserver, kube-controller-manager
//	       (--allocate-node-cidrs), kube-scheduler
//	  n1 .11         n2 .12         n3 .13      each: containerd, kubelet, kube-proxy,
//	                                            weft DaemonSet pod, 2 test pods
func testCluster(t *testing.T, backend string) {
	if os.Getenv("WEFT_CLUSTER_TEST") != "1" {
		t.Skip("runs real kubelets and containerd: `sudo make test-cluster` (WEFT_CLUSTER_TEST=1)")
	}
	nstest.RequireRoot(t)
	nstest.RequireTools(t, "nsenter", "unshare", "iptables", "runc")
	runc, _ := exec.LookPath("runc")
	b := bins{
		kube:       kubetest.Binaries(t),
		containerd: env(t, "WEFT_CONTAINERD_BIN_DIR"),
		cni:        testbin.CNIDir(t),
		runc:       runc,
	}
	for _, p := range []string{filepath.Join(b.kube, "kubelet"), filepath.Join(b.kube, "kube-proxy"), filepath.Join(b.kube, "kube-scheduler"),
		filepath.Join(b.containerd, "containerd"), filepath.Join(b.containerd, "ctr"), filepath.Join(b.containerd, "containerd-shim-runc-v2"), b.runc} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%v (make test-cluster builds the node programs: test/kube/build-tools.sh node, test/kube/build-nodetools.sh; .ci/run installs runc)", err)
		}
	}
	weftImage := env(t, "WEFT_IMAGE_OCI")
	testpodOCI := env(t, "WEFT_TESTPOD_OCI")
	manifest := env(t, "WEFT_KUBE_MANIFEST")

	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	t0 := time.Now()

	users := []kubecluster.User{{Name: "system:kube-scheduler"}, {Name: "system:kube-proxy"}}
	for i := 1; i <= nodeCount+1; i++ { // n4 joins late, in the host-gw run
		users = append(users, kubecluster.User{Name: fmt.Sprintf("system:node:n%d", i), Groups: []string{"system:nodes"}})
	}

	// The underlay: a bridge in a namespace of its own, the nodes on it.
	ul := nstest.NewNS(t, "cu")
	nstest.Exec(t, ul, "ip", "link", "add", "br0", "type", "bridge")
	nstest.Exec(t, ul, "ip", "addr", "add", underlayIP+"/24", "dev", "br0")
	nstest.Exec(t, ul, "ip", "link", "set", "br0", "up")
	var nodes []*node
	for i := 1; i <= nodeCount; i++ {
		nodes = append(nodes, addNode(t, ul, i))
	}

	cp := kubetest.StartWith(t, kubetest.Options{
		NetNS: ul, Addr: netip.MustParseAddr(underlayIP), ClusterCIDR: netip.MustParsePrefix(clusterCIDR),
		Controllers: clusterControllers,
		Users:       users,
	})
	admin := cp.Admin(t)
	// Each program acts as itself, with the permissions the apiserver's
	// default RBAC and the Node authorizer give it, as in kubeadm.
	kubeconfig := func(user string) string {
		tok, ok := cp.UserToken(user)
		if !ok {
			t.Fatalf("no token for %s", user)
		}
		return cp.Kubeconfig(t, tok)
	}
	schedKC := kubeconfig("system:kube-scheduler")
	proxyKC := kubeconfig("system:kube-proxy")
	publishAPIServer(t, ctx, admin, cp.URL())
	sched := start(t, "kube-scheduler", filepath.Join(cp.Dir(), "kube-scheduler.log"), nil,
		"ip", "netns", "exec", ul, filepath.Join(b.kube, "kube-scheduler"),
		"--kubeconfig="+schedKC, "--authentication-kubeconfig="+schedKC, "--authorization-kubeconfig="+schedKC,
		"--leader-elect=false", "--bind-address="+underlayIP, "--secure-port=0")
	t.Cleanup(func() { sched.stop(10 * time.Second) })
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- kube-scheduler ---\n%s", logTail(sched.log, 20))
			for _, n := range nodes {
				t.Logf("=== node %s ===\n%s", n.name, n.logs(40))
			}
		}
	})

	// deploy/kube-weft.yml as make image rendered it; host-gw is the one
	// change, in the ConfigMap, before any node exists.
	cp.ApplyManifest(t, manifest)
	ds, err := admin.AppsV1().DaemonSets("kube-weft").Get(ctx, "kube-weft-ds", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	appliedImage := ds.Spec.Template.Spec.Containers[0].Image
	if backend != "vxlan" {
		setBackend(t, ctx, admin, backend)
	}
	t.Logf("control plane up, manifest applied after %v", time.Since(t0).Round(time.Millisecond))

	for _, n := range nodes {
		n.setUp(t)
		n.startRuntime(t, b, weftImage, testpodOCI)
	}
	tNodes := time.Now()
	for _, n := range nodes {
		n.startKubelet(t, b, kubeconfig("system:node:"+n.name))
		n.startKubeProxy(t, b, proxyKC, clusterCIDR)
	}

	t.Run("nodes Ready with weft's DaemonSet pod on each", func(t *testing.T) {
		nstest.Eventually(t, 4*time.Minute, func() error {
			for _, n := range nodes {
				for _, p := range n.procs {
					if !p.running() {
						t.Fatalf("%s exited:\n%s", p.name, logTail(p.log, 40))
					}
				}
			}
			return nodesReady(ctx, admin, nodes)
		})
		t.Logf("apply → all %d nodes Ready and NetworkUnavailable=False: %v after the kubelets started", nodeCount, time.Since(tNodes).Round(time.Millisecond))
		for _, n := range nodes {
			for _, f := range []string{"opt/cni/bin/flannel", "etc/cni/net.d/10-flannel.conflist"} {
				if st, err := os.Stat(filepath.Join(n.dir, "root", f)); err != nil || st.Size() == 0 {
					t.Errorf("%s: the init containers did not install /%s in the node's own file system: %v", n.name, f, err)
				}
			}
		}
	})
	if t.Failed() {
		return
	}

	t.Run("the agent runs with the manifest's capabilities", func(t *testing.T) {
		for _, n := range nodes {
			checkAgentProcess(t, n)
		}
	})

	var pods []echoPod
	t.Run("pods reach each other by pod IP and see each other's IP", func(t *testing.T) {
		pods = runEchoPods(t, ctx, admin, nodes)
		// The addresses came from host-local on each node, through CRI:
		// the store the DEL check below must find empty holds them now.
		per := map[string]int{}
		for _, p := range pods {
			per[p.node]++
		}
		for _, n := range nodes {
			if got := hostLocalLeases(t, n); len(got) != per[n.name] {
				t.Errorf("%s runs %d echo pods; host-local's store holds %v", n.name, per[n.name], got)
			}
		}
		checkPairs(t, ctx, nodes, pods)
	})
	if t.Failed() {
		return
	}

	t.Run("a ClusterIP Service through kube-proxy reaches every endpoint", func(t *testing.T) {
		checkService(t, ctx, admin, nodes, pods)
	})
	if t.Failed() {
		return
	}

	t.Run("rolling update of the DaemonSet under ping -i 0.01", func(t *testing.T) {
		checkRollingUpdate(t, ctx, admin, b, nodes, pods)
	})

	t.Run("CNI ADD latency over 30 pods", func(t *testing.T) {
		scaleEcho(t, ctx, admin, addLatencyPods)
		var lat []time.Duration
		for _, n := range nodes {
			lat = append(lat, cniAddLatencies(t, n)...)
		}
		if len(lat) < addLatencyPods {
			t.Fatalf("containerd logged %d CNI ADDs (begin cni setup → cni result); want at least %d", len(lat), addLatencyPods)
		}
		slices.Sort(lat)
		t.Logf("CNI ADD through CRI (containerd's begin cni setup → cni result), %d pods on %d nodes: p50 %v, p99 %v, max %v",
			len(lat), len(nodes), lat[len(lat)/2], lat[(len(lat)*99+99)/100-1], lat[len(lat)-1])
	})

	// Diagnosis on the running cluster: once is enough, in the run that
	// is the manifest as shipped.
	if backend == "vxlan" {
		t.Run("weft status --check in the agent's pod: OK, then names a route that takes a peer's traffic", func(t *testing.T) {
			checkStatusInPod(t, ctx, admin, b, nodes[0], nodes[2])
		})
		t.Run("another network's conflist before weft's: the agent names it", func(t *testing.T) {
			checkForeignConflist(t, nodes[1])
		})
	}

	t.Run("deleting pods releases their addresses", func(t *testing.T) {
		if err := admin.AppsV1().Deployments("default").Delete(ctx, "echo", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		nstest.Eventually(t, 2*time.Minute, func() error {
			pl, err := admin.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=echo"})
			if err != nil {
				return err
			}
			if len(pl.Items) > 0 {
				return fmt.Errorf("%d echo pods left", len(pl.Items))
			}
			for _, n := range nodes {
				if left := hostLocalLeases(t, n); len(left) > 0 {
					return fmt.Errorf("%s: host-local still holds %v", n.name, left)
				}
			}
			return nil
		})
	})

	// Not the backend's business: once is enough.
	if backend == "host-gw" {
		t.Run("an image no node has ends in an event naming it; the other agents keep running", func(t *testing.T) {
			checkMissingImage(t, ctx, admin, nodes)
		})
		t.Run("a node without a podCIDR: the agent says why, then comes up without a restart", func(t *testing.T) {
			late := addNode(t, ul, nodeCount+1)
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("=== node %s ===\n%s", late.name, late.logs(40))
				}
			})
			checkLatePodCIDR(t, ctx, cp, admin, late, func(n *node) {
				n.setUp(t)
				n.startRuntime(t, b, weftImage, testpodOCI)
				// The DaemonSet runs the rolling update's tag by now.
				ds, err := admin.AppsV1().DaemonSets("kube-weft").Get(ctx, "kube-weft-ds", metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if cur := ds.Spec.Template.Spec.Containers[0].Image; cur != appliedImage {
					if _, err := n.run(filepath.Join(b.containerd, "ctr"), "-n", "k8s.io", "images", "tag", appliedImage, cur); err != nil {
						t.Fatal(err)
					}
				}
				n.startKubelet(t, b, kubeconfig("system:node:"+n.name))
				n.startKubeProxy(t, b, proxyKC, clusterCIDR)
			}, append(slices.Clone(nodes), late))
		})
	}
}

// publishAPIServer points the "kubernetes" Service at the apiserver, as
// its endpoint reconciler would (kubecluster runs it with
// --endpoint-reconciler-type=none): in-cluster clients, weft's agent
// among them, dial 10.96.0.1:443 and kube-proxy takes them there.
func publishAPIServer(t *testing.T, ctx context.Context, cs kubernetes.Interface, apiURL string) {
	t.Helper()
	u, err := url.Parse(apiURL)
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(u.Port())
	var svc *corev1.Service
	nstest.Eventually(t, 30*time.Second, func() error {
		svc, err = cs.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
		return err
	})
	name, proto, p32 := "https", corev1.ProtocolTCP, int32(port)
	ready := true
	_, err = cs.DiscoveryV1().EndpointSlices("default").Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name:   "kubernetes",
			Labels: map[string]string{discoveryv1.LabelServiceName: "kubernetes", discoveryv1.LabelManagedBy: "weft-test-cluster"},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{u.Hostname()}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Protocol: &proto, Port: &p32}},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("publish the apiserver behind Service %s: %v", svc.Spec.ClusterIP, err)
	}
	if tp := svc.Spec.Ports[0].TargetPort.IntValue(); tp != port {
		t.Logf("Service kubernetes targets port %d; the EndpointSlice says %d", tp, port)
	}
}

// setBackend rewrites net-conf.json's backend type in the applied
// ConfigMap.
func setBackend(t *testing.T, ctx context.Context, cs kubernetes.Interface, backend string) {
	t.Helper()
	cm, err := cs.CoreV1().ConfigMaps("kube-weft").Get(ctx, "kube-weft-cfg", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var conf map[string]any
	if err := json.Unmarshal([]byte(cm.Data["net-conf.json"]), &conf); err != nil {
		t.Fatalf("net-conf.json in the manifest: %v", err)
	}
	conf["Backend"] = map[string]any{"Type": backend}
	out, _ := json.MarshalIndent(conf, "", "  ")
	cm.Data["net-conf.json"] = string(out)
	if _, err := cs.CoreV1().ConfigMaps("kube-weft").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// nodesReady says why not every node is Ready with NetworkUnavailable
// False and a Ready weft pod, or nil.
func nodesReady(ctx context.Context, cs kubernetes.Interface, nodes []*node) error {
	nl, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	if len(nl.Items) != len(nodes) {
		return fmt.Errorf("%d of %d nodes registered", len(nl.Items), len(nodes))
	}
	for _, n := range nl.Items {
		cond := map[corev1.NodeConditionType]corev1.ConditionStatus{}
		for _, c := range n.Status.Conditions {
			cond[c.Type] = c.Status
		}
		if cond[corev1.NodeReady] != corev1.ConditionTrue {
			return fmt.Errorf("node %s not Ready: %v", n.Name, n.Status.Conditions)
		}
		if cond[corev1.NodeNetworkUnavailable] != corev1.ConditionFalse {
			return fmt.Errorf("node %s: NetworkUnavailable is %q", n.Name, cond[corev1.NodeNetworkUnavailable])
		}
	}
	pl, err := cs.CoreV1().Pods("kube-weft").List(ctx, metav1.ListOptions{LabelSelector: "app=weft"})
	if err != nil {
		return err
	}
	ready := map[string]bool{}
	for _, p := range pl.Items {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				ready[p.Spec.NodeName] = true
			}
		}
	}
	for _, n := range nodes {
		if !ready[n.name] {
			return fmt.Errorf("weft's pod on %s is not Ready (%d weft pods)", n.name, len(pl.Items))
		}
	}
	return nil
}

// echoPod is a running test pod.
type echoPod struct {
	name, node string
	ip         netip.Addr
}

// runEchoPods creates the echo Deployment, spread evenly over the nodes,
// and waits until every replica runs with an IP.
func runEchoPods(t *testing.T, ctx context.Context, cs kubernetes.Interface, nodes []*node) []echoPod {
	t.Helper()
	replicas := int32(podCount)
	labels := map[string]string{"app": "echo"}
	zero := int64(0)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: &zero,
					TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{
						MaxSkew: 1, TopologyKey: "kubernetes.io/hostname",
						WhenUnsatisfiable: corev1.DoNotSchedule,
						LabelSelector:     &metav1.LabelSelector{MatchLabels: labels},
					}},
					Containers: []corev1.Container{{
						Name: "echo", Image: testpodImage, ImagePullPolicy: corev1.PullNever,
						Command: []string{"/testpod", "echo", "-port", strconv.Itoa(echoPort)},
						Ports:   []corev1.ContainerPort{{ContainerPort: echoPort}},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(echoPort)}},
							PeriodSeconds: 1,
						},
					}},
				},
			},
		},
	}
	tStart := time.Now()
	if _, err := cs.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var pods []echoPod
	nstest.Eventually(t, 3*time.Minute, func() error {
		pl, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=echo"})
		if err != nil {
			return err
		}
		pods = pods[:0]
		for _, p := range pl.Items {
			if p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
				return fmt.Errorf("pod %s on %q: %s %s", p.Name, p.Spec.NodeName, p.Status.Phase, podWhy(p))
			}
			ip, err := netip.ParseAddr(p.Status.PodIP)
			if err != nil {
				return err
			}
			pods = append(pods, echoPod{name: p.Name, node: p.Spec.NodeName, ip: ip})
		}
		if len(pods) != podCount {
			return fmt.Errorf("%d of %d echo pods", len(pods), podCount)
		}
		return nil
	})
	per := map[string]int{}
	for _, p := range pods {
		per[p.node]++
	}
	t.Logf("%d echo pods Running after %v: %v", len(pods), time.Since(tStart).Round(time.Millisecond), per)
	for _, n := range nodes {
		if per[n.name] == 0 {
			t.Errorf("no echo pod on %s: %v", n.name, per)
		}
	}
	return pods
}

// podWhy is the waiting reason of a pod's containers, if any.
func podWhy(p corev1.Pod) string {
	var why []string
	for _, c := range p.Status.ContainerStatuses {
		if c.State.Waiting != nil {
			why = append(why, c.State.Waiting.Reason+": "+c.State.Waiting.Message)
		}
	}
	for _, c := range p.Status.Conditions {
		if c.Status != corev1.ConditionTrue && c.Message != "" {
			why = append(why, c.Message)
		}
	}
	return strings.Join(why, "; ")
}

// checkPairs has every pod dial every other pod's echo port and ping it
// (through the dialling pod's /dial and /ping, reached from its node's
// network namespace), and checks that the server saw the client pod's
// own address: pod-to-pod TCP and ICMP across and within nodes, with no
// NAT on the way.
func checkPairs(t *testing.T, ctx context.Context, nodes []*node, pods []echoPod) {
	t.Helper()
	for _, a := range pods {
		for _, b := range pods {
			if a.name == b.name {
				continue
			}
			seen, server, err := dialVia(ctx, nodes, a, netip.AddrPortFrom(b.ip, echoPort))
			if err != nil {
				t.Errorf("TCP %s (%s, %s) → %s (%s, %s): %v", a.name, a.node, a.ip, b.name, b.node, b.ip, err)
				continue
			}
			if seen != a.ip.String() || server != b.name {
				t.Errorf("TCP %s (%s) → %s: answered by %s, which saw %s; want %s seeing the client pod's address", a.name, a.ip, b.name, server, seen, b.name)
			}
			if _, err := askPod(ctx, nodes, a, "/ping?addr="+b.ip.String()); err != nil {
				t.Errorf("ICMP %s (%s, %s) → %s (%s, %s): %v", a.name, a.node, a.ip, b.name, b.node, b.ip, err)
			}
		}
	}
}

// dialVia has pod a dial dst's echo port and returns the client address
// the server saw and the server's name, retrying for up to 30 s (a pod's
// routes may trail its Running status by a moment).
func dialVia(ctx context.Context, nodes []*node, a echoPod, dst netip.AddrPort) (seen, server string, err error) {
	var line string
	line, err = askPod(ctx, nodes, a, "/dial?addr="+dst.String())
	if err != nil {
		return "", "", err
	}
	seen, server, _ = strings.Cut(line, " ")
	return seen, server, nil
}

// askPod GETs path from pod a's HTTP port, from a's node's network
// namespace, retrying for up to 30 s, and returns the body.
func askPod(ctx context.Context, nodes []*node, a echoPod, path string) (string, error) {
	ns := ""
	for _, n := range nodes {
		if n.name == a.node {
			ns = n.ns
		}
	}
	var out string
	var err error
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err = getFrom(ctx, ns, netip.AddrPortFrom(a.ip, echoPort+1), path)
		if err == nil || time.Now().After(deadline) {
			return out, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// getFrom GETs path from addr, dialling from network namespace ns.
func getFrom(ctx context.Context, ns string, addr netip.AddrPort, path string) (string, error) {
	var conn net.Conn
	err := netns.Do(ns, func() error {
		var err error
		d := net.Dialer{Timeout: 3 * time.Second}
		conn, err = d.DialContext(ctx, "tcp", addr.String())
		return err
	})
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(8 * time.Second))
	fmt.Fprintf(conn, "GET %s HTTP/1.0\r\nHost: x\r\n\r\n", path)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return strings.TrimSpace(string(body)), nil
}

// checkService puts a ClusterIP Service in front of the echo pods and has
// every pod dial it until each endpoint has answered: kube-proxy's
// iptables rules next to weft's, the client pod's own address seen by
// every other endpoint.
func checkService(t *testing.T, ctx context.Context, cs kubernetes.Interface, nodes []*node, pods []echoPod) {
	t.Helper()
	svc, err := cs.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "echo"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "echo"},
			Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(echoPort)}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	vip := netip.AddrPortFrom(netip.MustParseAddr(svc.Spec.ClusterIP), 80)
	for _, a := range pods {
		answered := map[string]bool{}
		deadline := time.Now().Add(60 * time.Second)
		for len(answered) < len(pods) && time.Now().Before(deadline) {
			seen, server, err := dialVia(ctx, nodes, a, vip)
			if err != nil {
				t.Fatalf("%s → Service %s: %v", a.name, vip, err)
			}
			// A pod that reaches itself through the Service (hairpin) is
			// masqueraded by kube-proxy to its bridge's address, the
			// first of its node's podCIDR (/24 here); anyone else sees
			// the client pod's own address.
			want := a.ip.String()
			if server == a.name {
				want = netip.PrefixFrom(a.ip, 24).Masked().Addr().Next().String()
			}
			if seen != want {
				t.Errorf("%s → Service %s: %s saw %s, want %s", a.name, vip, server, seen, want)
			}
			answered[server] = true
		}
		if len(answered) < len(pods) {
			t.Errorf("%s → Service %s: only %d of %d endpoints answered in 60 s: %v", a.name, vip, len(answered), len(pods), answered)
		}
	}
}

// hostLocalLeases lists the addresses host-local still holds on node n:
// the files in its store that are addresses (not its lock or the
// last-reserved marker).
func hostLocalLeases(t *testing.T, n *node) []string {
	t.Helper()
	var out []string
	root := filepath.Join(n.dir, "root/var/lib/cni/networks")
	nets, _ := os.ReadDir(root)
	for _, nw := range nets {
		ents, _ := os.ReadDir(filepath.Join(root, nw.Name()))
		for _, e := range ents {
			if _, err := netip.ParseAddr(e.Name()); err == nil {
				out = append(out, nw.Name()+"/"+e.Name())
			}
		}
	}
	return out
}

// Capability bits (linux/capability.h).
const (
	capNetAdmin = 12
	capNetRaw   = 13
	capSysAdmin = 21
)

// checkAgentProcess finds the weft agent among the processes of node n's
// pods and checks what the manifest gives it: NET_ADMIN and NET_RAW on
// top of the runtime's defaults, not privileged (no CAP_SYS_ADMIN). It
// logs the agent's resident memory.
func checkAgentProcess(t *testing.T, n *node) {
	t.Helper()
	pid := 0
	for _, p := range n.leftovers() {
		// The name it was run as: in the image weft-agent is a link to weft.
		if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p)); err == nil && strings.TrimSpace(string(comm)) == "weft-agent" {
			pid = p
		}
	}
	if pid == 0 {
		t.Errorf("%s: no weft-agent process in the node's pods", n.name)
		return
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	var capEff uint64
	rss := ""
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		switch k {
		case "CapEff":
			capEff, _ = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		case "VmRSS":
			rss = strings.TrimSpace(v)
		}
	}
	if capEff&(1<<capNetAdmin) == 0 || capEff&(1<<capNetRaw) == 0 {
		t.Errorf("%s: weft-agent (pid %d) lacks NET_ADMIN or NET_RAW: CapEff %016x", n.name, pid, capEff)
	}
	if capEff&(1<<capSysAdmin) != 0 {
		t.Errorf("%s: weft-agent (pid %d) has CAP_SYS_ADMIN (CapEff %016x): the manifest does not run it privileged", n.name, pid, capEff)
	}
	t.Logf("%s: weft-agent pid %d, CapEff %016x, VmRSS %s", n.name, pid, capEff, rss)
}

// checkRollingUpdate moves weft's DaemonSet to a second tag of its image
// (imported on every node under that tag too: `ctr images tag`) while a
// pod on one node pings a pod on another every 10 ms, and reports the
// packets lost and how long each node took to run a Ready new agent.
func checkRollingUpdate(t *testing.T, ctx context.Context, cs kubernetes.Interface, b bins, nodes []*node, pods []echoPod) {
	t.Helper()
	var src, dst echoPod
	for _, p := range pods {
		if p.node == nodes[0].name {
			src = p
		}
		if p.node == nodes[1].name {
			dst = p
		}
	}
	ds, err := cs.AppsV1().DaemonSets("kube-weft").Get(ctx, "kube-weft-ds", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	oldImage := ds.Spec.Template.Spec.Containers[0].Image
	newImage := oldImage + "-rollout"
	for _, n := range nodes {
		if _, err := n.run(filepath.Join(b.containerd, "ctr"), "-n", "k8s.io", "images", "tag", oldImage, newImage); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := askPod(ctx, nodes, src, "/pinger/start?interval=10ms&addr="+dst.ip.String()); err != nil {
		t.Fatalf("start pinging %s → %s: %v", src.name, dst.name, err)
	}
	start := time.Now()
	spec := &ds.Spec.Template.Spec
	for i := range spec.InitContainers {
		spec.InitContainers[i].Image = newImage
	}
	for i := range spec.Containers {
		spec.Containers[i].Image = newImage
	}
	if _, err := cs.AppsV1().DaemonSets("kube-weft").Update(ctx, ds, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	done := map[string]time.Duration{}
	nstest.Eventually(t, 4*time.Minute, func() error {
		pl, err := cs.CoreV1().Pods("kube-weft").List(ctx, metav1.ListOptions{LabelSelector: "app=weft"})
		if err != nil {
			return err
		}
		for _, p := range pl.Items {
			if p.Spec.Containers[0].Image != newImage || p.DeletionTimestamp != nil {
				continue
			}
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					if _, ok := done[p.Spec.NodeName]; !ok {
						done[p.Spec.NodeName] = time.Since(start)
					}
				}
			}
		}
		if len(done) < len(nodes) {
			return fmt.Errorf("new agents Ready on %v of %d nodes", done, len(nodes))
		}
		return nil
	})
	total := time.Since(start)
	out, err := askPod(ctx, nodes, src, "/pinger/stop")
	if err != nil {
		t.Fatalf("stop pinging: %v", err)
	}
	var sent, received int
	if _, err := fmt.Sscan(out, &sent, &received); err != nil {
		t.Fatalf("pinger said %q: %v", out, err)
	}
	t.Logf("rolling update %s → %s: all %d nodes in %v (new agent Ready after %v); ping %s (%s) → %s (%s) every 10 ms: %d sent, %d lost",
		oldImage, newImage, len(nodes), total.Round(time.Millisecond), done, src.name, src.node, dst.name, dst.node, sent, sent-received)
	if sent == 0 {
		t.Errorf("the pinger sent nothing")
	}
	// Issue 13's goal is no loss at all; the data path is the kernel's
	// and an agent restart must not touch it.
	if sent-received > 0 {
		t.Errorf("%d of %d pings lost across the rolling update", sent-received, sent)
	}
}

// scaleEcho scales the echo Deployment to n replicas and waits until all
// of them run with an IP.
func scaleEcho(t *testing.T, ctx context.Context, cs kubernetes.Interface, n int) {
	t.Helper()
	sc, err := cs.AppsV1().Deployments("default").GetScale(ctx, "echo", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sc.Spec.Replicas = int32(n)
	if _, err := cs.AppsV1().Deployments("default").UpdateScale(ctx, "echo", sc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	nstest.Eventually(t, 3*time.Minute, func() error {
		pl, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=echo"})
		if err != nil {
			return err
		}
		running := 0
		for _, p := range pl.Items {
			if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" {
				running++
			}
		}
		if running != n {
			return fmt.Errorf("%d of %d echo pods running", running, n)
		}
		return nil
	})
}

// cniAddLatencies reads node n's containerd log for the time between
// "begin cni setup" and "cni result" of each sandbox: the CNI ADD of the
// conflist weft installed (weft's plugin, bridge, host-local, portmap),
// as the runtime called it.
func cniAddLatencies(t *testing.T, n *node) []time.Duration {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	// The node's directory goes with the test; WEFT_CLUSTER_LOGDIR keeps
	// the log for a look at where an ADD spent its time.
	if d := os.Getenv("WEFT_CLUSTER_LOGDIR"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Log(err)
		} else if err := os.WriteFile(filepath.Join(d, n.name+"-containerd.log"), b, 0o644); err != nil {
			t.Log(err)
		}
	}
	field := func(line, key string) string {
		_, v, ok := strings.Cut(line, " "+key+"=")
		if !ok {
			_, v, ok = strings.Cut(line, key+"=")
			if !ok {
				return ""
			}
		}
		v = strings.TrimPrefix(v, "\"")
		end := strings.IndexAny(v, "\" ")
		if end >= 0 {
			v = v[:end]
		}
		return v
	}
	begin := map[string]time.Time{}
	var out []time.Duration
	for _, line := range strings.Split(string(b), "\n") {
		isBegin := strings.Contains(line, `msg="begin cni setup"`)
		isResult := strings.Contains(line, `msg="cni result:`)
		if !isBegin && !isResult {
			continue
		}
		ts, err := time.Parse(time.RFC3339Nano, field(line, "time"))
		id := field(line, "podsandboxid")
		if err != nil || id == "" {
			continue
		}
		if isBegin {
			begin[id] = ts
		} else if b, ok := begin[id]; ok {
			out = append(out, ts.Sub(b))
		}
	}
	return out
}

// checkMissingImage updates weft's DaemonSet to a tag no node has (and
// none can pull: the nodes have no way out of this machine). The one
// node the rollout takes first (maxUnavailable: 1) must end with an Event
// that names the image; the other nodes keep their Ready agents.
func checkMissingImage(t *testing.T, ctx context.Context, cs kubernetes.Interface, nodes []*node) {
	t.Helper()
	ds, err := cs.AppsV1().DaemonSets("kube-weft").Get(ctx, "kube-weft-ds", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	oldImage := ds.Spec.Template.Spec.Containers[0].Image
	missing := oldImage + "-missing"
	spec := &ds.Spec.Template.Spec
	for i := range spec.InitContainers {
		spec.InitContainers[i].Image = missing
	}
	for i := range spec.Containers {
		spec.Containers[i].Image = missing
	}
	if _, err := cs.AppsV1().DaemonSets("kube-weft").Update(ctx, ds, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	var event string
	nstest.Eventually(t, 3*time.Minute, func() error {
		el, err := cs.CoreV1().Events("kube-weft").List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, e := range el.Items {
			if e.Type == corev1.EventTypeWarning && strings.Contains(e.Message, missing) {
				event = fmt.Sprintf("%s %s/%s on %s: %s", e.Reason, e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Source.Host, e.Message)
				return nil
			}
		}
		return fmt.Errorf("no warning event names %s yet (%d events)", missing, len(el.Items))
	})
	t.Logf("image missing: %s", event)
	pl, err := cs.CoreV1().Pods("kube-weft").List(ctx, metav1.ListOptions{LabelSelector: "app=weft"})
	if err != nil {
		t.Fatal(err)
	}
	ready := 0
	for _, p := range pl.Items {
		if p.Spec.Containers[0].Image == missing {
			continue
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				ready++
			}
		}
	}
	if ready != len(nodes)-1 {
		t.Errorf("%d agents of the previous image Ready while one node waits for %s; want %d", ready, missing, len(nodes)-1)
	}
	// Roll back (kubectl rollout undo, in effect): the node that waited
	// runs an agent again.
	ds, err = cs.AppsV1().DaemonSets("kube-weft").Get(ctx, "kube-weft-ds", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	spec = &ds.Spec.Template.Spec
	for i := range spec.InitContainers {
		spec.InitContainers[i].Image = oldImage
	}
	for i := range spec.Containers {
		spec.Containers[i].Image = oldImage
	}
	if _, err := cs.AppsV1().DaemonSets("kube-weft").Update(ctx, ds, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	nstest.Eventually(t, 2*time.Minute, func() error { return nodesReady(ctx, cs, nodes) })
}

// addNode puts node i's network namespace on the underlay bridge:
// 10.9.0.(10+i), default route via the underlay.
func addNode(t *testing.T, ul string, i int) *node {
	t.Helper()
	ns := nstest.NewNS(t, "cn")
	n := &node{
		name: fmt.Sprintf("n%d", i), ns: ns, ip: fmt.Sprintf("10.9.0.%d", 10+i), resolver: underlayIP,
		dir: t.TempDir(), cgroupRoot: "/" + ns,
	}
	veth := fmt.Sprintf("v%d", i)
	nstest.Exec(t, ul, "ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
	nstest.Exec(t, ul, "ip", "link", "set", veth, "master", "br0", "up")
	nstest.Exec(t, ns, "ip", "addr", "add", n.ip+"/24", "dev", "eth0")
	nstest.Exec(t, ns, "ip", "link", "set", "eth0", "up")
	nstest.Exec(t, ns, "ip", "link", "set", "lo", "up")
	nstest.Exec(t, ns, "ip", "route", "add", "default", "via", underlayIP)
	return n
}

// checkLatePodCIDR starts node late while kube-controller-manager runs
// everything but node-ipam-controller: weft's pod there must say, in its
// log, that the node has no podCIDR and what to run; once the controller
// is back, the node turns Ready with NetworkUnavailable=False and the
// agent has not restarted.
func checkLatePodCIDR(t *testing.T, ctx context.Context, cp *kubetest.Cluster, cs kubernetes.Interface, late *node, boot func(*node), all []*node) {
	t.Helper()
	var noIPAM []string
	for _, c := range clusterControllers {
		if c != "node-ipam-controller" {
			noIPAM = append(noIPAM, c)
		}
	}
	if err := cp.StopControllerManager(); err != nil {
		t.Fatal(err)
	}
	if err := cp.StartControllerManagerWith(noIPAM); err != nil {
		t.Fatal(err)
	}
	boot(late)
	// The agent's log quotes the node's name (escaped in slog's text
	// form); the rest is the cause and the fix.
	line := agentLogLine(t, late, 3*time.Minute, "has no podCIDR yet: kube-controller-manager must run with --allocate-node-cidrs=true")
	t.Logf("%s without a podCIDR, the agent logs: %s", late.name, line)
	n, err := cs.CoreV1().Nodes().Get(ctx, late.name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Spec.PodCIDR != "" {
		t.Fatalf("%s has podCIDR %s with node-ipam-controller stopped", late.name, n.Spec.PodCIDR)
	}
	if err := cp.StopControllerManager(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cp.StartControllerManagerWith(clusterControllers); err != nil {
		t.Fatal(err)
	}
	nstest.Eventually(t, 2*time.Minute, func() error { return nodesReady(ctx, cs, all) })
	t.Logf("%s Ready with NetworkUnavailable=False %v after node-ipam-controller came back", late.name, time.Since(start).Round(time.Millisecond))
	pl, err := cs.CoreV1().Pods("kube-weft").List(ctx, metav1.ListOptions{LabelSelector: "app=weft", FieldSelector: "spec.nodeName=" + late.name})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pl.Items {
		for _, c := range p.Status.ContainerStatuses {
			if c.RestartCount != 0 {
				t.Errorf("weft's container on %s restarted %d times; it should wait for its podCIDR", late.name, c.RestartCount)
			}
		}
	}
}
