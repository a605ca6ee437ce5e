package cni_test

// Integration tests: weft's plugin, installed as "flannel" next to the real
// bridge, host-local and portmap plugins, driven through libcni as a
// container runtime drives it. Every test builds this:
//
//	root netns: untouched (the test only reads its link list)
//	┌──────────── "host" netns wth… (plays the node) ───────────────┐
//	│  subnet.env, dataDir, host-local store: under t.TempDir()     │
//	│                                                               │
//	│  cni0 10.1.17.1/24 (bridge plugin, gateway of FLANNEL_SUBNET) │
//	│    ├── veth… ══ eth0 10.1.17.x   [pod netns wtp…]             │
//	│    └── veth… ══ eth0 10.1.17.y   [pod netns wtp…]             │
//	└───────────────────────────────────────────────────────────────┘
//
// The libcni calls run inside netns.Do(host, …): os/exec forks from the
// locked OS thread, so the plugin processes (and the bridge plugin they
// delegate to) live in the host netns and create cni0 there.
// TestPluginsRunInCallersNetns checks that assumption.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"
	vns "github.com/vishvananda/netns"

	"github.com/weftnet/weft/internal/cni"
	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/internal/testbin"
)

const (
	subnetA = "10.1.17.0/24"
	subnetB = "10.1.42.0/24"
	gwA     = "10.1.17.1/24"
	gwB     = "10.1.42.1/24"
	network = "10.1.0.0/16"
	mtu     = 1472
)

// node is one simulated Kubernetes node: a host netns and the files weft
// and the runtime keep for it.
type node struct {
	t          *testing.T
	ns         string
	subnetFile string
	dataDir    string // the flannel plugin's saved delegate configs
	ipamDir    string // host-local's store (ipam.dataDir)
	cni        *libcni.CNIConfig
}

func newNode(t *testing.T) *node {
	nstest.RequireRoot(t)
	dir := t.TempDir()
	n := &node{
		t:          t,
		ns:         nstest.NewNS(t, "h"),
		subnetFile: filepath.Join(dir, "run", "flannel", "subnet.env"),
		dataDir:    filepath.Join(dir, "var", "lib", "cni", "flannel"),
		ipamDir:    filepath.Join(dir, "var", "lib", "cni", "networks"),
	}
	n.cni = libcni.NewCNIConfigWithCacheDir([]string{testbin.CNIDir(t)}, filepath.Join(dir, "cache"), nil)
	return n
}

// setSubnet writes subnet.env as flanneld writes it, with the
// --ip-masq setting kube-flannel uses (so the bridge plugin does not need
// iptables for masquerading).
func (n *node) setSubnet(subnet string) {
	n.t.Helper()
	p := netip.MustParsePrefix(subnet)
	text := fmt.Sprintf("FLANNEL_NETWORK=%s\nFLANNEL_SUBNET=%s\nFLANNEL_MTU=%d\nFLANNEL_IPMASQ=true\n",
		network, netip.PrefixFrom(p.Addr().Next(), p.Bits()), mtu)
	if err := os.MkdirAll(filepath.Dir(n.subnetFile), 0o755); err != nil {
		n.t.Fatal(err)
	}
	if err := os.WriteFile(n.subnetFile, []byte(text), 0o644); err != nil {
		n.t.Fatal(err)
	}
}

// conflist is kube-flannel's 10-flannel.conflist with only the paths
// pointed into the test's temp dir.
func (n *node) conflist(cniVersion string) *libcni.NetworkConfigList {
	n.t.Helper()
	text := fmt.Sprintf(`{"name":"cbr0","cniVersion":%q,"plugins":[
		{"type":"flannel","delegate":{"hairpinMode":true,"isDefaultGateway":true},
		 "subnetFile":%q,"dataDir":%q,"ipam":{"dataDir":%q}},
		{"type":"portmap","capabilities":{"portMappings":true}}]}`,
		cniVersion, n.subnetFile, n.dataDir, n.ipamDir)
	l, err := libcni.ConfListFromBytes([]byte(text))
	if err != nil {
		n.t.Fatalf("parse conflist: %v", err)
	}
	return l
}

func rt(pod, id string) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: id, NetNS: netns.Path(pod), IfName: "eth0"}
}

func (n *node) add(l *libcni.NetworkConfigList, pod, id string) (*types100.Result, error) {
	var res types.Result
	err := netns.Do(n.ns, func() error {
		var err error
		res, err = n.cni.AddNetworkList(context.Background(), l, rt(pod, id))
		return err
	})
	if err != nil {
		return nil, err
	}
	r, err := types100.NewResultFromResult(res)
	if err != nil {
		n.t.Fatalf("convert result: %v", err)
	}
	return r, nil
}

func (n *node) mustAdd(l *libcni.NetworkConfigList, pod, id string) *types100.Result {
	n.t.Helper()
	r, err := n.add(l, pod, id)
	if err != nil {
		n.t.Fatalf("ADD %s: %v", id, err)
	}
	return r
}

func (n *node) del(l *libcni.NetworkConfigList, pod, id string) error {
	return netns.Do(n.ns, func() error {
		return n.cni.DelNetworkList(context.Background(), l, rt(pod, id))
	})
}

func (n *node) check(l *libcni.NetworkConfigList, pod, id string) error {
	return netns.Do(n.ns, func() error {
		return n.cni.CheckNetworkList(context.Background(), l, rt(pod, id))
	})
}

func handle(t *testing.T, ns string) *netlink.Handle {
	t.Helper()
	h, err := netns.Handle(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// addrs lists a link's IPv4 addresses as strings ("10.1.17.1/24").
func addrs(t *testing.T, h *netlink.Handle, link string) []string {
	t.Helper()
	l, err := h.LinkByName(link)
	if err != nil {
		t.Fatalf("find %s: %v", link, err)
	}
	as, err := h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		t.Fatalf("addresses of %s: %v", link, err)
	}
	var out []string
	for _, a := range as {
		out = append(out, a.IPNet.String())
	}
	return out
}

func podIPv4(t *testing.T, r *types100.Result) (ip netip.Prefix, gw netip.Addr) {
	t.Helper()
	for _, c := range r.IPs {
		if c.Address.IP.To4() != nil {
			a, _ := netip.AddrFromSlice(c.Address.IP.To4())
			ones, _ := c.Address.Mask.Size()
			g, _ := netip.AddrFromSlice(c.Gateway.To4())
			return netip.PrefixFrom(a, ones), g
		}
	}
	t.Fatalf("no IPv4 address in result %v", r)
	return
}

func rootHasLink(t *testing.T, name string) bool {
	t.Helper()
	ns, err := vns.GetFromPid(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	_, err = h.LinkByName(name)
	return err == nil
}

// TestPluginsRunInCallersNetns pins the assumption every other test here
// stands on: plugins forked from inside netns.Do act in that netns.
func TestPluginsRunInCallersNetns(t *testing.T) {
	n := newNode(t)
	rootHadCNI0 := rootHasLink(t, "cni0")
	n.setSubnet(subnetA)
	pod := nstest.NewNS(t, "p")
	n.mustAdd(n.conflist("0.3.1"), pod, "ctr-netns")

	if got := addrs(t, handle(t, n.ns), "cni0"); len(got) != 1 || got[0] != gwA {
		t.Errorf("cni0 in the host netns has %v, want [%s]", got, gwA)
	}
	if !rootHadCNI0 && rootHasLink(t, "cni0") {
		t.Error("cni0 appeared in the test's own (root) netns: the plugins did not run in the host netns")
	}
}

// TestKubeFlannelConflist runs kube-flannel's conflist (flannel + portmap)
// end to end: addresses, gateway, routes, MTU, pod-to-pod traffic, the
// saved delegate config, and DEL.
func TestKubeFlannelConflist(t *testing.T) {
	n := newNode(t)
	n.setSubnet(subnetA)
	l := n.conflist("0.3.1")
	podA, podB := nstest.NewNS(t, "p"), nstest.NewNS(t, "p")
	resA := n.mustAdd(l, podA, "ctr-a")
	resB := n.mustAdd(l, podB, "ctr-b")

	subnet := netip.MustParsePrefix(subnetA)
	ipA, gw := podIPv4(t, resA)
	ipB, _ := podIPv4(t, resB)
	for _, ip := range []netip.Prefix{ipA, ipB} {
		if !subnet.Contains(ip.Addr()) || ip.Bits() != 24 {
			t.Errorf("pod address %s not in FLANNEL_SUBNET %s", ip, subnetA)
		}
	}
	if ipA.Addr() == ipB.Addr() {
		t.Errorf("both pods got %s", ipA)
	}
	if gw != netip.MustParseAddr("10.1.17.1") {
		t.Errorf("gateway %s, want 10.1.17.1", gw)
	}

	hA := handle(t, podA)
	eth0, err := hA.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if eth0.Attrs().MTU != mtu {
		t.Errorf("pod eth0 MTU %d, want FLANNEL_MTU %d", eth0.Attrs().MTU, mtu)
	}
	if got := addrs(t, hA, "eth0"); len(got) != 1 || got[0] != ipA.String() {
		t.Errorf("pod eth0 addresses %v, want [%s]", got, ipA)
	}
	routes, err := hA.RouteList(eth0, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var haveNet, haveDefault bool
	for _, r := range routes {
		if r.Dst != nil && r.Dst.String() == network && r.Gw.String() == "10.1.17.1" {
			haveNet = true
		}
		if (r.Dst == nil || r.Dst.String() == "0.0.0.0/0") && r.Gw.String() == "10.1.17.1" {
			haveDefault = true
		}
	}
	if !haveNet || !haveDefault {
		t.Errorf("pod routes %v: want %s via 10.1.17.1 (FLANNEL_NETWORK) and default via 10.1.17.1 (isDefaultGateway)", routes, network)
	}
	if got := addrs(t, handle(t, n.ns), "cni0"); len(got) != 1 || got[0] != gwA {
		t.Errorf("cni0 addresses %v, want [%s]", got, gwA)
	}

	// The saved delegate config: where flannel keeps it, private, and
	// flannel's rendering of kube-flannel's delegate.
	saved := filepath.Join(n.dataDir, "ctr-a")
	st, err := os.Stat(saved)
	if err != nil {
		t.Fatalf("saved delegate config: %v", err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("saved config mode %v, want 0600", st.Mode().Perm())
	}
	if dst, err := os.Stat(n.dataDir); err != nil || dst.Mode().Perm() != 0o700 {
		t.Errorf("data dir mode %v (%v), want 0700", dst.Mode().Perm(), err)
	}
	b, _ := os.ReadFile(saved)
	want := fmt.Sprintf(`{"cniVersion":"0.3.1","hairpinMode":true,"ipMasq":false,"ipam":{"dataDir":%q,"ranges":[[{"subnet":"10.1.17.0/24"}]],"routes":[{"dst":"10.1.0.0/16"}],"type":"host-local"},"isDefaultGateway":true,"isGateway":true,"mtu":1472,"name":"cbr0","type":"bridge"}`, n.ipamDir)
	if string(b) != want {
		t.Errorf("saved delegate config:\n got %s\nwant %s", b, want)
	}

	// Pod B reaches pod A over cni0.
	tcpConnect(t, podA, podB, ipA.Addr())

	// DEL twice: both succeed, the address and the saved config are gone.
	reservation := filepath.Join(n.ipamDir, "cbr0", ipA.Addr().String())
	if _, err := os.Stat(reservation); err != nil {
		t.Fatalf("host-local reservation for %s: %v", ipA, err)
	}
	for i := range 2 {
		if err := n.del(l, podA, "ctr-a"); err != nil {
			t.Fatalf("DEL #%d: %v", i+1, err)
		}
	}
	if _, err := os.Stat(reservation); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("address %s still reserved after DEL: %v", ipA, err)
	}
	if _, err := os.Stat(saved); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("saved config still there after DEL: %v", err)
	}
	if _, err := hA.LinkByName("eth0"); err == nil {
		t.Error("pod eth0 still exists after DEL")
	}
	// Only pod A's resources went.
	if _, err := os.Stat(filepath.Join(n.ipamDir, "cbr0", ipB.Addr().String())); err != nil {
		t.Errorf("DEL of pod A released pod B's address: %v", err)
	}
}

// tcpConnect dials from pod "from" to a listener in pod "to".
func tcpConnect(t *testing.T, to, from string, ip netip.Addr) {
	t.Helper()
	var ln net.Listener
	if err := netns.Do(to, func() error {
		var err error
		ln, err = net.Listen("tcp", netip.AddrPortFrom(ip, 0).String())
		return err
	}); err != nil {
		t.Fatalf("listen in %s: %v", to, err)
	}
	defer ln.Close()
	accepted := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_, err = c.Write([]byte("pong"))
			c.Close()
		}
		accepted <- err
	}()
	var reply []byte
	err := netns.Do(from, func() error {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 4)
		k, err := c.Read(buf)
		reply = buf[:k]
		return err
	})
	if err != nil {
		t.Fatalf("TCP %s -> %s: %v", from, ln.Addr(), err)
	}
	if string(reply) != "pong" {
		t.Errorf("reply %q", reply)
	}
	if err := <-accepted; err != nil {
		t.Errorf("accept: %v", err)
	}
}

func TestLibcniAddWithoutSubnetEnv(t *testing.T) {
	n := newNode(t) // no setSubnet: the agent never ran
	pod := nstest.NewNS(t, "p")
	_, err := n.add(n.conflist("0.3.1"), pod, "ctr-x")
	want := "failed to load flannel 'subnet.env' file: open " + n.subnetFile +
		": no such file or directory. Check that weft (or flanneld) is running on this node and wrote it (--subnet-file)."
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("ADD = %v\nwant an error containing %q", err, want)
	}
	if _, err := handle(t, n.ns).LinkByName("cni0"); err == nil {
		t.Error("cni0 created although ADD failed before delegating")
	}
	// The runtime's cleanup DEL after the failed ADD succeeds.
	if err := n.del(n.conflist("0.3.1"), pod, "ctr-x"); err != nil {
		t.Errorf("DEL after failed ADD: %v", err)
	}
}

// TestBridgeRepairAfterSubnetChange is seed 001 problem 1 /
// flannel-io/flannel#1850: the node's subnet changes while cni0 survives.
func TestBridgeRepairAfterSubnetChange(t *testing.T) {
	n := newNode(t)
	l := n.conflist("0.3.1")
	n.setSubnet(subnetA)
	pod1 := nstest.NewNS(t, "p")
	n.mustAdd(l, pod1, "ctr-1")
	if err := n.del(l, pod1, "ctr-1"); err != nil {
		t.Fatal(err)
	}
	hHost := handle(t, n.ns)
	if got := addrs(t, hHost, "cni0"); len(got) != 1 || got[0] != gwA {
		t.Fatalf("premise: cni0 keeps %s after the last pod left, has %v", gwA, got)
	}

	n.setSubnet(subnetB)

	// Premise: the bridge plugin alone fails here, as flannel's users see.
	bridgeOnly := fmt.Sprintf(`{"cniVersion":"0.3.1","name":"plain","type":"bridge","isGateway":true,
		"ipam":{"type":"host-local","dataDir":%q,"ranges":[[{"subnet":%q}]]}}`, n.ipamDir, subnetB)
	conf, err := libcni.NetworkPluginConfFromBytes([]byte(bridgeOnly))
	if err != nil {
		t.Fatal(err)
	}
	podP := nstest.NewNS(t, "p")
	err = netns.Do(n.ns, func() error {
		_, err := n.cni.AddNetwork(context.Background(), conf, rt(podP, "ctr-premise"))
		return err
	})
	if err == nil || !strings.Contains(err.Error(), `"cni0" already has an IP address different from 10.1.42.1/24`) {
		t.Fatalf("premise: bridge plugin ADD on a stale cni0 = %v, want its 'already has an IP address' error", err)
	}
	_ = netns.Do(n.ns, func() error { return n.cni.DelNetwork(context.Background(), conf, rt(podP, "ctr-premise")) })
	nstest.Eventually(t, 5*time.Second, func() error {
		// The failed ADD's veth leaves with its DEL; the repair must not
		// see it.
		br, err := hHost.LinkByName("cni0")
		if err != nil {
			return err
		}
		links, err := hHost.LinkList()
		if err != nil {
			return err
		}
		for _, l := range links {
			if l.Attrs().MasterIndex == br.Attrs().Index {
				return fmt.Errorf("%s still attached to cni0", l.Attrs().Name)
			}
		}
		return nil
	})

	pod2 := nstest.NewNS(t, "p")
	res := n.mustAdd(l, pod2, "ctr-2")
	if ip, gw := podIPv4(t, res); !netip.MustParsePrefix(subnetB).Contains(ip.Addr()) || gw.String() != "10.1.42.1" {
		t.Errorf("pod after the change got %s via %s, want an address in %s via 10.1.42.1", ip, gw, subnetB)
	}
	if got := addrs(t, hHost, "cni0"); len(got) != 1 || got[0] != gwB {
		t.Errorf("cni0 has %v, want only %s", got, gwB)
	}
}

// TestBridgeRepairRefusedWhilePodUsesOldSubnet: with a pod still on the old
// subnet, ADD fails and says which pod and what to do; once that pod is
// gone, the same ADD succeeds.
func TestBridgeRepairRefusedWhilePodUsesOldSubnet(t *testing.T) {
	n := newNode(t)
	l := n.conflist("0.3.1")
	n.setSubnet(subnetA)
	pod1 := nstest.NewNS(t, "p")
	ip1, _ := podIPv4(t, n.mustAdd(l, pod1, "ctr-old"))

	n.setSubnet(subnetB)
	pod2 := nstest.NewNS(t, "p")
	_, err := n.add(l, pod2, "ctr-new")
	if err == nil {
		t.Fatal("ADD on the new subnet succeeded while a pod still uses the old one")
	}
	t.Logf("refused as expected: %v", err)
	for _, want := range []string{
		`bridge "cni0"`, gwA, subnetA, subnetB, ip1.Addr().String() + " (container ctr-old, eth0)", "Delete those pods",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	hHost := handle(t, n.ns)
	if got := addrs(t, hHost, "cni0"); len(got) != 1 || got[0] != gwA {
		t.Errorf("refused repair changed cni0: %v, want [%s]", got, gwA)
	}
	if _, err := os.Stat(filepath.Join(n.dataDir, "ctr-new")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("config saved for the refused ADD: %v", err)
	}

	// Do what the message says: the old pod goes (the runtime also DELs
	// the failed one), and the retried ADD succeeds.
	for _, p := range []struct{ ns, id string }{{pod2, "ctr-new"}, {pod1, "ctr-old"}} {
		if err := n.del(l, p.ns, p.id); err != nil {
			t.Fatalf("DEL %s: %v", p.id, err)
		}
	}
	res := n.mustAdd(l, pod2, "ctr-new")
	if ip, _ := podIPv4(t, res); !netip.MustParsePrefix(subnetB).Contains(ip.Addr()) {
		t.Errorf("retried pod got %s, want an address in %s", ip, subnetB)
	}
	if got := addrs(t, hHost, "cni0"); len(got) != 1 || got[0] != gwB {
		t.Errorf("cni0 has %v, want only %s", got, gwB)
	}
}

// TestCheckDelegates: with CNI 1.0.0 the runtime may CHECK; the plugin
// hands it to the bridge plugin, which notices a broken pod.
func TestCheckDelegates(t *testing.T) {
	n := newNode(t)
	n.setSubnet(subnetA)
	l := n.conflist("1.0.0")
	pod := nstest.NewNS(t, "p")
	n.mustAdd(l, pod, "ctr-c")
	if err := n.check(l, pod, "ctr-c"); err != nil {
		t.Fatalf("CHECK of a healthy pod: %v", err)
	}
	h := handle(t, pod)
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	_, dst, _ := net.ParseCIDR(network)
	if err := h.RouteDel(&netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: dst, Gw: net.ParseIP("10.1.17.1")}); err != nil {
		t.Fatalf("break the pod (ip route del %s): %v", network, err)
	}
	if err := n.check(l, pod, "ctr-c"); err == nil {
		t.Error("CHECK passed although the pod lost its route to FLANNEL_NETWORK")
	}
	if err := n.del(l, pod, "ctr-c"); err != nil {
		t.Errorf("DEL: %v", err)
	}
}

// TestRuntimeConfigReachesDelegate: capability arguments the runtime gives
// the flannel entry reach the delegate chain unchanged. host-local's "ips"
// capability makes it visible: the pod gets exactly the requested address.
func TestRuntimeConfigReachesDelegate(t *testing.T) {
	n := newNode(t)
	n.setSubnet(subnetA)
	text := fmt.Sprintf(`{"name":"cbr0","cniVersion":"1.0.0","plugins":[
		{"type":"flannel","capabilities":{"ips":true},"delegate":{"isDefaultGateway":true},
		 "subnetFile":%q,"dataDir":%q,"ipam":{"dataDir":%q}}]}`, n.subnetFile, n.dataDir, n.ipamDir)
	l, err := libcni.ConfListFromBytes([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	pod := nstest.NewNS(t, "p")
	r := rt(pod, "ctr-ips")
	r.CapabilityArgs = map[string]any{"ips": []string{"10.1.17.77/24"}}
	var res types.Result
	if err := netns.Do(n.ns, func() error {
		var err error
		res, err = n.cni.AddNetworkList(context.Background(), l, r)
		return err
	}); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	r100, err := types100.NewResultFromResult(res)
	if err != nil {
		t.Fatal(err)
	}
	if ip, _ := podIPv4(t, r100); ip.String() != "10.1.17.77/24" {
		t.Errorf("pod got %s, want the requested 10.1.17.77/24", ip)
	}
	saved, _ := os.ReadFile(filepath.Join(n.dataDir, "ctr-ips"))
	if !strings.Contains(string(saved), `"runtimeConfig":{"ips":["10.1.17.77/24"]}`) {
		t.Errorf("saved delegate config lacks the runtimeConfig: %s", saved)
	}
	if err := netns.Do(n.ns, func() error { return n.cni.DelNetworkList(context.Background(), l, r) }); err != nil {
		t.Errorf("DEL: %v", err)
	}
}

// TestDelWithoutDelegate: the CNI spec's DEL releases what it can and
// succeeds when the rest is gone. With real plugins on a CNI_PATH the test
// controls: a delegate with a misspelt "type" (ADD fails, and every DEL
// used to fail after it), then the bridge plugin uninstalled after a
// successful ADD (host-local's DEL releases the address), then bridge and
// host-local both gone (the reservation is removed from host-local's
// store directly). The address comes back for the next pod each time.
func TestDelWithoutDelegate(t *testing.T) {
	n := newNode(t)
	n.setSubnet(subnetA)
	bin := t.TempDir()
	link := func(name string) {
		t.Helper()
		if err := os.Symlink(filepath.Join(testbin.CNIDir(t), name), filepath.Join(bin, name)); err != nil {
			t.Fatal(err)
		}
	}
	unlink := func(name string) {
		t.Helper()
		if err := os.Remove(filepath.Join(bin, name)); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range testbin.CNIPlugins {
		link(name)
	}
	n.cni = libcni.NewCNIConfigWithCacheDir([]string{bin}, filepath.Join(t.TempDir(), "cache"), nil)
	l := n.conflist("0.3.1")
	store := filepath.Join(n.ipamDir, "cbr0")
	reserved := func() []string {
		t.Helper()
		rs, err := cni.ReadReservations(store)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range rs {
			out = append(out, r.IP.String()+"="+r.ContainerID)
		}
		return out
	}
	saved := func(id string) bool {
		_, err := os.Stat(filepath.Join(n.dataDir, id))
		return err == nil
	}

	t.Run("bad type", func(t *testing.T) {
		text := fmt.Sprintf(`{"name":"cbr0","cniVersion":"0.3.1","plugins":[
			{"type":"flannel","delegate":{"type":"brigde","isDefaultGateway":true},
			 "subnetFile":%q,"dataDir":%q,"ipam":{"dataDir":%q}}]}`, n.subnetFile, n.dataDir, n.ipamDir)
		bad, err := libcni.ConfListFromBytes([]byte(text))
		if err != nil {
			t.Fatal(err)
		}
		pod := nstest.NewNS(t, "p")
		if _, err := n.add(bad, pod, "ctr-bad"); err == nil || !strings.Contains(err.Error(), "brigde") {
			t.Fatalf("ADD = %v, want an error naming the missing delegate", err)
		}
		for i := range 2 {
			if err := n.del(bad, pod, "ctr-bad"); err != nil {
				t.Fatalf("DEL #%d after the failed ADD: %v", i+1, err)
			}
		}
		if saved("ctr-bad") {
			t.Error("saved delegate config kept after DEL")
		}
		if r := reserved(); len(r) != 0 {
			t.Errorf("reservations %v, want none", r)
		}
	})

	addOne := func(id string) (pod, ip string) {
		t.Helper()
		pod = nstest.NewNS(t, "p")
		res := n.mustAdd(l, pod, id)
		pfx, _ := podIPv4(t, res)
		if r := reserved(); len(r) != 1 || r[0] != pfx.Addr().String()+"="+id {
			t.Fatalf("reservations after ADD %s: %v, want %s=%s", id, r, pfx.Addr(), id)
		}
		return pod, pfx.Addr().String()
	}

	t.Run("bridge uninstalled", func(t *testing.T) {
		pod, ip := addOne("ctr-a")
		unlink("bridge")
		defer link("bridge")
		if err := n.del(l, pod, "ctr-a"); err != nil {
			t.Fatalf("DEL without the bridge plugin: %v", err)
		}
		if r := reserved(); len(r) != 0 {
			t.Errorf("reservations %v after DEL, want %s released through host-local", r, ip)
		}
		if saved("ctr-a") {
			t.Error("saved delegate config kept after DEL")
		}
	})

	t.Run("bridge and host-local uninstalled", func(t *testing.T) {
		pod, ip := addOne("ctr-b")
		unlink("bridge")
		unlink("host-local")
		defer link("bridge")
		defer link("host-local")
		if err := n.del(l, pod, "ctr-b"); err != nil {
			t.Fatalf("DEL without bridge and host-local: %v", err)
		}
		if r := reserved(); len(r) != 0 {
			t.Errorf("reservations %v after DEL, want %s removed from the store", r, ip)
		}
		if saved("ctr-b") {
			t.Error("saved delegate config kept after DEL")
		}
	})

	// The store is consistent for host-local afterwards: the next ADD gets
	// an address and a reservation like any other.
	addOne("ctr-c")
}
