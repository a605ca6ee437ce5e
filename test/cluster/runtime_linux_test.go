package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/nstest"
)

// testpodImage is what tools/image's testpod command names its image: the
// pod sandbox (pause) image of every node and the test workload.
const testpodImage = "weft.invalid/testpod:1"

// containerdConfig is a node's containerd: the default paths (private to
// the node through its mount namespace), CRI with Debian's runc under
// cgroupfs (cgroup v1 here), the CNI paths the DaemonSet installs into,
// and the sandbox image pinned to the imported testpod image, so that no
// node ever pulls anything. restrict_oom_score_adj: this machine gives
// root no CAP_SYS_RESOURCE, so no process may lower its oom_score_adj
// below 0, and runc fails every container whose spec asks for less
// ("failed to update /proc/self/oom_score_adj: Permission denied", which
// CRI reports only as "can't get final child's PID from pipe: EOF");
// with it containerd raises such requests to its own score.
const containerdConfig = `version = 3
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "` + testpodImage + `"
[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/opt/cni/bin"]
    conf_dir = "/etc/cni/net.d"
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "%s"
        SystemdCgroup = false
`

// kubeletConfig: what this kernel and this machine need of kubelet
// (docs/kubernetes.md, "The real-node test"):
//   - failCgroupV1: false — the machine is cgroup v1 (hybrid), which
//     kubelet 1.35+ refuses by default;
//   - cgroupDriver cgroupfs and a cgroupRoot per node, so three kubelets
//     on one kernel keep their pods' cgroups apart;
//   - failSwapOn: false, in case the machine has swap;
//   - image garbage collection and disk eviction off: the images are
//     imported and can never be pulled again;
//   - no authentication towards kubelet (nothing but the test calls it).
const kubeletConfig = `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: %s
failSwapOn: false
address: %s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
imageServiceEndpoint: unix:///run/containerd/containerd.sock
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
imageMinimumGCAge: 24h
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "0%%"
  nodefs.inodesFree: "0%%"
  imagefs.available: "0%%"
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
staticPodPath: ""
resolvConf: /etc/resolv.conf
registerNode: true
serializeImagePulls: false
localStorageCapacityIsolation: false
protectKernelDefaults: false
nodeStatusUpdateFrequency: 2s
syncFrequency: 10s
`

// kubeProxyConfig: iptables mode in the node's network namespace. The
// conntrack settings are host-wide (nf_conntrack_max) or not this test's
// business: zero leaves them as they are.
const kubeProxyConfig = `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: %s
hostnameOverride: %s
mode: iptables
clusterCIDR: %s
bindAddress: %s
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`

// bins are the programs a node runs.
type bins struct {
	kube       string // kubelet, kube-proxy, kube-scheduler (and the control plane)
	containerd string // containerd, containerd-shim-runc-v2, ctr
	cni        string // bridge, host-local, loopback, portmap
	runc       string
}

// startRuntime starts the node's containerd, waits for its socket and
// imports the images.
func (n *node) startRuntime(t *testing.T, b bins, images ...string) {
	t.Helper()
	// What a node's package manager would have put there; flannel itself
	// is the DaemonSet's to install.
	for _, p := range []string{"bridge", "host-local", "loopback", "portmap"} {
		data, err := os.ReadFile(filepath.Join(b.cni, p))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(n.dir, "root/opt/cni/bin", p), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(n.dir, "containerd.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(containerdConfig, b.runc)), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=" + b.containerd + ":" + os.Getenv("PATH")}
	// Debug: CRI logs "begin cni setup" and "cni result" for every
	// sandbox, which is how the test measures CNI ADD (cniAddLatencies).
	p := n.startProc(t, "containerd", env, filepath.Join(b.containerd, "containerd"), "--config", cfg, "--log-level", "debug")
	ctr := filepath.Join(b.containerd, "ctr")
	nstest.Eventually(t, 30*time.Second, func() error {
		if !p.running() {
			t.Fatalf("%s: containerd exited:\n%s", n.name, logTail(p.log, 30))
		}
		_, err := n.run(ctr, "version")
		return err
	})
	for _, img := range images {
		if _, err := n.run(ctr, "-n", "k8s.io", "images", "import", "--local", "--platform", "linux/amd64", img); err != nil {
			t.Fatalf("import %s: %v", img, err)
		}
	}
}

// startKubelet writes the node's kubelet configuration and starts it.
func (n *node) startKubelet(t *testing.T, b bins, kubeconfig string) *proc {
	t.Helper()
	cfg := filepath.Join(n.dir, "kubelet.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(kubeletConfig, n.cgroupRoot, n.ip)), 0o644); err != nil {
		t.Fatal(err)
	}
	return n.startProc(t, "kubelet", nil, filepath.Join(b.kube, "kubelet"),
		"--config="+cfg, "--kubeconfig="+kubeconfig,
		"--hostname-override="+n.name, "--node-ip="+n.ip, "--v=2")
}

// startKubeProxy starts kube-proxy in the node's namespaces.
func (n *node) startKubeProxy(t *testing.T, b bins, kubeconfig, clusterCIDR string) *proc {
	t.Helper()
	cfg := filepath.Join(n.dir, "kube-proxy.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(kubeProxyConfig, kubeconfig, n.name, clusterCIDR, n.ip)), 0o644); err != nil {
		t.Fatal(err)
	}
	return n.startProc(t, "kube-proxy", nil, filepath.Join(b.kube, "kube-proxy"), "--config="+cfg, "--v=1")
}

// logs is every log of the node's programs, tailed, for a failure.
func (n *node) logs(lines int) string {
	var sb strings.Builder
	for _, p := range n.procs {
		fmt.Fprintf(&sb, "--- %s ---\n%s\n", p.name, logTail(p.log, lines))
	}
	return sb.String()
}
