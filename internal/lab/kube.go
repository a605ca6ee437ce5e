package lab

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/weftnet/weft/internal/kubecluster"
)

// Where agents keep leases (Spec.Store).
const (
	// StoreEtcd is the classic lab: its own etcd on the underlay, agents
	// with --etcd-endpoints.
	StoreEtcd = "etcd"
	// StoreKube is Kubernetes mode: etcd, kube-apiserver and
	// kube-controller-manager on the underlay, Nodes h1..hN registered,
	// agents with --kube-subnet-mgr and a ServiceAccount token.
	StoreKube = "kube"
)

// The Kubernetes lab's fixed ports on the underlay address, and the
// names deploy/kube-weft.yml gives the agents' identity.
const (
	KubeAPIPort        = 6443
	kubeEtcdClientPort = 2379
	kubeEtcdPeerPort   = 2380
	KubeNamespace      = "kube-weft"
	KubeServiceAccount = "weft"
	// kubeNodeCIDRBits is --node-cidr-mask-size: the /24 per node that
	// flannel's etcd mode also leases by default.
	kubeNodeCIDRBits = 24
	// kubeNodeCIDRBitsIPv6 is --node-cidr-mask-size-ipv6 (or the one
	// mask size of an IPv6-only cluster): flannel's default IPv6SubnetLen.
	kubeNodeCIDRBitsIPv6 = 64
)

// Kube is the Kubernetes control plane of a lab with Spec.Store "kube";
// zero otherwise.
type Kube struct {
	Dir string // <state>/kube: PKI, etcd data, process logs, kubeconfigs, audit log
	// Addr is where every control-plane process listens: the underlay's
	// address, which all hosts route to.
	Addr      netip.Addr
	APIServer string // https://10.4.7.12:6443
	// Kubeconfig is the agents' kubeconfig: a TokenRequest token of the
	// manifest's ServiceAccount, never the admin one.
	Kubeconfig      string
	AdminKubeconfig string
	AuditLog        string // nodes/status patches with their bodies
	NetConf         string // the agents' --net-config-path
	// ClusterCIDR and NodeCIDRBits are kube-controller-manager's
	// --cluster-cidr and --node-cidr-mask-size: the lab's Network, or its
	// IPv6Network in an IPv6 lab.
	ClusterCIDR  netip.Prefix
	NodeCIDRBits int
	// ClusterCIDRv6 is the second --cluster-cidr of a dual lab, its
	// IPv6Network, with --node-cidr-mask-size-ipv6=NodeCIDRBitsIPv6.
	ClusterCIDRv6    netip.Prefix
	NodeCIDRBitsIPv6 int
}

// ClusterCIDRFlag is the value of kube-controller-manager's --cluster-cidr.
func (k Kube) ClusterCIDRFlag() string {
	if k.ClusterCIDRv6.IsValid() {
		return k.ClusterCIDR.String() + "," + k.ClusterCIDRv6.String()
	}
	return k.ClusterCIDR.String()
}

// validateStore checks the store choice and what it implies.
func validateStore(s Spec) error {
	switch s.Store {
	case "", StoreEtcd:
		return nil
	case StoreKube:
		bits := s.Network.Bits()
		if bits > 0 && bits <= kubeNodeCIDRBits && s.Hosts > 1<<(kubeNodeCIDRBits-bits) {
			return fmt.Errorf("lab network %s holds %d node CIDRs of /%d, fewer than the %d hosts", s.Network, 1<<(kubeNodeCIDRBits-bits), kubeNodeCIDRBits, s.Hosts)
		}
		return nil
	default:
		return fmt.Errorf("lab store %q: want %s or %s", s.Store, StoreEtcd, StoreKube)
	}
}

// planKube lays out the control plane of a Kubernetes lab.
func planKube(t Topology) Kube {
	if t.Spec.Store != StoreKube {
		return Kube{}
	}
	dir := filepath.Join(t.StateDir, "kube")
	addr := t.Underlay.Addr.Addr()
	if !addr.IsValid() {
		addr = t.Underlay.Addr6.Addr() // an IPv6 lab
	}
	k := Kube{
		Dir:             dir,
		Addr:            addr,
		APIServer:       "https://" + netip.AddrPortFrom(addr, KubeAPIPort).String(),
		Kubeconfig:      filepath.Join(dir, "weft.kubeconfig"),
		AdminKubeconfig: filepath.Join(dir, "admin.kubeconfig"),
		AuditLog:        filepath.Join(dir, "audit.log"),
		NetConf:         filepath.Join(t.StateDir, "net-conf.json"),
	}
	switch {
	case !t.Spec.HasIPv4():
		k.ClusterCIDR, k.NodeCIDRBits = t.Spec.IPv6Network, kubeNodeCIDRBitsIPv6
	case t.Spec.HasIPv6():
		k.ClusterCIDR, k.NodeCIDRBits = t.Spec.Network, kubeNodeCIDRBits
		k.ClusterCIDRv6, k.NodeCIDRBitsIPv6 = t.Spec.IPv6Network, kubeNodeCIDRBitsIPv6
	default:
		k.ClusterCIDR, k.NodeCIDRBits = t.Spec.Network, kubeNodeCIDRBits
	}
	return k
}

// kubeAgentArgs are the etcd lab's agent flags with the store flags
// swapped for Kubernetes mode's, as the DaemonSet runs the agent; the node
// name comes from the environment (AgentEnv).
func (t Topology) kubeAgentArgs(h Host) []string {
	e := t
	e.Spec.Store = StoreEtcd
	args := e.AgentArgs(h)
	out := []string{args[0],
		"--kube-subnet-mgr",
		"--kubeconfig-file=" + t.Kube.Kubeconfig,
		"--net-config-path=" + t.Kube.NetConf,
	}
	for _, a := range args[1:] {
		if !strings.HasPrefix(a, "--etcd-") {
			out = append(out, a)
		}
	}
	return out
}

// AgentEnv is the environment a host's agent gets on top of the lab's:
// NODE_NAME (the host's name, which is its Node's) in a Kubernetes lab.
func (t Topology) AgentEnv(h Host) []string {
	if t.Spec.Store != StoreKube {
		return nil
	}
	return []string{"NODE_NAME=" + h.Name}
}

// resolveKube finds what a Kubernetes lab needs from outside the lab
// before anything is built: the control-plane binaries and the manifest
// whose RBAC the agents run under, both by default from the weft
// repository above the working directory or the weft binary.
func (o Options) resolveKube() (Options, error) {
	if o.Store != StoreKube {
		return o, nil
	}
	wd, _ := os.Getwd()
	starts := []string{wd, filepath.Dir(o.WeftBinary)}
	dir, err := kubecluster.Locate(o.KubeBinDir, starts...)
	if err != nil {
		return o, err
	}
	o.KubeBinDir = dir
	if o.KubeManifest == "" {
		repo, ok := kubecluster.FindRepo(starts...)
		if !ok {
			return o, fmt.Errorf("--kube-manifest: no weft repository above %s to take deploy/kube-weft.yml from; name the manifest",
				strings.Join(slices.DeleteFunc(starts, func(s string) bool { return s == "" || s == "." }), " or "))
		}
		o.KubeManifest = filepath.Join(repo, "deploy", "kube-weft.yml")
	}
	if abs, err := filepath.Abs(o.KubeManifest); err == nil {
		o.KubeManifest = abs
	}
	if _, err := os.Stat(o.KubeManifest); err != nil {
		return o, fmt.Errorf("--kube-manifest: %w", err)
	}
	return o, nil
}

// addKubeFlags adds the build flags of Kubernetes labs.
func addKubeFlags(fs *flag.FlagSet, o *Options) {
	fs.StringVar(&o.Store, "store", StoreEtcd, "where agents keep leases: etcd (the lab's own etcd) or kube (etcd + kube-apiserver + kube-controller-manager on the underlay; agents run with --kube-subnet-mgr as deploy/kube-weft.yml's ServiceAccount; needs 'make kube-tools' once)")
	fs.StringVar(&o.KubeBinDir, "kube-bin-dir", "", "with --store kube: directory of etcd, kube-apiserver and kube-controller-manager (default $WEFT_KUBE_BIN_DIR, else the cache that 'make kube-tools' fills)")
	fs.StringVar(&o.KubeManifest, "kube-manifest", "", "with --store kube: manifest applied before the agents start (default deploy/kube-weft.yml of the weft repository)")
}

// kubeNote is the demo's first-line note for the store.
func kubeNote(s Spec) string {
	if s.Store != StoreKube {
		return ""
	}
	bits := "/" + strconv.Itoa(kubeNodeCIDRBits)
	switch {
	case !s.HasIPv4():
		bits = "/" + strconv.Itoa(kubeNodeCIDRBitsIPv6)
	case s.HasIPv6():
		bits += " and /" + strconv.Itoa(kubeNodeCIDRBitsIPv6)
	}
	return ", Kubernetes API store (--kube-subnet-mgr), podCIDRs " + bits + " from kube-controller-manager"
}
