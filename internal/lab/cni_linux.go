package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/containernetworking/cni/libcni"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/weftnet/weft/internal/netns"
)

// requiredPlugins are the CNI plugins a lab pod's attachment runs: the
// flannel plugin (weft's) and the two it delegates to.
var requiredPlugins = []string{"flannel", "bridge", "host-local"}

// checkCNIBinDir fails early, with a hint, when a plugin is missing, rather
// than letting the first pod fail with libcni's "failed to find plugin".
func checkCNIBinDir(dir string) error {
	for _, p := range requiredPlugins {
		st, err := os.Stat(filepath.Join(dir, p))
		if err != nil {
			return fmt.Errorf("CNI plugin %s not found in %s (build them with `make`, or set --cni-bin-dir or WEFT_CNI_BIN_DIR): %w", p, dir, err)
		}
		if st.Mode()&0o111 == 0 {
			return fmt.Errorf("CNI plugin %s in %s is not executable", p, dir)
		}
	}
	return nil
}

// cniHost runs CNI operations for the pods of one host, as that host's
// container runtime would: libcni with the host's conflist, plugins from
// binDir, results cached in the lab's state directory.
type cniHost struct {
	host Host
	list *libcni.NetworkConfigList
	cni  *libcni.CNIConfig
}

func newCNIHost(binDir string, h Host, conflist []byte) (*cniHost, error) {
	list, err := libcni.NetworkConfFromBytes(conflist)
	if err != nil {
		return nil, fmt.Errorf("parse conflist of %s: %w", h.Name, err)
	}
	return &cniHost{
		host: h,
		list: list,
		cni:  libcni.NewCNIConfigWithCacheDir([]string{binDir}, h.CNICache, nil),
	}, nil
}

func (c *cniHost) runtimeConf(p Pod) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{
		ContainerID: p.ContainerID,
		NetNS:       netns.Path(p.NS),
		IfName:      p.IfName,
		// What kubelet's runtimes pass; IgnoreUnknown keeps plugins that
		// parse CNI_ARGS strictly (host-local) from refusing the rest.
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", "default"},
			{"K8S_POD_NAME", p.Name},
			{"K8S_POD_INFRA_CONTAINER_ID", p.ContainerID},
		},
	}
}

// add attaches the pod and returns its address of each family the lab
// has (v4 or v6 invalid when it has not that family).
//
// The plugins run on a thread inside the host namespace: a child process
// starts in the namespace of the thread that forks it, and the bridge
// plugin creates cni0 and the host end of the pod's veth wherever it runs.
// That is what makes each virtual host its own "node".
func (c *cniHost) add(ctx context.Context, s Spec, p Pod) (v4, v6 netip.Addr, err error) {
	var res *types100.Result
	err = netns.Do(c.host.NS, func() error {
		r, err := c.cni.AddNetworkList(ctx, c.list, c.runtimeConf(p))
		if err != nil {
			return err
		}
		res, err = types100.NewResultFromResult(r)
		return err
	})
	if err != nil {
		return v4, v6, fmt.Errorf("CNI ADD %s (netns %s) on %s: %w", p.Name, p.NS, c.host.Name, err)
	}
	for _, ipc := range res.IPs {
		a, ok := netip.AddrFromSlice(ipc.Address.IP)
		switch {
		case !ok:
		case a.Unmap().Is4() && !v4.IsValid():
			v4 = a.Unmap()
		case a.Is6() && !a.Is4In6() && !v6.IsValid():
			v6 = a
		}
	}
	if s.HasIPv4() && !v4.IsValid() {
		return v4, v6, fmt.Errorf("CNI ADD %s on %s: result has no IPv4 address: %v", p.Name, c.host.Name, res.IPs)
	}
	if s.HasIPv6() && !v6.IsValid() {
		return v4, v6, fmt.Errorf("CNI ADD %s on %s: result has no IPv6 address (is FLANNEL_IPV6_SUBNET in %s?): %v", p.Name, c.host.Name, c.host.SubnetFile, res.IPs)
	}
	return v4, v6, nil
}

// del detaches the pod, as a runtime does when it removes a sandbox.
func (c *cniHost) del(ctx context.Context, p Pod) error {
	err := netns.Do(c.host.NS, func() error {
		return c.cni.DelNetworkList(ctx, c.list, c.runtimeConf(p))
	})
	if err != nil {
		return fmt.Errorf("CNI DEL %s on %s: %w", p.Name, c.host.Name, err)
	}
	return nil
}

// delPods runs CNI DEL for every pod whose host still exists and whose
// conflist was written, newest first. It is best effort: deleting the
// namespaces and the state directory removes whatever DEL would have, so
// errors are returned for logging only.
func delPods(ctx context.Context, binDir string, topo Topology) error {
	var errs []error
	for i := len(topo.Hosts) - 1; i >= 0; i-- {
		h := topo.Hosts[i]
		if !netns.Exists(h.NS) {
			continue
		}
		conf, err := os.ReadFile(h.ConfList)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		c, err := newCNIHost(binDir, h, conf)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for j := len(h.Pods) - 1; j >= 0; j-- {
			p := h.Pods[j]
			if !netns.Exists(p.NS) {
				continue
			}
			if err := c.del(ctx, p); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
