package kube

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/weftnet/weft/internal/backend/vxlan"
	"github.com/weftnet/weft/internal/kubecluster"
	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/internal/testbin"
	"github.com/weftnet/weft/test/kube/kubetest"
)

// The proof of issue 8 on the data path: a lab (internal/lab) whose hosts
// run the real weft agent with --kube-subnet-mgr against a real control
// plane in the lab's underlay namespace, as `weft lab demo --store kube`
// builds it:
//
//	<p>-ul: sw0 10.4.7.12/24, etcd + kube-apiserver :6443 + kube-controller-manager
//	        (--allocate-node-cidrs=true --cluster-cidr=172.7.0.0/16), deploy/kube-weft.yml applied
//	  <p>-h1 .21          <p>-h2 .22          <p>-h3 .23     Node h1..h3, agent with NODE_NAME=hN and
//	  h1p1 h1p2           h2p1 h2p2           h3p1 h3p2      a kubeconfig of ServiceAccount kube-weft/weft
//
// Both tests walk the same story: pods reach each other across every host
// pair; the agents act only as the ServiceAccount; each Node carries
// flannel's annotations and condition, written with flannel's exact
// request bodies (the apiserver's audit log has them); (vxlan) restarts
// and a reboot keep the VTEP MAC; garbage and flannel-written peers; a
// flannel node taken over by weft unchanged; a deleted Node's kernel
// entries gone within 2 s; an agent that starts before its podCIDR.

func TestLabKubeHostGW(t *testing.T) { testLabKube(t, "host-gw") }

func TestLabKubeVXLAN(t *testing.T) { testLabKube(t, "vxlan") }

const (
	labNetwork = "172.7.0.0/16"
	// flannelMAC is the VTEP MAC of the node whose annotations "flannel"
	// wrote; flannelPublicIP is an underlay address no host has.
	flannelMAC      = "0a:58:ac:07:fe:01"
	flannelPublicIP = "10.4.7.201"
	takeoverMAC     = "0a:58:ac:07:fe:02"
)

// kubeLab is a running Kubernetes lab and what the checks need of it.
type kubeLab struct {
	*lab.Lab
	backend string
	spec    lab.Spec
	admin   kubernetes.Interface
}

func startKubeLab(t *testing.T, backend string, hosts, pods int) *kubeLab {
	t.Helper()
	return startKubeLabFamily(t, backend, lab.FamilyIPv4, hosts, pods)
}

// startKubeLabFamily is startKubeLab with the lab's --ip-family: dual makes
// kube-controller-manager run with --cluster-cidr=<v4>,<v6>, ipv6 with the
// IPv6 network alone, on an IPv6-only underlay.
func startKubeLabFamily(t *testing.T, backend, family string, hosts, pods int) *kubeLab {
	t.Helper()
	nstest.RequireRoot(t)
	bins := kubetest.Binaries(t)
	root, err := testbin.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	spec := lab.Spec{
		Prefix:    nstest.UniqueName("k"),
		Hosts:     hosts,
		Pods:      pods,
		Backend:   backend,
		Network:   netip.MustParsePrefix(labNetwork),
		Store:     lab.StoreKube,
		StateRoot: t.TempDir(),
		IPFamily:  family,
	}
	opts := lab.Options{
		Spec:         spec,
		WeftBinary:   testbin.Weft(t),
		CNIBinDir:    testbin.CNIDir(t),
		KubeBinDir:   bins,
		KubeManifest: filepath.Join(root, "deploy", "kube-weft.yml"),
		ReadyTimeout: 60 * time.Second,
		Out:          testWriter{t},
	}
	topo, err := lab.Plan(spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, h := range topo.Hosts {
				b, _ := os.ReadFile(h.AgentLog)
				t.Logf("--- %s agent log ---\n%s", h.Name, lastLines(string(b), 40))
			}
			for _, p := range kubecluster.Programs {
				b, _ := os.ReadFile(filepath.Join(topo.Kube.Dir, p+".log"))
				t.Logf("--- %s log ---\n%s", p, lastLines(string(b), 20))
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := lab.Down(ctx, spec, nil); err != nil {
			t.Errorf("tear down the lab: %v", err)
		}
	})
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l, err := lab.Up(ctx, opts)
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	t.Logf("kube lab (%s, %d hosts × %d pods) up in %v", backend, hosts, pods, time.Since(start).Round(time.Millisecond))
	if l.Kube() == nil {
		t.Fatal("a --store kube lab has no control plane")
	}
	admin, err := l.Kube().Admin()
	if err != nil {
		t.Fatal(err)
	}
	return &kubeLab{Lab: l, backend: backend, spec: topo.Spec, admin: admin}
}

func testLabKube(t *testing.T, backend string) {
	k := startKubeLab(t, backend, 3, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	network := netip.MustParsePrefix(labNetwork)

	t.Run("pods reach each other across every host pair", func(t *testing.T) {
		k.checkAll(t, ctx)
		for _, h := range k.Topology().Hosts {
			sub, _ := k.Subnet(h.Name)
			n := k.node(t, h.Name)
			if n.Spec.PodCIDR != sub.String() || !network.Contains(sub.Addr()) {
				t.Errorf("%s leased %s; its Node's podCIDR is %q (assigned by kube-controller-manager), Network %s", h.Name, sub, n.Spec.PodCIDR, network)
			}
		}
	})

	t.Run("agents act as the manifest's ServiceAccount", func(t *testing.T) {
		k.checkServiceAccount(t, ctx)
	})

	t.Run("annotations, condition and request bodies are flannel's", func(t *testing.T) {
		for _, h := range k.Topology().Hosts {
			k.checkOwnNode(t, ctx, h.Name)
		}
	})

	if backend == "vxlan" {
		t.Run("restart and reboot keep the VTEP MAC", func(t *testing.T) { k.checkMACSurvives(t, ctx, "h1") })
	}

	t.Run("garbage peer skipped with one line, flannel-written peer used", func(t *testing.T) {
		k.checkForeignPeers(t, ctx)
	})

	t.Run("a flannel node is taken over without a change", func(t *testing.T) {
		k.checkTakeover(t, ctx, "h2")
	})

	// The last two reshape h3: its Node is deleted, then registered again
	// while kube-controller-manager is down.
	oldSub, _ := k.Subnet("h3")
	t.Run("deleting a Node removes its kernel entries within 2 s", func(t *testing.T) {
		k.checkNodeDeletion(t, ctx, "h3")
	})
	t.Run("an agent waits for its podCIDR and comes up without a restart", func(t *testing.T) {
		k.checkLatePodCIDR(t, ctx, "h3", oldSub)
	})
}

// checkAll runs the lab's checks and fails on any that did not pass.
func (k *kubeLab) checkAll(t *testing.T, ctx context.Context) {
	t.Helper()
	checks, err := k.Check(ctx)
	if err != nil {
		t.Fatalf("checks: %v", err)
	}
	pairs := map[[2]string]bool{}
	for _, c := range checks {
		if !c.OK() {
			t.Errorf("%s -> %s (%s): %s", c.From.Name, c.To.Name, c.Path, c.Problem())
		}
		if c.Kind == lab.PodToPod {
			pairs[[2]string{c.From.Name[:2], c.To.Name[:2]}] = true
			if want := map[string]string{"vxlan": "vxlan", "host-gw": "host-gw"}[k.backend]; c.Path != want {
				t.Errorf("%s -> %s went by %q, want %s", c.From.Name, c.To.Name, c.Path, want)
			}
		}
	}
	n := len(k.Topology().Hosts)
	if len(pairs) != n*(n-1) {
		t.Errorf("pod checks covered %d ordered host pairs, want %d", len(pairs), n*(n-1))
	}
	t.Logf("%s", lab.Result{Checks: checks}.Summary())
}

func (k *kubeLab) node(t *testing.T, name string) *corev1.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := k.admin.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get node %s: %v", name, err)
	}
	return n
}

// checkServiceAccount proves that the kubeconfig the agents run with holds
// a token of ServiceAccount kube-weft/weft, bound by the manifest's RBAC
// (it may patch nodes/status but not Nodes), and that every write the
// agents made came from that account.
func (k *kubeLab) checkServiceAccount(t *testing.T, ctx context.Context) {
	kc := k.Topology().Kube.Kubeconfig
	for _, h := range k.Topology().Hosts {
		args := k.Topology().AgentArgs(h)
		if !containsArg(args, "--kube-subnet-mgr") || !containsArg(args, "--kubeconfig-file="+kc) || anyPrefix(args, "--etcd-endpoints") {
			t.Errorf("%s agent runs with %q, want --kube-subnet-mgr --kubeconfig-file=%s and no etcd flags", h.Name, args, kc)
		}
		if env := k.Topology().AgentEnv(h); len(env) != 1 || env[0] != "NODE_NAME="+h.Name {
			t.Errorf("%s agent environment %q, want NODE_NAME=%s", h.Name, env, h.Name)
		}
	}
	cfg, err := clientcmd.LoadFromFile(kc)
	if err != nil {
		t.Fatalf("read the agents' kubeconfig: %v", err)
	}
	auth := cfg.AuthInfos[cfg.Contexts[cfg.CurrentContext].AuthInfo]
	if auth == nil || auth.Token == "" || auth.ClientCertificate != "" || auth.ClientKey != "" {
		t.Fatalf("the agents' kubeconfig authenticates with %+v, want a bearer token only", auth)
	}
	sa, err := kubernetes.NewForConfig(k.Kube().TokenConfig(auth.Token))
	if err != nil {
		t.Fatal(err)
	}
	r, err := sa.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("who is the agents' token: %v", err)
	}
	const want = "system:serviceaccount:" + lab.KubeNamespace + ":" + lab.KubeServiceAccount
	if got := r.Status.UserInfo.Username; got != want {
		t.Errorf("the agents' token is %q, want %q", got, want)
	}
	_, err = sa.CoreV1().Nodes().Patch(ctx, "h1", types.StrategicMergePatchType, []byte(`{"metadata":{"labels":{"weft.test/x":"1"}}}`), metav1.PatchOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("patching a Node itself with the agents' token: %v, want Forbidden (the manifest grants nodes/status only)", err)
	}
	evs := k.audit(t)
	if len(evs) == 0 {
		t.Fatal("the audit log has no nodes/status patches")
	}
	// Nobody else writes nodes/status here (the controller-manager sets
	// podCIDRs on the Node itself), so every logged patch is an agent's.
	for _, ev := range evs {
		if ev.User.Username != want {
			t.Errorf("nodes/%s/status patched by %s, want only %s", ev.ObjectRef.Name, ev.User.Username, want)
		}
	}
}

// conditionBody is flannel's condition patch with the two timestamps left
// open (flannel.md §5).
var conditionBody = regexp.MustCompile(`^\{"status":\{"conditions":\[\{"type":"NetworkUnavailable","status":"False",` +
	`"lastHeartbeatTime":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ","lastTransitionTime":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ",` +
	`"reason":"FlannelIsUp","message":"Flannel is running on this node"\}\]\}\}$`)

// annotationBody is the body flannel sends for a node (flannel.md §5).
func annotationBody(backendType, backendData, publicIP string) string {
	q := strconv.Quote(backendData)
	return `{"metadata":{"annotations":{"flannel.alpha.coreos.com/backend-data":` + q +
		`,"flannel.alpha.coreos.com/backend-type":"` + backendType +
		`","flannel.alpha.coreos.com/kube-subnet-manager":"true","flannel.alpha.coreos.com/public-ip":"` + publicIP + `"}}}`
}

// wantBackendData is what flannel publishes for host's backend.
func (k *kubeLab) wantBackendData(t *testing.T, host string) string {
	t.Helper()
	if k.backend != "vxlan" {
		return "null"
	}
	return `{"VNI":1,"VtepMAC":"` + k.deviceMAC(t, host) + `"}`
}

// checkOwnNode compares host's Node and what its agent sent with flannel's.
func (k *kubeLab) checkOwnNode(t *testing.T, ctx context.Context, host string) {
	h, _ := k.Topology().Host(host)
	pub := h.Addr.Addr().String()
	data := k.wantBackendData(t, host)
	want := map[string]string{
		p + "backend-data":        data,
		p + "backend-type":        k.backend,
		p + "kube-subnet-manager": "true",
		p + "public-ip":           pub,
	}
	n := k.node(t, host)
	for key, v := range want {
		if got, ok := n.Annotations[key]; !ok || got != v {
			t.Errorf("%s: annotation %s = %q (present %v), want %q", host, key, got, ok, v)
		}
	}
	for key, v := range n.Annotations {
		if _, ok := want[key]; !ok && strings.HasPrefix(key, p) {
			t.Errorf("%s: unexpected annotation %s=%q", host, key, v)
		}
	}

	// The condition is set once the data plane is up, after readiness.
	nstest.Eventually(t, 10*time.Second, func() error {
		for _, c := range k.node(t, host).Status.Conditions {
			if c.Type == corev1.NodeNetworkUnavailable {
				if c.Status != corev1.ConditionFalse || c.Reason != "FlannelIsUp" || c.Message != "Flannel is running on this node" {
					return fmt.Errorf("%s: condition %+v, want False/FlannelIsUp/\"Flannel is running on this node\"", host, c)
				}
				if !c.LastTransitionTime.Equal(&c.LastHeartbeatTime) || c.LastHeartbeatTime.IsZero() {
					return fmt.Errorf("%s: condition times heartbeat %v transition %v, want both set, equal", host, c.LastHeartbeatTime, c.LastTransitionTime)
				}
				return nil
			}
		}
		return fmt.Errorf("%s: no NetworkUnavailable condition", host)
	})

	// What flannel v0.28.9 sends at start: exactly two PATCHes of
	// nodes/<n>/status, the annotations then the condition.
	bodies := k.agentPatches(t, host)
	if len(bodies) != 2 {
		t.Fatalf("%s: %d nodes/status patches by the agent, want 2 (annotations, condition): %q", host, len(bodies), bodies)
	}
	if wantBody := annotationBody(k.backend, data, pub); bodies[0] != wantBody {
		t.Errorf("%s: annotation patch body\n got %s\nwant %s", host, bodies[0], wantBody)
	}
	if !conditionBody.MatchString(bodies[1]) {
		t.Errorf("%s: condition patch body %s, want flannel's (%s)", host, bodies[1], conditionBody)
	}
}

// audit returns the nodes/status patches the apiserver has logged.
func (k *kubeLab) audit(t *testing.T) []kubecluster.AuditEvent {
	t.Helper()
	evs, err := kubecluster.ReadAudit(k.Topology().Kube.AuditLog)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// agentPatches returns the bodies of the successful nodes/<host>/status
// patches sent with the agents' identity, oldest first.
func (k *kubeLab) agentPatches(t *testing.T, host string) []string {
	t.Helper()
	var out []string
	for _, ev := range k.audit(t) {
		if ev.Verb == "patch" && ev.ObjectRef.Name == host && ev.ObjectRef.Subresource == "status" &&
			ev.User.Username == "system:serviceaccount:"+lab.KubeNamespace+":"+lab.KubeServiceAccount && ev.ResponseStatus.Code == 200 {
			out = append(out, string(ev.RequestObject))
		}
	}
	return out
}

// annotationPatches counts the agent's patches of host that set annotations.
func (k *kubeLab) annotationPatches(t *testing.T, host string) int {
	n := 0
	for _, b := range k.agentPatches(t, host) {
		if strings.HasPrefix(b, `{"metadata":`) {
			n++
		}
	}
	return n
}

// handle opens a netlink handle in a lab namespace.
func (k *kubeLab) handle(t *testing.T, name string) *netlink.Handle {
	t.Helper()
	h, err := netns.Handle(k.NS(name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// deviceMAC is the MAC of flannel.1 on host.
func (k *kubeLab) deviceMAC(t *testing.T, host string) string {
	t.Helper()
	return k.deviceMACOf(t, host, vxlan.DeviceName(1))
}

// deviceMACOf is the MAC of device dev on host.
func (k *kubeLab) deviceMACOf(t *testing.T, host, dev string) string {
	t.Helper()
	link, err := k.handle(t, host).LinkByName(dev)
	if err != nil {
		t.Fatalf("%s: %s: %v", host, dev, err)
	}
	return link.Attrs().HardwareAddr.String()
}

// annotatedMAC is the VtepMAC host's Node publishes.
func (k *kubeLab) annotatedMAC(t *testing.T, host string) string {
	t.Helper()
	d := k.node(t, host).Annotations[p+"backend-data"]
	m := regexp.MustCompile(`"VtepMAC":"([0-9a-f:]+)"`).FindStringSubmatch(d)
	if m == nil {
		t.Fatalf("%s: backend-data %q has no VtepMAC", host, d)
	}
	return m[1]
}

// peerEntries describes what a host's kernel holds for one peer.
type peerEntries struct {
	route string // "via <gw> dev <dev>[ onlink]", or ""
	neigh string // lladdr of the neighbour entry for the subnet's .0 on flannel.1, or ""
	fdb   string // dst of the FDB entry for mac on flannel.1, or ""
}

func (e peerEntries) String() string {
	return fmt.Sprintf("route %q, neigh %q, fdb %q", e.route, e.neigh, e.fdb)
}

func (e peerEntries) none() bool { return e == peerEntries{} }

// entries reads what host's kernel has for a peer with subnet sub and,
// for vxlan, VTEP MAC mac.
func (k *kubeLab) entries(t *testing.T, host string, sub netip.Prefix, mac string) peerEntries {
	t.Helper()
	h := k.handle(t, host)
	var e peerEntries
	routes, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{
		Dst: &net.IPNet{IP: sub.Addr().AsSlice(), Mask: net.CIDRMask(sub.Bits(), 32)},
	}, netlink.RT_FILTER_DST)
	if err != nil {
		t.Fatalf("%s: list routes: %v", host, err)
	}
	for _, r := range routes {
		dev := ""
		if l, err := h.LinkByIndex(r.LinkIndex); err == nil {
			dev = l.Attrs().Name
		}
		e.route = fmt.Sprintf("via %s dev %s", r.Gw, dev)
		if r.Flags&int(netlink.FLAG_ONLINK) != 0 {
			e.route += " onlink"
		}
	}
	if k.backend != "vxlan" {
		return e
	}
	link, err := h.LinkByName(vxlan.DeviceName(1))
	if err != nil {
		t.Fatalf("%s: %v", host, err)
	}
	neighs, err := h.NeighList(link.Attrs().Index, netlink.FAMILY_V4)
	if err != nil {
		t.Fatalf("%s: list neighbours: %v", host, err)
	}
	for _, n := range neighs {
		if a, ok := netip.AddrFromSlice(n.IP); ok && a.Unmap() == sub.Addr() {
			e.neigh = n.HardwareAddr.String()
		}
	}
	fdb, err := h.NeighList(link.Attrs().Index, syscall.AF_BRIDGE)
	if err != nil {
		t.Fatalf("%s: list FDB: %v", host, err)
	}
	for _, n := range fdb {
		if n.HardwareAddr.String() == mac && n.IP != nil {
			e.fdb = n.IP.String()
		}
	}
	return e
}

// wantEntries is what weft programs for a peer: flannel's entries.
func (k *kubeLab) wantEntries(sub netip.Prefix, mac, public string) peerEntries {
	if k.backend != "vxlan" {
		return peerEntries{route: "via " + public + " dev eth0"}
	}
	return peerEntries{route: "via " + sub.Addr().String() + " dev " + vxlan.DeviceName(1) + " onlink", neigh: mac, fdb: public}
}

// checkMACSurvives restarts host's agent, then simulates a reboot (state
// file and device gone): the VTEP MAC stays, taken from the Node's
// annotation the second time, and no annotation is rewritten.
func (k *kubeLab) checkMACSurvives(t *testing.T, ctx context.Context, host string) {
	h, _ := k.Topology().Host(host)
	mac := k.annotatedMAC(t, host)
	if dev := k.deviceMAC(t, host); dev != mac {
		t.Fatalf("%s: flannel.1 has %s, the annotation says %s", host, dev, mac)
	}
	writes := k.annotationPatches(t, host)

	if err := k.StopAgent(host, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := k.StartAgent(ctx, host); err != nil {
		t.Fatal(err)
	}
	if got := k.annotatedMAC(t, host); got != mac {
		t.Errorf("after a restart the annotation says %s, was %s", got, mac)
	}
	if got := k.deviceMAC(t, host); got != mac {
		t.Errorf("after a restart flannel.1 has %s, was %s", got, mac)
	}

	// A reboot: /run and the device are gone; only the Node remembers.
	if err := k.StopAgent(host, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	macFile := filepath.Join(h.Dir, vxlan.MACFileName(1))
	if err := os.Remove(macFile); err != nil {
		t.Fatalf("remove the MAC file: %v", err)
	}
	hh := k.handle(t, host)
	link, err := hh.LinkByName(vxlan.DeviceName(1))
	if err != nil {
		t.Fatal(err)
	}
	if err := hh.LinkDel(link); err != nil {
		t.Fatal(err)
	}
	logBefore := len(k.AgentLog(host))
	if err := k.StartAgent(ctx, host); err != nil {
		t.Fatal(err)
	}
	if got := k.deviceMAC(t, host); got != mac {
		t.Errorf("after a reboot flannel.1 has %s, want %s from the Node's annotation", got, mac)
	}
	if b, err := os.ReadFile(macFile); err != nil || strings.TrimSpace(string(b)) != mac {
		t.Errorf("after a reboot the MAC file holds %q (%v), want %s", b, err, mac)
	}
	if log := k.AgentLog(host)[logBefore:]; !strings.Contains(log, "mac="+mac+" source=published") {
		t.Errorf("the agent did not say it took the MAC from what it published:\n%s", log)
	}
	if got := k.annotationPatches(t, host); got != writes {
		t.Errorf("%d annotation writes for %s after restart and reboot, want none (the MAC did not change)", got-writes, host)
	}
	k.checkAll(t, ctx)
}

// checkForeignPeers adds a Node with garbage annotations and one whose
// annotations flannel wrote (flannel.md §5, with no weft behind it):
// every agent warns once about the first, programs the second exactly as
// flannel would, and the lab keeps working.
func (k *kubeLab) checkForeignPeers(t *testing.T, ctx context.Context) {
	kc := k.Kube()
	if _, err := kc.CreateNode(ctx, "junk", map[string]string{
		p + "backend-data":        `{"VNI":1,"VtepMAC":`,
		p + "backend-type":        k.backend,
		p + "kube-subnet-manager": "true",
		p + "public-ip":           "not-an-address",
	}); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := kc.WaitPodCIDR(wctx, "junk"); err != nil {
		t.Fatal(err)
	}
	// Updates of the garbage node must not repeat the warning.
	for i := range 3 {
		patch := fmt.Sprintf(`{"metadata":{"labels":{"weft.test/poke":"%d"}}}`, i)
		if _, err := k.admin.CoreV1().Nodes().Patch(ctx, "junk", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	data := "null"
	if k.backend == "vxlan" {
		data = `{"VNI":1,"VtepMAC":"` + flannelMAC + `"}`
	}
	if _, err := kc.CreateNode(ctx, "flannel1", map[string]string{
		p + "backend-data":        data,
		p + "backend-type":        k.backend,
		p + "kube-subnet-manager": "true",
		p + "public-ip":           flannelPublicIP,
	}); err != nil {
		t.Fatal(err)
	}
	sub, err := kc.WaitPodCIDR(wctx, "flannel1")
	if err != nil {
		t.Fatal(err)
	}
	want := k.wantEntries(sub, flannelMAC, flannelPublicIP)
	hosts := k.Topology().Hosts
	start := time.Now()
	nstest.Eventually(t, 5*time.Second, func() error {
		for _, h := range hosts {
			if got := k.entries(t, h.Name, sub, flannelMAC); got != want {
				return fmt.Errorf("%s has for flannel1 (%s): %v, want %v", h.Name, sub, got, want)
			}
		}
		return nil
	})
	t.Logf("flannel-written node %s programmed on every host after %v: %v", sub, time.Since(start).Round(time.Millisecond), want)

	// flannel1 came after the pokes, so every agent has seen them.
	for _, h := range hosts {
		n := 0
		for _, line := range strings.Split(k.AgentLog(h.Name), "\n") {
			if strings.Contains(line, "level=WARN") && strings.Contains(line, "peer-node=junk") {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s agent logged %d warnings about the garbage node, want 1", h.Name, n)
		}
	}
	k.checkAll(t, ctx)

	if err := k.admin.CoreV1().Nodes().Delete(ctx, "flannel1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	nstest.Eventually(t, 2*time.Second, func() error {
		for _, h := range hosts {
			if got := k.entries(t, h.Name, sub, flannelMAC); !got.none() {
				return fmt.Errorf("%s still has for deleted flannel1 (%s): %v", h.Name, sub, got)
			}
		}
		return nil
	})
	t.Logf("deleted flannel1's entries gone from every host after %v", time.Since(start).Round(time.Millisecond))
	if err := k.admin.CoreV1().Nodes().Delete(ctx, "junk", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}

// checkTakeover turns host into a node flannel ran on: its Node carries
// the annotations flannel wrote (for vxlan with flannel's own VTEP MAC,
// which flannel.1 still has, and no weft state file). weft started there
// must adopt all of it: no annotation write, the same MAC, and peers
// reach it at once.
func (k *kubeLab) checkTakeover(t *testing.T, ctx context.Context, host string) {
	h, _ := k.Topology().Host(host)
	if err := k.StopAgent(host, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	data := "null"
	if k.backend == "vxlan" {
		data = `{"VNI":1,"VtepMAC":"` + takeoverMAC + `"}`
		if err := os.Remove(filepath.Join(h.Dir, vxlan.MACFileName(1))); err != nil {
			t.Fatal(err)
		}
		hh := k.handle(t, host)
		link, err := hh.LinkByName(vxlan.DeviceName(1))
		if err != nil {
			t.Fatal(err)
		}
		mac, _ := net.ParseMAC(takeoverMAC)
		if err := hh.LinkSetHardwareAddr(link, mac); err != nil {
			t.Fatal(err)
		}
	}
	flannels := map[string]any{
		p + "backend-data":        data,
		p + "backend-type":        k.backend,
		p + "kube-subnet-manager": "true",
		p + "public-ip":           h.Addr.Addr().String(),
	}
	patchAnnotations(t, k.admin, host, flannels)
	sub, _ := k.Subnet(host)
	if k.backend == "vxlan" {
		// Peers follow the Node: they now expect flannel's MAC.
		nstest.Eventually(t, 5*time.Second, func() error {
			for _, o := range k.Topology().Hosts {
				if o.Name == host {
					continue
				}
				if got := k.entries(t, o.Name, sub, takeoverMAC); got.fdb == "" {
					return fmt.Errorf("%s: %v", o.Name, got)
				}
			}
			return nil
		})
	}
	rv := k.node(t, host).ResourceVersion
	writes := k.annotationPatches(t, host)

	if err := k.StartAgent(ctx, host); err != nil {
		t.Fatal(err)
	}
	if got := k.annotationPatches(t, host); got != writes {
		t.Errorf("weft rewrote the annotations flannel left (%d patches)", got-writes)
	}
	n := k.node(t, host)
	for key, v := range flannels {
		if n.Annotations[key] != v {
			t.Errorf("%s = %q after the takeover, flannel wrote %q", key, n.Annotations[key], v)
		}
	}
	if k.backend == "vxlan" {
		if got := k.deviceMAC(t, host); got != takeoverMAC {
			t.Errorf("flannel.1 has %s after the takeover, want flannel's %s", got, takeoverMAC)
		}
	}
	t.Logf("node %s (resourceVersion %s before) taken over; annotations unchanged", host, rv)
	k.checkAll(t, ctx)
}

// checkNodeDeletion stops host's agent (a drained node) and deletes its
// Node: the other hosts drop its route (and vxlan neighbour and FDB
// entries) within 2 s.
func (k *kubeLab) checkNodeDeletion(t *testing.T, ctx context.Context, host string) {
	sub, _ := k.Subnet(host)
	h, _ := k.Topology().Host(host)
	mac := ""
	if k.backend == "vxlan" {
		mac = k.annotatedMAC(t, host)
	}
	want := k.wantEntries(sub, mac, h.Addr.Addr().String())
	var others []string
	for _, o := range k.Topology().Hosts {
		if o.Name != host {
			others = append(others, o.Name)
			if got := k.entries(t, o.Name, sub, mac); got != want {
				t.Fatalf("before the deletion %s has for %s: %v, want %v", o.Name, host, got, want)
			}
		}
	}
	if err := k.StopAgent(host, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// A stopped agent removes nothing; only the deletion may.
	for _, o := range others {
		if got := k.entries(t, o, sub, mac); got != want {
			t.Fatalf("with %s's agent stopped %s has for it: %v, want %v", host, o, got, want)
		}
	}
	if err := k.admin.CoreV1().Nodes().Delete(ctx, host, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	nstest.Eventually(t, 2*time.Second, func() error {
		for _, o := range others {
			if got := k.entries(t, o, sub, mac); !got.none() {
				return fmt.Errorf("%s still has for deleted %s (%s): %v", o, host, sub, got)
			}
		}
		return nil
	})
	t.Logf("Node %s deleted: its entries gone from %s after %v", host, strings.Join(others, " and "), time.Since(start).Round(time.Millisecond))
}

// checkLatePodCIDR registers host's Node again while
// kube-controller-manager is down and starts its agent: the agent says
// why it waits, and once the controller-manager runs it comes up (same
// process) and the others route to it.
func (k *kubeLab) checkLatePodCIDR(t *testing.T, ctx context.Context, host string, oldSub netip.Prefix) {
	kc := k.Kube()
	h, _ := k.Topology().Host(host)
	if err := kc.StopControllerManager(); err != nil {
		t.Fatal(err)
	}
	if _, err := kc.CreateNode(ctx, host, nil); err != nil {
		t.Fatal(err)
	}
	logBefore := len(k.AgentLog(host))
	started := make(chan error, 1)
	go func() { started <- k.StartAgent(ctx, host) }()

	const why = `has no podCIDR yet: kube-controller-manager must run with --allocate-node-cidrs=true --cluster-cidr=` + labNetwork + ` (kubeadm: --pod-network-cidr); waiting for it`
	nstest.Eventually(t, 20*time.Second, func() error {
		if !strings.Contains(k.AgentLog(host)[logBefore:], why) {
			return errors.New("the agent has not said why it waits")
		}
		return nil
	})
	pid := readPID(t, h.AgentPID)
	// Give it a second to do the wrong thing: exit, or come up without
	// a subnet.
	select {
	case err := <-started:
		t.Fatalf("the agent became ready (or failed: %v) without a podCIDR", err)
	case <-time.After(time.Second):
	}
	if code, _, err := k.AgentGet(host, "/readyz"); err != nil || code == 200 {
		t.Errorf("/readyz of the waiting agent: %d, %v; want not ready", code, err)
	}

	t0 := time.Now()
	if err := kc.StartControllerManager(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("the agent did not come up once the podCIDR arrived: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the agent is not ready 60 s after the controller-manager started")
	}
	t.Logf("agent ready %v after kube-controller-manager started", time.Since(t0).Round(time.Millisecond))
	if got := readPID(t, h.AgentPID); got != pid {
		t.Errorf("agent pid %d, was %d while waiting: it restarted", got, pid)
	}
	log := k.AgentLog(host)[logBefore:]
	if n := strings.Count(log, why); n != 1 {
		t.Errorf("the agent said %d times why it waits, want once:\n%s", n, log)
	}
	if !strings.Contains(log, "node has its podCIDR now") {
		t.Errorf("the agent did not say the podCIDR arrived:\n%s", log)
	}
	sub, _ := k.Subnet(host)
	if n := k.node(t, host); n.Spec.PodCIDR != sub.String() {
		t.Fatalf("%s leased %s, its Node's podCIDR is %q", host, sub, n.Spec.PodCIDR)
	}
	mac := ""
	if k.backend == "vxlan" {
		mac = k.annotatedMAC(t, host)
	}
	want := k.wantEntries(sub, mac, h.Addr.Addr().String())
	nstest.Eventually(t, 5*time.Second, func() error {
		for _, o := range k.Topology().Hosts {
			if o.Name == host {
				continue
			}
			if got := k.entries(t, o.Name, sub, mac); got != want {
				return fmt.Errorf("%s has for %s (%s): %v, want %v", o.Name, host, sub, got, want)
			}
		}
		return nil
	})
	// The pods on host were addressed from its old podCIDR; they keep
	// working when the controller-manager hands the same one out again.
	if sub == oldSub {
		k.checkAll(t, ctx)
	} else {
		t.Logf("%s got %s instead of its old %s; its pods are stale, connectivity not rechecked", host, sub, oldSub)
	}
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.Fields(string(b))[0])
	if err != nil {
		t.Fatalf("pid file %s: %v", path, err)
	}
	return pid
}

func containsArg(args []string, a string) bool {
	for _, x := range args {
		if x == a {
			return true
		}
	}
	return false
}

func anyPrefix(args []string, prefix string) bool {
	for _, x := range args {
		if strings.HasPrefix(x, prefix) {
			return true
		}
	}
	return false
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// testWriter sends the lab's progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// TestLabDemoKubeCLI runs `weft lab demo --store kube` as a user would,
// on vxlan with two hosts, and then without the control-plane binaries,
// where it must fail before building anything and say how to build them.
func TestLabDemoKubeCLI(t *testing.T) {
	weft := testbin.Weft(t)
	state := t.TempDir()

	t.Run("binaries missing", func(t *testing.T) {
		empty := t.TempDir()
		prefix := nstest.UniqueName("d")
		cmd := exec.Command(weft, "lab", "demo", "--store", "kube", "--prefix", prefix, "--state-dir", state,
			"--cni-bin-dir", testbin.CNIDir(t), "--kube-bin-dir", empty)
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("demo without kube-apiserver succeeded:\n%s", out)
		}
		if !strings.Contains(string(out), "`make kube-tools`") || !strings.Contains(string(out), "kube-apiserver") {
			t.Errorf("the error does not say what is missing and how to build it:\n%s", out)
		}
		if names, _ := netns.List(); anyPrefix(names, prefix+"-") {
			t.Errorf("namespaces were created before the check: %v", names)
		}
	})

	t.Run("vxlan", func(t *testing.T) {
		nstest.RequireRoot(t)
		bins := kubetest.Binaries(t)
		prefix := nstest.UniqueName("d")
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			// The demo tears down itself; this is for when it could not.
			if err := lab.Down(ctx, lab.Spec{Prefix: prefix, StateRoot: state}, nil); err != nil {
				t.Errorf("tear down: %v", err)
			}
		})
		start := time.Now()
		cmd := exec.Command(weft, "lab", "demo", "--store", "kube", "--backend", "vxlan", "--hosts", "2", "--pods", "1",
			"--prefix", prefix, "--state-dir", state, "--cni-bin-dir", testbin.CNIDir(t), "--kube-bin-dir", bins)
		out, err := cmd.CombinedOutput()
		t.Logf("weft lab demo --store kube in %v:\n%s", time.Since(start).Round(time.Millisecond), out)
		if err != nil {
			t.Fatalf("demo: %v", err)
		}
		for _, want := range []string{
			"Kubernetes API store (--kube-subnet-mgr)",
			"kube-apiserver ready at https://10.4.7.12:6443",
			"agents run as ServiceAccount kube-weft/weft",
			"2/2 pod pairs ok, source IPs preserved",
			"pod pairs by path: vxlan 2",
			"lab torn down",
		} {
			if !strings.Contains(string(out), want) {
				t.Errorf("demo output lacks %q", want)
			}
		}
	})
}
