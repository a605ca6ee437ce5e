package lab

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/kubecluster"
)

func TestPlanKube(t *testing.T) {
	topo, err := Plan(Spec{Prefix: "k", Hosts: 2, Backend: "vxlan", Store: StoreKube, StateRoot: "/run/x", IPMasq: true})
	if err != nil {
		t.Fatal(err)
	}
	k := topo.Kube
	if k.Dir != "/run/x/k/kube" || k.Addr != netip.MustParseAddr("10.4.7.12") || k.APIServer != "https://10.4.7.12:6443" ||
		k.Kubeconfig != "/run/x/k/kube/weft.kubeconfig" || k.NetConf != "/run/x/k/net-conf.json" || k.NodeCIDRBits != 24 ||
		k.AuditLog != "/run/x/k/kube/audit.log" || k.AdminKubeconfig != "/run/x/k/kube/admin.kubeconfig" {
		t.Errorf("Kube = %+v", k)
	}
	h := topo.Hosts[1]
	want := []string{"agent",
		"--kube-subnet-mgr",
		"--kubeconfig-file=/run/x/k/kube/weft.kubeconfig",
		"--net-config-path=/run/x/k/net-conf.json",
		"--iface=eth0",
		"--public-ip=10.4.7.22",
		"--subnet-file=/run/x/k/h2/subnet.env",
		"--state-dir=/run/x/k/h2",
		"--healthz-ip=127.0.0.1",
		"--healthz-port=2401",
		"--log-format=text",
		"--ip-masq",
	}
	if got := topo.AgentArgs(h); !slices.Equal(got, want) {
		t.Errorf("AgentArgs =\n%q\nwant\n%q", got, want)
	}
	if got := topo.AgentEnv(h); !slices.Equal(got, []string{"NODE_NAME=h2"}) {
		t.Errorf("AgentEnv = %q, want NODE_NAME=h2", got)
	}
	if !strings.Contains(layoutNote(topo.Spec), "--kube-subnet-mgr") {
		t.Errorf("the demo's first line does not say the store: %q", layoutNote(topo.Spec))
	}

	etcd, err := Plan(Spec{Prefix: "e", Hosts: 2})
	if err != nil {
		t.Fatal(err)
	}
	if etcd.Kube != (Kube{}) || etcd.AgentEnv(etcd.Hosts[0]) != nil || !strings.HasPrefix(etcd.AgentArgs(etcd.Hosts[0])[1], "--etcd-endpoints=") {
		t.Errorf("an etcd lab has Kube %+v, env %q, args %q", etcd.Kube, etcd.AgentEnv(etcd.Hosts[0]), etcd.AgentArgs(etcd.Hosts[0]))
	}
}

func TestPlanKubeRefuses(t *testing.T) {
	for _, tc := range []struct {
		spec Spec
		want string
	}{
		{Spec{Store: "consul"}, `lab store "consul"`},
		{Spec{Store: StoreKube, Hosts: 5, Network: netip.MustParsePrefix("10.9.0.0/22")}, "holds 4 node CIDRs of /24, fewer than the 5 hosts"},
	} {
		if _, err := Plan(tc.spec); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Plan(%+v) = %v, want an error containing %q", tc.spec, err, tc.want)
		}
	}
}

// Without the control-plane binaries a Kubernetes lab fails before
// anything is built, naming the command that builds them.
func TestResolveKubeWithoutBinaries(t *testing.T) {
	o := Options{Spec: Spec{Store: StoreKube}, KubeBinDir: t.TempDir(), KubeManifest: "/nonexistent"}
	_, _, err := o.resolve()
	if !errors.Is(err, kubecluster.ErrNotBuilt) || !strings.Contains(err.Error(), "`make kube-tools`") {
		t.Errorf("resolve = %v, want ErrNotBuilt naming make kube-tools", err)
	}
	bins := t.TempDir()
	t.Setenv("WEFT_KUBE_BIN_DIR", bins)
	o.KubeBinDir = ""
	if _, _, err := o.resolve(); !errors.Is(err, kubecluster.ErrNotBuilt) || !strings.Contains(err.Error(), "$WEFT_KUBE_BIN_DIR") {
		t.Errorf("resolve with an empty $WEFT_KUBE_BIN_DIR = %v", err)
	}
	// With the binaries there, a missing manifest is reported.
	for _, p := range kubecluster.Programs {
		if err := os.WriteFile(filepath.Join(bins, p), nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := o.resolve(); err == nil || !strings.Contains(err.Error(), "--kube-manifest") {
		t.Errorf("resolve without the manifest = %v", err)
	}
	o.KubeManifest = ""
	got, _, err := o.resolve()
	if err != nil || got.KubeBinDir != bins || !strings.HasSuffix(got.KubeManifest, "/deploy/kube-weft.yml") {
		t.Errorf("resolve from inside the repository = %q, %q, %v; want %s and deploy/kube-weft.yml", got.KubeBinDir, got.KubeManifest, err, bins)
	}
}
