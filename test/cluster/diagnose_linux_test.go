package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/weftnet/weft/internal/nstest"
)

// agentLogLine waits for a line of node n's weft pod logs (any pod of the
// DaemonSet there, as the kubelet keeps them) holding every one of want,
// and returns it.
func agentLogLine(t *testing.T, n *node, timeout time.Duration, want ...string) string {
	t.Helper()
	var line string
	nstest.Eventually(t, timeout, func() error {
		logs, _ := filepath.Glob(filepath.Join(n.dir, "root/var/log/pods/kube-weft_*/weft/*.log"))
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			for _, ln := range strings.Split(string(b), "\n") {
				all := true
				for _, w := range want {
					all = all && strings.Contains(ln, w)
				}
				if all {
					line = ln
					return nil
				}
			}
		}
		return fmt.Errorf("no line with %q in the weft pod's log on %s (%d logs)", want, n.name, len(logs))
	})
	return line
}

// checkForeignConflist leaves another network's conflist in n's
// /etc/cni/net.d, named to sort before 10-flannel.conflist, as a plugin
// that was uninstalled carelessly does: containerd would give every new
// pod that network, silently. The agent must log an error naming the file
// and what to do, and say when it is gone.
func checkForeignConflist(t *testing.T, n *node) {
	t.Helper()
	foreign := filepath.Join(n.dir, "root/etc/cni/net.d/05-other.conflist")
	conf := `{"cniVersion":"0.3.1","name":"other","plugins":[{"type":"bridge","bridge":"other0","ipam":{"type":"host-local","subnet":"10.88.0.0/16"}}]}`
	if err := os.WriteFile(foreign, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	removed := false
	t.Cleanup(func() {
		if !removed {
			_ = os.Remove(foreign)
		}
	})
	start := time.Now()
	// The agent reads the directory every 30 s.
	line := agentLogLine(t, n, 2*time.Minute, "level=ERROR", "/etc/cni/net.d/05-other.conflist", "sorts before weft's 10-flannel.conflist", "remove it")
	t.Logf("%s: %v after 05-other.conflist appeared, the agent logs: %s", n.name, time.Since(start).Round(time.Second), line)
	if err := os.Remove(foreign); err != nil {
		t.Fatal(err)
	}
	removed = true
	agentLogLine(t, n, 2*time.Minute, "10-flannel.conflist", "is the one the runtime uses again")
}

// weftStatusInPod runs `weft status --check` in the agent's container on
// n, as `kubectl -n kube-weft exec ds/kube-weft-ds -- weft status --check`
// would: with the container's environment (NODE_NAME,
// FLANNELD_KUBE_SUBNET_MGR, the in-cluster API address), its service
// account token and its capabilities. The exec goes through the node's
// containerd (ctr tasks exec); the test builds no kubectl.
func weftStatusInPod(t *testing.T, ctx context.Context, cs kubernetes.Interface, b bins, n *node) (string, int) {
	t.Helper()
	pl, err := cs.CoreV1().Pods("kube-weft").List(ctx, metav1.ListOptions{LabelSelector: "app=weft", FieldSelector: "spec.nodeName=" + n.name})
	if err != nil {
		t.Fatal(err)
	}
	id := ""
	for _, p := range pl.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		for _, c := range p.Status.ContainerStatuses {
			if c.Name == "weft" && c.Ready {
				id = strings.TrimPrefix(c.ContainerID, "containerd://")
			}
		}
	}
	if id == "" {
		t.Fatalf("%s: no ready weft container", n.name)
	}
	a := n.nsenter(filepath.Join(b.containerd, "ctr"), "-n", "k8s.io", "tasks", "exec",
		"--exec-id", fmt.Sprintf("status-%d", time.Now().UnixNano()), id, "/usr/local/bin/weft", "status", "--check")
	out, err := exec.CommandContext(ctx, a[0], a[1:]...).CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	default:
		t.Fatalf("%s: weft status --check in the agent's container: %v: %s", n.name, err, out)
		return "", 0
	}
}

// checkStatusInPod: on the healthy cluster `weft status --check` in the
// agent's container finds nothing wrong (exit 0, or 3 for warnings about
// kernel settings only); with a more specific route on n sending half of
// a peer's pod subnet elsewhere (someone's leftover route, which the
// agent does not own and leaves alone), it exits 1 and names that peer
// and the route that takes its traffic.
func checkStatusInPod(t *testing.T, ctx context.Context, cs kubernetes.Interface, b bins, n, peer *node) {
	t.Helper()
	// The check runs right after the burst of 30 pods; a probe that
	// misses its second while the nodes still start sandboxes is not the
	// fabric's fault, so the healthy verdict gets a deadline, and every
	// verdict on the way is kept in the log.
	nstest.Eventually(t, 30*time.Second, func() error {
		out, code := weftStatusInPod(t, ctx, cs, b, n)
		t.Logf("%s: weft status --check in the agent's container (exit %d):\n%s", n.name, code, out)
		if code != 0 && code != 3 {
			return fmt.Errorf("%s: weft status --check on the healthy cluster exited %d, want 0 (or 3, kernel-setting warnings only)", n.name, code)
		}
		return nil
	})
	pn, err := cs.CoreV1().Nodes().Get(ctx, peer.name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	podCIDR, err := netip.ParsePrefix(pn.Spec.PodCIDR)
	if err != nil {
		t.Fatalf("%s's podCIDR %q: %v", peer.name, pn.Spec.PodCIDR, err)
	}
	half := netip.PrefixFrom(podCIDR.Addr(), podCIDR.Bits()+1).String()
	if _, err := n.run("ip", "route", "add", half, "via", underlayIP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = n.run("ip", "route", "del", half, "via", underlayIP) })
	out, code := weftStatusInPod(t, ctx, cs, b, n)
	t.Logf("%s: weft status --check with %s via %s (exit %d):\n%s", n.name, half, underlayIP, code, out)
	// status wraps its explanations to the terminal's width; match the
	// words, not the line breaks.
	words := strings.Join(strings.Fields(out), " ")
	if code != 1 || !strings.Contains(words, "not by the peer's route") || !strings.Contains(words, "via "+underlayIP) {
		t.Errorf("%s: weft status --check exited %d without naming the route that takes %s's traffic (want exit 1, \"not by the peer's route\", \"via %s\")", n.name, code, peer.name, underlayIP)
	}
	if _, err := n.run("ip", "route", "del", half, "via", underlayIP); err != nil {
		t.Fatal(err)
	}
}
