package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/weftnet/weft/internal/netconf"
	"github.com/weftnet/weft/test/kube/kubetest"
)

// TestManifest applies deploy/kube-weft.yml to a real apiserver (setup
// fails on any object the server rejects), checks that the objects as
// stored are the drop-in for kube-flannel.yml that issue 8 asks for, and
// that the ServiceAccount gets exactly flannel's permissions on Nodes.
func TestManifest(t *testing.T) {
	e := setup(t, kubetest.Options{})
	t.Run("objects", func(t *testing.T) { checkObjects(t, e.objs) })
	t.Run("rbac", func(t *testing.T) { checkRBAC(t, e) })
}

func decode[T any](t *testing.T, objs []*unstructured.Unstructured, kind string) *T {
	t.Helper()
	var found []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("the manifest has %d objects of kind %s, want 1", len(found), kind)
	}
	var v T
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(found[0].Object, &v); err != nil {
		t.Fatalf("decode %s: %v", kind, err)
	}
	return &v
}

func checkObjects(t *testing.T, objs []*unstructured.Unstructured) {
	var kinds []string
	for _, o := range objs {
		kinds = append(kinds, o.GetKind())
	}
	slices.Sort(kinds)
	if want := []string{"ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet", "Namespace", "ServiceAccount"}; !slices.Equal(kinds, want) {
		t.Errorf("kinds = %v, want %v", kinds, want)
	}

	ns := decode[corev1.Namespace](t, objs, "Namespace")
	if ns.Name != namespace || ns.Labels["pod-security.kubernetes.io/enforce"] != "privileged" {
		t.Errorf("namespace %s labels %v, want %s with pod-security enforce=privileged", ns.Name, ns.Labels, namespace)
	}

	role := decode[rbacv1.ClusterRole](t, objs, "ClusterRole")
	var rules []string
	for _, r := range role.Rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					rules = append(rules, fmt.Sprintf("%q/%s:%s", g, res, v))
				}
			}
		}
	}
	slices.Sort(rules)
	want := []string{`""/nodes/status:patch`, `""/nodes:get`, `""/nodes:list`, `""/nodes:watch`, `""/pods:get`}
	slices.Sort(want)
	if !slices.Equal(rules, want) {
		t.Errorf("ClusterRole rules = %v, want exactly %v", rules, want)
	}
	crb := decode[rbacv1.ClusterRoleBinding](t, objs, "ClusterRoleBinding")
	if crb.RoleRef.Name != role.Name || len(crb.Subjects) != 1 || crb.Subjects[0].Kind != "ServiceAccount" ||
		crb.Subjects[0].Name != serviceAccount || crb.Subjects[0].Namespace != namespace {
		t.Errorf("ClusterRoleBinding = %+v %+v, want %s bound to ServiceAccount %s/%s", crb.RoleRef, crb.Subjects, role.Name, namespace, serviceAccount)
	}

	cm := decode[corev1.ConfigMap](t, objs, "ConfigMap")
	if _, err := netconf.Parse([]byte(cm.Data["net-conf.json"])); err != nil {
		t.Errorf("net-conf.json: %v", err)
	}
	var conflist struct {
		Name       string
		CNIVersion string
		Plugins    []struct {
			Type         string
			Delegate     map[string]any
			Capabilities map[string]bool
		}
	}
	if err := json.Unmarshal([]byte(cm.Data["cni-conf.json"]), &conflist); err != nil {
		t.Errorf("cni-conf.json: %v", err)
	} else if conflist.Name == "" || conflist.CNIVersion == "" || len(conflist.Plugins) != 2 ||
		conflist.Plugins[0].Type != "flannel" || conflist.Plugins[1].Type != "portmap" ||
		!conflist.Plugins[1].Capabilities["portMappings"] {
		t.Errorf("cni-conf.json = %+v, want a named conflist of flannel then portmap with portMappings", conflist)
	}

	ds := decode[appsv1.DaemonSet](t, objs, "DaemonSet")
	spec := ds.Spec.Template.Spec
	if !spec.HostNetwork || spec.PriorityClassName != "system-node-critical" || spec.ServiceAccountName != serviceAccount {
		t.Errorf("DaemonSet: hostNetwork %v, priorityClassName %q, serviceAccountName %q", spec.HostNetwork, spec.PriorityClassName, spec.ServiceAccountName)
	}
	if !slices.ContainsFunc(spec.Tolerations, func(tl corev1.Toleration) bool {
		return tl.Key == "" && tl.Effect == "" && tl.Operator == corev1.TolerationOpExists
	}) {
		t.Errorf("tolerations %+v do not tolerate every taint", spec.Tolerations)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(spec.Containers))
	}
	c := spec.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.Privileged == nil || *sc.Privileged || sc.Capabilities == nil ||
		!slices.Equal(sc.Capabilities.Add, []corev1.Capability{"NET_ADMIN", "NET_RAW"}) {
		t.Errorf("securityContext = %+v, want not privileged with NET_ADMIN and NET_RAW", sc)
	}
	args := strings.Join(append(append([]string{}, c.Command...), c.Args...), " ")
	for _, a := range []string{"--kube-subnet-mgr", "--healthz-port=8081"} {
		if !strings.Contains(args, a) {
			t.Errorf("command %q lacks %s", args, a)
		}
	}
	if len(c.Ports) != 1 || c.Ports[0].Name != "healthz" || c.Ports[0].ContainerPort != 8081 {
		t.Errorf("ports = %+v, want healthz 8081", c.Ports)
	}
	for _, pr := range []struct {
		name string
		p    *corev1.Probe
		path string
	}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
		if pr.p == nil || pr.p.HTTPGet == nil || pr.p.HTTPGet.Path != pr.path || pr.p.HTTPGet.Port.String() != "healthz" {
			t.Errorf("%s probe = %+v, want GET %s on port healthz", pr.name, pr.p, pr.path)
		}
	}
	// The kubelet probes a hostNetwork pod at its pod IP; the agent's own
	// default, 127.0.0.1, would fail every probe.
	var envs []string
	healthzIP := ""
	for _, ev := range c.Env {
		envs = append(envs, ev.Name)
		if ev.Name == "FLANNELD_HEALTHZ_IP" && ev.ValueFrom != nil && ev.ValueFrom.FieldRef != nil {
			healthzIP = ev.ValueFrom.FieldRef.FieldPath
		}
	}
	if healthzIP != "status.podIP" && !strings.Contains(args, "--healthz-ip=") {
		t.Errorf("the health listener stays on 127.0.0.1, which the probes cannot reach: want FLANNELD_HEALTHZ_IP from status.podIP (env %v, command %q)", envs, args)
	}
	for _, n := range []string{"NODE_NAME", "POD_NAME", "POD_NAMESPACE"} {
		if !slices.Contains(envs, n) {
			t.Errorf("env lacks %s (has %v)", n, envs)
		}
	}

	hostPaths := map[string]string{}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
			if v.HostPath.Path == "/run/xtables.lock" && (v.HostPath.Type == nil || *v.HostPath.Type != corev1.HostPathFileOrCreate) {
				t.Errorf("/run/xtables.lock volume type %v, want FileOrCreate", v.HostPath.Type)
			}
		}
	}
	var paths []string
	for _, p := range hostPaths {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	if want := []string{"/etc/cni/net.d", "/opt/cni/bin", "/run/flannel", "/run/xtables.lock"}; !slices.Equal(paths, want) {
		t.Errorf("hostPath volumes = %v, want %v", paths, want)
	}
	mounted := func(c corev1.Container, path string) bool {
		return slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return strings.TrimRight(m.MountPath, "/") == path })
	}
	for _, m := range []string{"/run/flannel", "/etc/kube-flannel", "/run/xtables.lock", "/etc/cni/net.d"} {
		if !mounted(c, m) {
			t.Errorf("the agent container does not mount %s", m)
		}
	}
	// The agent only reads the CNI config directory (--cni-conf-dir),
	// for another network's config sorting before weft's.
	if i := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == "/etc/cni/net.d" }); i >= 0 && !c.VolumeMounts[i].ReadOnly {
		t.Errorf("the agent container mounts /etc/cni/net.d writable; it only reads it")
	}
	// `kubectl exec ds/kube-weft-ds -- weft status` in this container
	// reads the Kubernetes API without flags.
	if !slices.ContainsFunc(c.Env, func(ev corev1.EnvVar) bool { return ev.Name == "FLANNELD_KUBE_SUBNET_MGR" && ev.Value == "true" }) {
		t.Errorf("env lacks FLANNELD_KUBE_SUBNET_MGR=true, which `weft status` in the container needs (has %v)", envs)
	}
	if len(spec.InitContainers) != 2 {
		t.Fatalf("%d init containers, want 2 (CNI plugin, CNI config)", len(spec.InitContainers))
	}
	plugin, conf := spec.InitContainers[0], spec.InitContainers[1]
	if !mounted(plugin, "/opt/cni/bin") || !strings.Contains(strings.Join(plugin.Args, " "), "/opt/cni/bin/flannel") {
		t.Errorf("init container %s does not install /opt/cni/bin/flannel: %v", plugin.Name, plugin.Args)
	}
	if !mounted(conf, "/etc/cni/net.d") || !strings.Contains(strings.Join(conf.Args, " "), "/etc/cni/net.d/10-flannel.conflist") {
		t.Errorf("init container %s does not install /etc/cni/net.d/10-flannel.conflist: %v", conf.Name, conf.Args)
	}
}

// checkRBAC: the ServiceAccount can do what the store needs and nothing
// more on Nodes: patch nodes/status, but not patch, create or delete
// nodes.
func checkRBAC(t *testing.T, e *env) {
	e.c.CreateNode(t, "r1", nil)
	sa, err := kubernetes.NewForConfig(e.c.TokenConfig(e.saToken))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	body := []byte(`{"metadata":{"annotations":{"weft.test/rbac":"x"}}}`)
	if _, err := sa.CoreV1().Nodes().Patch(ctx, "r1", types.StrategicMergePatchType, body, metav1.PatchOptions{}, "status"); err != nil {
		t.Errorf("PATCH nodes/r1/status as the ServiceAccount: %v", err)
	}
	if _, err := sa.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("LIST nodes as the ServiceAccount: %v", err)
	}
	w, err := sa.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Errorf("WATCH nodes as the ServiceAccount: %v", err)
	} else {
		w.Stop()
	}
	forbidden := func(what string, err error) {
		t.Helper()
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s as the ServiceAccount: err = %v, want Forbidden", what, err)
		}
	}
	_, err = sa.CoreV1().Nodes().Patch(ctx, "r1", types.StrategicMergePatchType, body, metav1.PatchOptions{})
	forbidden("PATCH nodes/r1", err)
	_, err = sa.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "r2"}}, metav1.CreateOptions{})
	forbidden("CREATE node", err)
	forbidden("DELETE node", sa.CoreV1().Nodes().Delete(ctx, "r1", metav1.DeleteOptions{}))
	_, err = sa.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
	forbidden("LIST pods", err)
	_, err = sa.CoreV1().ConfigMaps(namespace).Get(ctx, "kube-weft-cfg", metav1.GetOptions{})
	forbidden("GET configmap", err)
}
