package kubetest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/weftnet/weft/internal/netns"
)

// Options shape a control plane. The zero value runs everything on
// 127.0.0.1 in the test's own namespace with the controller-manager
// allocating /24s out of 10.244.0.0/16, flannel's default Network.
type Options struct {
	// NetNS, when set, is the network namespace the processes run in (via
	// `ip netns exec`), e.g. a lab's underlay; its loopback is brought up.
	NetNS string
	// Addr is the address every process listens on; default 127.0.0.1.
	// With NetNS it must be an address of that namespace that agents can
	// route to (the underlay bridge's, say).
	Addr netip.Addr
	// ClusterCIDR is kube-controller-manager's --cluster-cidr; default
	// 10.244.0.0/16, with --node-cidr-mask-size=24.
	ClusterCIDR netip.Prefix
	// DeferControllerManager leaves kube-controller-manager stopped until
	// StartControllerManager, so that Nodes exist without a podCIDR.
	DeferControllerManager bool
}

// Cluster is a running control plane. It is stopped when the test that
// started it ends.
type Cluster struct {
	opts       Options
	dir        string
	bin        string
	pki        *pki
	apiPort    int
	etcdURL    string
	adminToken string
	adminKC    string // kubeconfig file with the admin token

	mu    sync.Mutex
	procs []*proc // guarded by mu; stopped in reverse order
}

// Start starts a control plane with default Options; see StartWith.
func Start(t testing.TB) *Cluster {
	t.Helper()
	return StartWith(t, Options{})
}

// StartWith starts etcd and kube-apiserver, waits until the apiserver is
// ready (about 3 s), starts kube-controller-manager unless deferred, and
// registers their shutdown with t.Cleanup. It fails the test on error
// and skips it, outside CI, when the binaries are not built (Binaries).
func StartWith(t testing.TB, o Options) *Cluster {
	t.Helper()
	bin := Binaries(t)
	if !o.Addr.IsValid() {
		o.Addr = netip.MustParseAddr("127.0.0.1")
	}
	if !o.ClusterCIDR.IsValid() {
		o.ClusterCIDR = netip.MustParsePrefix("10.244.0.0/16")
	}
	c := &Cluster{opts: o, dir: t.TempDir(), bin: bin}
	t.Cleanup(func() {
		if t.Failed() {
			c.dumpLogs(t)
		}
		c.stopAll(t)
	})
	if o.NetNS != "" {
		if out, err := exec.Command("ip", "-n", o.NetNS, "link", "set", "lo", "up").CombinedOutput(); err != nil {
			t.Fatalf("kubetest: set lo up in netns %s: %v: %s", o.NetNS, err, out)
		}
	}
	var err error
	if c.pki, err = newPKI(c.dir, o.Addr); err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	c.adminToken = randomToken()
	tokens := filepath.Join(c.dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(c.adminToken+`,admin,admin-uid,"system:masters"`+"\n"), 0o600); err != nil {
		t.Fatalf("kubetest: %v", err)
	}

	// A free port can be taken by someone else before our process binds
	// it; start again on new ports when that happens.
	for attempt := 1; ; attempt++ {
		err := c.startCore(t, tokens)
		if err == nil {
			break
		}
		if attempt == 3 || !errors.Is(err, errPortTaken) {
			t.Fatalf("kubetest: %v", err)
		}
		t.Logf("kubetest: %v; trying other ports", err)
	}
	c.adminKC = c.Kubeconfig(t, c.adminToken)
	if !o.DeferControllerManager {
		c.StartControllerManager(t)
	}
	return c
}

var errPortTaken = errors.New("port taken")

// startCore starts etcd and kube-apiserver on fresh ports and waits for
// both; on failure it stops what it started.
func (c *Cluster) startCore(t testing.TB, tokens string) (err error) {
	ports, err := c.freePorts(3)
	if err != nil {
		return err
	}
	addr := c.opts.Addr.String()
	hp := func(port int) string { return net.JoinHostPort(addr, strconv.Itoa(port)) }
	c.etcdURL = "http://" + hp(ports[0])
	peerURL := "http://" + hp(ports[1])
	c.apiPort = ports[2]
	n := len(c.procs)
	defer func() {
		if err != nil {
			c.stopFrom(t, n)
		}
	}()

	etcd, err := c.spawn("etcd",
		"--name=kt", "--data-dir="+filepath.Join(c.dir, "etcd"),
		"--listen-client-urls="+c.etcdURL, "--advertise-client-urls="+c.etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=kt="+peerURL,
		"--unsafe-no-fsync", "--quota-backend-bytes=1073741824", "--log-level=warn",
	)
	if err != nil {
		return err
	}
	httpc := c.httpClient(nil)
	if err := c.waitReady(etcd, 30*time.Second, func() error {
		return httpGet(httpc, c.etcdURL+"/health", "")
	}); err != nil {
		return err
	}

	api, err := c.spawn("kube-apiserver",
		"--etcd-servers="+c.etcdURL,
		"--bind-address="+addr, "--advertise-address="+addr,
		"--secure-port="+strconv.Itoa(c.apiPort),
		// The default reconciler refuses a loopback advertise address,
		// and no Service is ever used here.
		"--endpoint-reconciler-type=none",
		"--cert-dir="+filepath.Join(c.dir, "certs"),
		"--tls-cert-file="+c.pki.serverCert, "--tls-private-key-file="+c.pki.serverKey,
		"--client-ca-file="+c.pki.caFile,
		"--token-auth-file="+tokens,
		"--authorization-mode=Node,RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+c.pki.saPub,
		"--service-account-signing-key-file="+c.pki.saKey,
		"--service-cluster-ip-range=10.96.0.0/12",
	)
	if err != nil {
		return err
	}
	tlsc := c.httpClient(c.pki.caPEM)
	return c.waitReady(api, 60*time.Second, func() error {
		return httpGet(tlsc, c.URL()+"/readyz", c.adminToken)
	})
}

// StartControllerManager starts kube-controller-manager with only the
// node IPAM controller, as seed 001 configures it for flannel:
// --allocate-node-cidrs=true --cluster-cidr=<ClusterCIDR>. It has no
// readiness signal; wait for a Node's podCIDR instead (WaitPodCIDR).
func (c *Cluster) StartControllerManager(t testing.TB) {
	t.Helper()
	_, err := c.spawn("kube-controller-manager",
		"--kubeconfig="+c.adminKC,
		"--authentication-kubeconfig="+c.adminKC, "--authorization-kubeconfig="+c.adminKC,
		"--controllers=node-ipam-controller",
		"--allocate-node-cidrs=true", "--cluster-cidr="+c.opts.ClusterCIDR.String(), "--node-cidr-mask-size=24",
		"--service-cluster-ip-range=10.96.0.0/12",
		"--leader-elect=false", "--bind-address="+c.opts.Addr.String(), "--secure-port=0",
	)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
}

// URL is the apiserver's base URL.
func (c *Cluster) URL() string {
	return "https://" + net.JoinHostPort(c.opts.Addr.String(), strconv.Itoa(c.apiPort))
}

// CAFile is the PEM file of the CA that signed the apiserver's certificate.
func (c *Cluster) CAFile() string { return c.pki.caFile }

// Dir is the cluster's directory: logs (<program>.log), keys, kubeconfigs.
func (c *Cluster) Dir() string { return c.dir }

// AdminConfig is a client config with the admin (system:masters) token,
// for the test's own setup and checks; never hand it to the code under
// test. With NetNS its connections are opened inside that namespace.
func (c *Cluster) AdminConfig() *rest.Config {
	return c.TokenConfig(c.adminToken)
}

// TokenConfig is a client config that authenticates with token, dialing
// like AdminConfig.
func (c *Cluster) TokenConfig(token string) *rest.Config {
	cfg := &rest.Config{
		Host:            c.URL(),
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.pki.caPEM},
		QPS:             100,
		Burst:           200,
		UserAgent:       "weft-kubetest",
	}
	if ns := c.opts.NetNS; ns != "" {
		cfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			return nsDial(ctx, ns, network, addr)
		}
	}
	return cfg
}

// Admin is a clientset on AdminConfig.
func (c *Cluster) Admin(t testing.TB) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(c.AdminConfig())
	if err != nil {
		t.Fatalf("kubetest: admin client: %v", err)
	}
	return cs
}

// Kubeconfig writes a kubeconfig file for the apiserver that
// authenticates with token and returns its path. It holds the server URL
// and the CA file only, so it works for any process that can route to
// Options.Addr (agents in lab namespaces with NetNS; anything in the
// test's namespace without).
func (c *Cluster) Kubeconfig(t testing.TB, token string) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kt"] = &clientcmdapi.Cluster{Server: c.URL(), CertificateAuthority: c.pki.caFile}
	cfg.AuthInfos["kt"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["kt"] = &clientcmdapi.Context{Cluster: "kt", AuthInfo: "kt"}
	cfg.CurrentContext = "kt"
	f, err := os.CreateTemp(c.dir, "kubeconfig-*")
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	f.Close()
	if err := clientcmd.WriteToFile(*cfg, f.Name()); err != nil {
		t.Fatalf("kubetest: write kubeconfig: %v", err)
	}
	return f.Name()
}

// CreateNode creates a Node object the way a kubelet registers one (but
// with no kubelet behind it), with the given annotations, and returns it.
func (c *Cluster) CreateNode(t testing.TB, name string, annotations map[string]string) *corev1.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := c.Admin(t).CoreV1().Nodes().Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Labels:      map[string]string{"kubernetes.io/os": "linux", "kubernetes.io/hostname": name},
			Annotations: annotations,
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubetest: create node %s: %v", name, err)
	}
	return n
}

// WaitPodCIDR waits up to timeout for the controller-manager to give
// Node name a podCIDR and returns it.
func (c *Cluster) WaitPodCIDR(t testing.TB, name string, timeout time.Duration) netip.Prefix {
	t.Helper()
	cs := c.Admin(t)
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		cancel()
		if err == nil && n.Spec.PodCIDR != "" {
			p, perr := netip.ParsePrefix(n.Spec.PodCIDR)
			if perr != nil {
				t.Fatalf("kubetest: node %s podCIDR %q: %v", name, n.Spec.PodCIDR, perr)
			}
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("kubetest: node %s got no podCIDR within %v (last error: %v)", name, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// proc is one started process.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when the process exited
	err  error         // exit status; valid after done
}

// spawn starts program name from the binaries directory, inside NetNS
// when set, with output to <dir>/<name>.log.
func (c *Cluster) spawn(name string, args ...string) (*proc, error) {
	logPath := filepath.Join(c.dir, name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log for %s: %w", name, err)
	}
	defer logf.Close()
	argv := append([]string{filepath.Join(c.bin, name)}, args...)
	if c.opts.NetNS != "" {
		// ip execs the program, so the pid recorded is the program's.
		argv = append([]string{"ip", "netns", "exec", c.opts.NetNS}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = c.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true,
		// If the test binary dies without cleaning up (timeout, kill),
		// the control plane goes with it.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	return p, nil
}

// waitReady polls ready until it succeeds, the process exits or timeout
// passes. An exit caused by a port in use wraps errPortTaken.
func (c *Cluster) waitReady(p *proc, timeout time.Duration, ready func() error) error {
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			out, _ := os.ReadFile(p.log)
			if strings.Contains(string(out), "address already in use") {
				return fmt.Errorf("%s exited: %w", p.name, errPortTaken)
			}
			return fmt.Errorf("%s exited (%v) before it was ready; last log lines:\n%s", p.name, p.err, tail(string(out), 30))
		default:
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(p.log)
			return fmt.Errorf("%s not ready within %v: %v; last log lines:\n%s", p.name, timeout, err, tail(string(out), 30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stopAll stops every process, newest first.
func (c *Cluster) stopAll(t testing.TB) { c.stopFrom(t, 0) }

// stopFrom stops the processes started from index i on: SIGTERM to the
// recorded pid, SIGKILL after 10 s.
func (c *Cluster) stopFrom(t testing.TB, i int) {
	c.mu.Lock()
	stop := append([]*proc(nil), c.procs[i:]...)
	c.procs = c.procs[:i]
	c.mu.Unlock()
	for j := len(stop) - 1; j >= 0; j-- {
		p := stop[j]
		select {
		case <-p.done:
			continue
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Logf("kubetest: %s (pid %d) ignored SIGTERM; killing it", p.name, p.cmd.Process.Pid)
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
}

// dumpLogs logs the end of every process's log, for failed tests.
func (c *Cluster) dumpLogs(t testing.TB) {
	c.mu.Lock()
	procs := append([]*proc(nil), c.procs...)
	c.mu.Unlock()
	for _, p := range procs {
		out, err := os.ReadFile(p.log)
		if err != nil {
			continue
		}
		t.Logf("--- last lines of %s (%s) ---\n%s", p.name, p.log, tail(string(out), 40))
	}
}

// freePorts finds n distinct free TCP ports on Addr, inside NetNS when
// set, by binding them all at once and releasing them.
func (c *Cluster) freePorts(n int) ([]int, error) {
	var ports []int
	find := func() error {
		var ls []net.Listener
		defer func() {
			for _, l := range ls {
				l.Close()
			}
		}()
		for range n {
			l, err := net.Listen("tcp", net.JoinHostPort(c.opts.Addr.String(), "0"))
			if err != nil {
				return fmt.Errorf("find a free port on %s: %w", c.opts.Addr, err)
			}
			ls = append(ls, l)
			ports = append(ports, l.Addr().(*net.TCPAddr).Port)
		}
		return nil
	}
	if c.opts.NetNS == "" {
		return ports, find()
	}
	return ports, netns.Do(c.opts.NetNS, find)
}

// httpClient returns a client for readiness probes, trusting ca when
// given and dialing inside NetNS when set.
func (c *Cluster) httpClient(ca []byte) *http.Client {
	tr := &http.Transport{DisableKeepAlives: true}
	if ca != nil {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	if ns := c.opts.NetNS; ns != "" {
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			return nsDial(ctx, ns, network, addr)
		}
	}
	return &http.Client{Transport: tr, Timeout: 2 * time.Second}
}

func httpGet(c *http.Client, url, token string) error {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// nsDial opens a connection from inside network namespace ns; the socket
// stays in that namespace, so the connection can be used from anywhere.
func nsDial(ctx context.Context, ns, network, addr string) (net.Conn, error) {
	var conn net.Conn
	err := netns.Do(ns, func() error {
		var d net.Dialer
		var err error
		conn, err = d.DialContext(ctx, network, addr)
		return err
	})
	return conn, err
}

func randomToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
