package lab

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/weftnet/weft/internal/kubecluster"
)

// kubeTokenTTL is how long the agents' ServiceAccount token lasts: longer
// than anyone keeps a lab, shorter than the lab's certificates.
const kubeTokenTTL = 30 * 24 * time.Hour

// Kube returns the control plane of a Kubernetes lab (nil for an etcd
// lab), for tests and tools that act on it as an administrator would:
// create and delete Nodes, stop and start kube-controller-manager, read
// the audit log.
func (l *Lab) Kube() *kubecluster.Cluster { return l.kube }

// underlayProcs says, for `weft lab status`, how the processes on the
// underlay are doing.
func underlayProcs(topo Topology) string {
	if topo.Spec.Store != StoreKube {
		return "etcd " + procStatus(topo.Etcd.PIDFile)
	}
	var ps []string
	for _, p := range kubecluster.Programs {
		ps = append(ps, p+" "+procStatus(filepath.Join(topo.Kube.Dir, p+".pid")))
	}
	return strings.Join(ps, ", ")
}

// killKube SIGKILLs a Kubernetes lab's control plane, found through its
// pid files. Its state is thrown away with the lab, and a graceful
// kube-apiserver takes seconds to stop (longer still when etcd goes at
// the same time), which teardown would otherwise wait out.
func killKube(topo Topology) error {
	if topo.Spec.Store != StoreKube {
		return nil
	}
	var pids []int
	for _, p := range kubecluster.Programs {
		pid, ok, err := readPIDFile(filepath.Join(topo.Kube.Dir, p+".pid"))
		if err != nil {
			return err
		}
		if ok {
			pids = append(pids, pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if len(pids) == 0 {
		return nil
	}
	if err := stopPIDs(pids, 5*time.Second); err != nil {
		return fmt.Errorf("stop the Kubernetes control plane: %w", err)
	}
	return nil
}

// startStore starts what the agents keep their leases in.
func (l *Lab) startStore(ctx context.Context) error {
	if l.topo.Spec.Store == StoreKube {
		return l.startKube(ctx)
	}
	return l.startEtcd(ctx)
}

// spawnAgent starts a host's agent with the lab's flags and environment.
func (l *Lab) spawnAgent(h Host) (*child, error) {
	bin, args := AgentCommand(l.opts.WeftBinary, l.topo.AgentArgs(h))
	return spawnEnv(h.Name+" agent", h.NS, bin, args, l.topo.AgentEnv(h), h.AgentLog, h.AgentPID)
}

// startKube does what a kubeadm cluster has done before flannel's
// DaemonSet is applied: the control plane runs in the underlay namespace
// (etcd, kube-apiserver, and kube-controller-manager with
// --allocate-node-cidrs=true --cluster-cidr=<Network>), the manifest is
// applied, and every host is registered as a Node, as its kubelet would
// do. The agents then get a kubeconfig holding a token of the manifest's
// ServiceAccount, so the manifest's RBAC is all they may do, and the
// network config as the ConfigMap's net-conf.json would give it.
func (l *Lab) startKube(ctx context.Context) error {
	t0 := time.Now()
	k := l.topo.Kube
	c, err := kubecluster.Start(ctx, kubecluster.Options{
		BinDir:               l.opts.KubeBinDir,
		Dir:                  k.Dir,
		NetNS:                l.topo.Underlay.NS,
		Addr:                 k.Addr,
		ClusterCIDR:          k.ClusterCIDR,
		NodeCIDRMaskSize:     k.NodeCIDRBits,
		ClusterCIDRv6:        k.ClusterCIDRv6,
		NodeCIDRMaskSizeIPv6: k.NodeCIDRBitsIPv6,
		Ports:                kubecluster.Ports{EtcdClient: kubeEtcdClientPort, EtcdPeer: kubeEtcdPeerPort, APIServer: KubeAPIPort},
		// `weft lab up` exits and leaves the lab running; teardown stops
		// these with every other process in the underlay namespace.
		Detach:          true,
		AuditNodeStatus: true,
		Log:             l.opts.Log,
	})
	if err != nil {
		return fmt.Errorf("start the Kubernetes control plane: %w", err)
	}
	l.kube = c
	l.out.say("kube-apiserver ready at %s (etcd, kube-apiserver, kube-controller-manager --cluster-cidr=%s from %s) %s",
		c.URL(), k.ClusterCIDRFlag(), l.opts.KubeBinDir, formatSince(t0))

	objs, err := c.ApplyManifest(ctx, l.opts.KubeManifest)
	if err != nil {
		return err
	}
	tok, err := c.ServiceAccountToken(ctx, KubeNamespace, KubeServiceAccount, kubeTokenTTL)
	if err != nil {
		return fmt.Errorf("the agents' token (is ServiceAccount %s/%s in %s?): %w", KubeNamespace, KubeServiceAccount, l.opts.KubeManifest, err)
	}
	if err := c.WriteKubeconfig(k.Kubeconfig, tok); err != nil {
		return err
	}
	l.out.say("applied %d objects of %s; agents run as ServiceAccount %s/%s (%s) %s",
		len(objs), l.opts.KubeManifest, KubeNamespace, KubeServiceAccount, k.Kubeconfig, formatSince(t0))

	if err := writeFileAtomic(k.NetConf, []byte(l.topo.Etcd.Config+"\n")); err != nil {
		return err
	}
	for _, h := range l.topo.Hosts {
		if _, err := c.CreateNode(ctx, h.Name, nil); err != nil {
			return err
		}
	}
	first, last := l.topo.Hosts[0].Name, l.topo.Hosts[len(l.topo.Hosts)-1].Name
	l.out.say("nodes %s..%s registered; net-conf.json %s; admin kubeconfig %s %s",
		first, last, l.topo.Etcd.Config, c.AdminKubeconfig(), formatSince(t0))
	return nil
}
