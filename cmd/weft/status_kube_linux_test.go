package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testbin"
	"github.com/weftnet/weft/test/kube/kubetest"
)

// In Kubernetes mode `weft status` reads the config from --net-config-path
// and the leases from the Nodes (podCIDR and flannel annotations), with the
// permissions the manifest's ServiceAccount has, and needs no NODE_NAME;
// `weft config get` shows the config file.
func TestStatusAndConfigGetInKubernetesMode(t *testing.T) {
	c := kubetest.Start(t)
	root, err := testbin.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	c.ApplyManifest(t, filepath.Join(root, "deploy", "kube-weft.yml"))
	kc := c.Kubeconfig(t, c.ServiceAccountToken(t, "kube-weft", "weft"))

	const p = "flannel.alpha.coreos.com/"
	c.CreateNode(t, "node-a", map[string]string{
		p + "kube-subnet-manager": "true",
		p + "backend-type":        "host-gw",
		p + "backend-data":        "null",
		p + "public-ip":           "192.0.2.11",
	})
	c.CreateNode(t, "node-b", map[string]string{
		p + "kube-subnet-manager": "true",
		p + "backend-type":        "host-gw",
		p + "backend-data":        "null",
		p + "public-ip":           "192.0.2.12",
	})
	// Not a flannel node: no lease.
	c.CreateNode(t, "node-c", nil)
	// Broken annotations: left out.
	c.CreateNode(t, "node-d", map[string]string{
		p + "kube-subnet-manager": "true",
		p + "backend-type":        "host-gw",
		p + "public-ip":           "not-an-ip",
	})
	want := map[string]string{}
	for _, n := range []string{"node-a", "node-b"} {
		want[c.WaitPodCIDR(t, n, time.Minute).String()] = map[string]string{"node-a": "192.0.2.11", "node-b": "192.0.2.12"}[n]
	}
	for _, n := range []string{"node-c", "node-d"} {
		c.WaitPodCIDR(t, n, time.Minute)
	}

	conf := `{"Network": "10.244.0.0/16", "Backend": {"Type": "host-gw"}}`
	netConf := filepath.Join(t.TempDir(), "net-conf.json")
	if err := os.WriteFile(netConf, []byte(conf+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("NODE_NAME", "")
	kube := []string{"--kube-subnet-mgr", "--kubeconfig-file=" + kc, "--net-config-path=" + netConf}

	var out, errOut strings.Builder
	args := append([]string{"weft", "status", "-o", "json", "--subnet-file=" + filepath.Join(t.TempDir(), "subnet.env")}, kube...)
	code := run(args, &out, &errOut)
	// This host holds none of the leases: problems (exit 1), not a failure
	// to read (which prints no report).
	if code != 1 && code != 0 {
		t.Fatalf("status: exit %d\nstderr: %s", code, errOut.String())
	}
	var rep struct {
		Network string
		Backend string
		Store   string
		Leases  []struct {
			Subnet   string
			PublicIP string `json:"public_ip"`
			Backend  string
		}
	}
	if err := json.Unmarshal([]byte(out.String()), &rep); err != nil {
		t.Fatalf("status -o json: %v\n%s\nstderr: %s", err, out.String(), errOut.String())
	}
	if rep.Network != "10.244.0.0/16" || rep.Backend != "host-gw" {
		t.Errorf("network %q backend %q, want the config file's", rep.Network, rep.Backend)
	}
	if !strings.HasPrefix(rep.Store, "kubernetes ") || !strings.Contains(rep.Store, netConf) {
		t.Errorf("store %q does not name the Kubernetes API and the config file", rep.Store)
	}
	got := map[string]string{}
	for _, l := range rep.Leases {
		got[l.Subnet] = l.PublicIP
		if l.Backend != "host-gw" {
			t.Errorf("lease %s backend %q", l.Subnet, l.Backend)
		}
	}
	if len(got) != len(want) {
		t.Errorf("leases %v, want exactly node-a's and node-b's %v", got, want)
	}
	for subnet, ip := range want {
		if got[subnet] != ip {
			t.Errorf("lease %s public IP %q, want %q", subnet, got[subnet], ip)
		}
	}

	out.Reset()
	errOut.Reset()
	if code := run(append([]string{"weft", "config", "get", "--parsed"}, kube...), &out, &errOut); code != 0 {
		t.Fatalf("config get: exit %d\n%s", code, errOut.String())
	}
	if !strings.HasPrefix(out.String(), conf+"\n") || !strings.Contains(out.String(), "pool       255 subnets of /24") {
		t.Errorf("config get --parsed:\n%s", out.String())
	}

	// put has nothing to write to in Kubernetes mode, short of a dry run.
	out.Reset()
	errOut.Reset()
	if code := run(append([]string{"weft", "config", "put", conf}, kube...), &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "ConfigMap") {
		t.Errorf("config put in Kubernetes mode: exit %d, stderr %q", code, errOut.String())
	}
	out.Reset()
	errOut.Reset()
	if code := run(append([]string{"weft", "config", "put", "--dry-run", conf}, kube...), &out, &errOut); code != 0 || !strings.Contains(out.String(), netConf+" would hold") {
		t.Errorf("config put --dry-run in Kubernetes mode: exit %d\n%s%s", code, out.String(), errOut.String())
	}
}
