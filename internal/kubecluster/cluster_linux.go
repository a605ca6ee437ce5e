package kubecluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
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
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/weftnet/weft/internal/netns"
)

// Options shape a control plane.
type Options struct {
	// BinDir holds the Programs (see Locate). Required.
	BinDir string
	// Dir receives every file of the cluster; created if missing. Required.
	Dir string
	// NetNS, when set, is the network namespace the processes run in (via
	// `ip netns exec`), e.g. a lab's underlay; its loopback is brought up.
	NetNS string
	// Addr is the address every process listens on; default 127.0.0.1.
	// With NetNS it must be an address of that namespace that clients
	// elsewhere can route to.
	Addr netip.Addr
	// ClusterCIDR is kube-controller-manager's --cluster-cidr; default
	// 10.244.0.0/16, flannel's default Network. An IPv6 one alone makes
	// an IPv6-only cluster.
	ClusterCIDR netip.Prefix
	// NodeCIDRMaskSize is --node-cidr-mask-size; default 24 (64 for an
	// IPv6 ClusterCIDR).
	NodeCIDRMaskSize int
	// ClusterCIDRv6, when set, makes the cluster dual-stack:
	// --cluster-cidr=<ClusterCIDR>,<ClusterCIDRv6> with
	// --node-cidr-mask-size-ipv6=<NodeCIDRMaskSizeIPv6> (default 64), so
	// that every Node gets one podCIDR of each family.
	ClusterCIDRv6        netip.Prefix
	NodeCIDRMaskSizeIPv6 int
	// Ports are fixed ports to listen on; zero ports are chosen free (and
	// chosen again should another process take one first).
	Ports Ports
	// Users get a token each from the apiserver's token file besides the
	// admin's (UserToken), so that kubelets, kube-proxy and the scheduler
	// act as themselves: system:node:<name> in system:nodes (the Node
	// authorizer), system:kube-proxy, system:kube-scheduler.
	Users []User
	// Controllers are kube-controller-manager's --controllers; default
	// node-ipam-controller alone. A cluster with kubelets (make
	// test-cluster) needs the ones behind DaemonSets, Deployments,
	// ServiceAccounts and the kube-root-ca.crt ConfigMap too.
	Controllers []string
	// DeferControllerManager leaves kube-controller-manager stopped until
	// StartControllerManager, so that Nodes exist without a podCIDR.
	DeferControllerManager bool
	// Detach starts the processes in their own session so that they
	// outlive this process (a lab left running by `weft lab up`); the
	// owner stops them by their pids. Otherwise they are killed when this
	// process dies.
	Detach bool
	// AuditNodeStatus has the apiserver log every PATCH of nodes/status
	// with its request body to AuditLog(), so that what agents write can
	// be compared byte for byte.
	AuditNodeStatus bool
	// Log receives progress details; nil discards them.
	Log *slog.Logger
}

// User is an identity the token file knows.
type User struct {
	Name   string
	Groups []string
}

// Ports are the TCP ports of the control plane; zero means any free one.
type Ports struct {
	EtcdClient, EtcdPeer, APIServer int
}

// Cluster is a running control plane.
type Cluster struct {
	opts       Options
	pki        *pki
	apiPort    int
	etcdURL    string
	adminToken string
	adminKC    string
	userTokens map[string]string
	log        *slog.Logger

	mu    sync.Mutex
	procs []*proc // guarded by mu; stopped in reverse order
}

// Start starts etcd and kube-apiserver, waits until the apiserver is ready
// (about 3 s), and starts kube-controller-manager unless deferred. On error
// it stops what it started.
func Start(ctx context.Context, o Options) (_ *Cluster, err error) {
	if o.BinDir == "" || o.Dir == "" {
		return nil, errors.New("start the Kubernetes control plane: BinDir and Dir are required")
	}
	if missing := Missing(o.BinDir); len(missing) > 0 {
		return nil, fmt.Errorf("%w: %s lacks %s; run `%s`", ErrNotBuilt, o.BinDir, strings.Join(missing, ", "), BuildCommand)
	}
	if !o.Addr.IsValid() {
		o.Addr = netip.MustParseAddr("127.0.0.1")
	}
	if !o.ClusterCIDR.IsValid() {
		o.ClusterCIDR = netip.MustParsePrefix("10.244.0.0/16")
	}
	if o.NodeCIDRMaskSize == 0 {
		o.NodeCIDRMaskSize = 24
		if o.ClusterCIDR.Addr().Is6() {
			o.NodeCIDRMaskSize = 64
		}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("create the control plane's directory: %w", err)
	}
	c := &Cluster{opts: o, log: o.Log}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	if o.NetNS != "" {
		if out, err := exec.Command("ip", "-n", o.NetNS, "link", "set", "lo", "up").CombinedOutput(); err != nil {
			return nil, fmt.Errorf("set lo up in netns %s: %w: %s", o.NetNS, err, out)
		}
	}
	if c.pki, err = newPKI(o.Dir, o.Addr); err != nil {
		return nil, err
	}
	c.adminToken = randomToken()
	tokens := filepath.Join(o.Dir, "tokens.csv")
	lines := c.adminToken + `,admin,admin-uid,"system:masters"` + "\n"
	c.userTokens = map[string]string{}
	for _, u := range o.Users {
		if u.Name == "" || strings.ContainsAny(u.Name, ",\"\n") {
			return nil, fmt.Errorf("user %q: want a name without commas, quotes or newlines", u.Name)
		}
		tok := randomToken()
		c.userTokens[u.Name] = tok
		line := fmt.Sprintf("%s,%s,%s-uid", tok, u.Name, u.Name)
		if len(u.Groups) > 0 {
			line += fmt.Sprintf(",%q", strings.Join(u.Groups, ","))
		}
		lines += line + "\n"
	}
	if err := os.WriteFile(tokens, []byte(lines), 0o600); err != nil {
		return nil, fmt.Errorf("write the token file: %w", err)
	}
	var audit []string
	if o.AuditNodeStatus {
		policy := filepath.Join(o.Dir, "audit-policy.yaml")
		if err := os.WriteFile(policy, []byte(auditPolicy), 0o644); err != nil {
			return nil, fmt.Errorf("write the audit policy: %w", err)
		}
		audit = []string{"--audit-policy-file=" + policy, "--audit-log-path=" + c.AuditLog(), "--audit-log-format=json", "--audit-log-mode=blocking"}
	}

	// A free port can be taken by someone else before our process binds
	// it; start again on new ports when that happens.
	for attempt := 1; ; attempt++ {
		err := c.startCore(ctx, tokens, audit)
		if err == nil {
			break
		}
		if attempt == 3 || !errors.Is(err, errPortTaken) || o.Ports != (Ports{}) {
			return nil, err
		}
		c.log.Debug("port taken; trying other ports", "err", err)
	}
	c.adminKC = filepath.Join(o.Dir, "admin.kubeconfig")
	if err := c.WriteKubeconfig(c.adminKC, c.adminToken); err != nil {
		return nil, err
	}
	if !o.DeferControllerManager {
		if err := c.StartControllerManager(); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// auditPolicy records the body of every nodes/status patch (flannel's and
// weft's only write) and nothing else.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Request
  verbs: ["patch"]
  resources:
  - group: ""
    resources: ["nodes/status"]
- level: None
`

var errPortTaken = errors.New("port taken")

// serviceRange is --service-cluster-ip-range, of Addr's family: the
// apiserver refuses a service range of another family than its
// advertise address.
func (c *Cluster) serviceRange() netip.Prefix { return serviceRange(c.opts.Addr) }

// startCore starts etcd and kube-apiserver and waits for both; on failure
// it stops what it started.
func (c *Cluster) startCore(ctx context.Context, tokens string, audit []string) (err error) {
	ports, err := c.ports()
	if err != nil {
		return err
	}
	addr := c.opts.Addr.String()
	hp := func(port int) string { return net.JoinHostPort(addr, strconv.Itoa(port)) }
	c.etcdURL = "http://" + hp(ports.EtcdClient)
	peerURL := "http://" + hp(ports.EtcdPeer)
	c.apiPort = ports.APIServer
	c.mu.Lock()
	n := len(c.procs)
	c.mu.Unlock()
	defer func() {
		if err != nil {
			c.stopFrom(n)
		}
	}()

	t0 := time.Now()
	etcd, err := c.spawn("etcd",
		"--name=kc", "--data-dir="+filepath.Join(c.opts.Dir, "etcd"),
		"--listen-client-urls="+c.etcdURL, "--advertise-client-urls="+c.etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=kc="+peerURL,
		"--unsafe-no-fsync", "--quota-backend-bytes=1073741824", "--log-level=warn",
	)
	if err != nil {
		return err
	}
	httpc := c.httpClient(nil)
	if err := waitReady(ctx, etcd, 30*time.Second, func() error {
		return httpGet(httpc, c.etcdURL+"/health", "")
	}); err != nil {
		return err
	}
	c.log.Debug("etcd ready", "url", c.etcdURL, "after", time.Since(t0).Round(time.Millisecond))

	api, err := c.spawn("kube-apiserver", append([]string{
		"--etcd-servers=" + c.etcdURL,
		"--bind-address=" + addr, "--advertise-address=" + addr,
		"--secure-port=" + strconv.Itoa(c.apiPort),
		// The default reconciler refuses a loopback advertise address,
		// and no Service is ever used here.
		"--endpoint-reconciler-type=none",
		"--cert-dir=" + filepath.Join(c.opts.Dir, "certs"),
		"--tls-cert-file=" + c.pki.serverCert, "--tls-private-key-file=" + c.pki.serverKey,
		"--client-ca-file=" + c.pki.caFile,
		"--token-auth-file=" + tokens,
		"--authorization-mode=Node,RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + c.pki.saPub,
		"--service-account-signing-key-file=" + c.pki.saKey,
		"--service-cluster-ip-range=" + c.serviceRange().String(),
		// Stop within ~2 s of SIGTERM instead of waiting 60 s for the
		// agents' and the controller-manager's watches to end.
		"--shutdown-send-retry-after=true",
	}, audit...)...)
	if err != nil {
		return err
	}
	tlsc := c.httpClient(c.pki.caPEM)
	if err := waitReady(ctx, api, 60*time.Second, func() error {
		return httpGet(tlsc, c.URL()+"/readyz", c.adminToken)
	}); err != nil {
		return err
	}
	c.log.Debug("kube-apiserver ready", "url", c.URL(), "after", time.Since(t0).Round(time.Millisecond))
	return nil
}

// ports returns the fixed ports, or distinct free ones on Addr found by
// binding them all at once (inside NetNS when set) and releasing them.
func (c *Cluster) ports() (Ports, error) {
	if c.opts.Ports != (Ports{}) {
		p := c.opts.Ports
		if p.EtcdClient == 0 || p.EtcdPeer == 0 || p.APIServer == 0 {
			return p, fmt.Errorf("fixed ports %+v: all three or none", p)
		}
		return p, nil
	}
	var got []int
	find := func() error {
		var ls []net.Listener
		defer func() {
			for _, l := range ls {
				l.Close()
			}
		}()
		for range 3 {
			l, err := net.Listen("tcp", net.JoinHostPort(c.opts.Addr.String(), "0"))
			if err != nil {
				return fmt.Errorf("find a free port on %s: %w", c.opts.Addr, err)
			}
			ls = append(ls, l)
			got = append(got, l.Addr().(*net.TCPAddr).Port)
		}
		return nil
	}
	var err error
	if c.opts.NetNS == "" {
		err = find()
	} else {
		err = netns.Do(c.opts.NetNS, find)
	}
	if err != nil {
		return Ports{}, err
	}
	return Ports{EtcdClient: got[0], EtcdPeer: got[1], APIServer: got[2]}, nil
}

// StartControllerManager starts kube-controller-manager with only the node
// IPAM controller, as seed 001 configures it for flannel:
// --allocate-node-cidrs=true --cluster-cidr=<ClusterCIDR>. It has no
// readiness signal; wait for a Node's podCIDR instead (WaitPodCIDR).
func (c *Cluster) StartControllerManager() error {
	return c.StartControllerManagerWith(c.opts.Controllers)
}

// StartControllerManagerWith starts kube-controller-manager with these
// --controllers instead of Options.Controllers (empty: node-ipam-controller
// alone), e.g. everything but node-ipam-controller, so that a new Node
// gets no podCIDR while DaemonSets still run.
func (c *Cluster) StartControllerManagerWith(controllerList []string) error {
	if p := c.running("kube-controller-manager"); p != nil {
		return fmt.Errorf("kube-controller-manager is already running (pid %d)", p.cmd.Process.Pid)
	}
	controllers := "node-ipam-controller"
	if len(controllerList) > 0 {
		controllers = strings.Join(controllerList, ",")
	}
	cidrs := []string{"--cluster-cidr=" + c.opts.ClusterCIDR.String(), "--node-cidr-mask-size=" + strconv.Itoa(c.opts.NodeCIDRMaskSize)}
	if v6 := c.opts.ClusterCIDRv6; v6.IsValid() {
		mask6 := c.opts.NodeCIDRMaskSizeIPv6
		if mask6 == 0 {
			mask6 = 64
		}
		// Dual-stack takes the per-family mask flags only.
		cidrs = []string{"--cluster-cidr=" + c.opts.ClusterCIDR.String() + "," + v6.String(),
			"--node-cidr-mask-size-ipv4=" + strconv.Itoa(c.opts.NodeCIDRMaskSize), "--node-cidr-mask-size-ipv6=" + strconv.Itoa(mask6)}
	}
	args := append([]string{
		"--kubeconfig=" + c.adminKC,
		"--authentication-kubeconfig=" + c.adminKC, "--authorization-kubeconfig=" + c.adminKC,
		"--controllers=" + controllers,
		// What root-ca-certificate-publisher-controller puts into every
		// namespace's kube-root-ca.crt, which pods' projected
		// ServiceAccount volumes mount.
		"--root-ca-file=" + c.pki.caFile,
		"--allocate-node-cidrs=true",
	}, cidrs...)
	args = append(args,
		"--service-cluster-ip-range="+c.serviceRange().String(),
		"--leader-elect=false", "--bind-address="+c.opts.Addr.String(), "--secure-port=0",
	)
	_, err := c.spawn("kube-controller-manager", args...)
	return err
}

// StopControllerManager stops kube-controller-manager, so that Nodes
// created from now on get no podCIDR until it is started again.
func (c *Cluster) StopControllerManager() error {
	p := c.running("kube-controller-manager")
	if p == nil {
		return errors.New("kube-controller-manager is not running")
	}
	return p.stop()
}

// running returns the newest live process of that name.
func (c *Cluster) running(name string) *proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.procs) - 1; i >= 0; i-- {
		p := c.procs[i]
		if p.name != name {
			continue
		}
		select {
		case <-p.done:
		default:
			return p
		}
	}
	return nil
}

// UserToken is the token of Options.Users' user name.
func (c *Cluster) UserToken(name string) (string, bool) {
	t, ok := c.userTokens[name]
	return t, ok
}

// URL is the apiserver's base URL.
func (c *Cluster) URL() string {
	return "https://" + net.JoinHostPort(c.opts.Addr.String(), strconv.Itoa(c.apiPort))
}

// EtcdURL is the client URL of the control plane's etcd.
func (c *Cluster) EtcdURL() string { return c.etcdURL }

// CAFile is the PEM file of the CA that signed the apiserver's certificate.
func (c *Cluster) CAFile() string { return c.pki.caFile }

// Dir is the cluster's directory: logs (<program>.log), keys, kubeconfigs.
func (c *Cluster) Dir() string { return c.opts.Dir }

// AuditLog is the apiserver's audit log (JSON lines), written when
// Options.AuditNodeStatus is set.
func (c *Cluster) AuditLog() string { return filepath.Join(c.opts.Dir, "audit.log") }

// AdminKubeconfig is a kubeconfig file with the admin token.
func (c *Cluster) AdminKubeconfig() string { return c.adminKC }

// AdminConfig is a client config with the admin (system:masters) token,
// for setup and checks; never hand it to the code under test. With NetNS
// its connections are opened inside that namespace.
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
		UserAgent:       "weft-kubecluster",
	}
	if ns := c.opts.NetNS; ns != "" {
		cfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			return nsDial(ctx, ns, network, addr)
		}
	}
	return cfg
}

// Admin is a clientset on AdminConfig.
func (c *Cluster) Admin() (kubernetes.Interface, error) {
	cs, err := kubernetes.NewForConfig(c.AdminConfig())
	if err != nil {
		return nil, fmt.Errorf("admin client for %s: %w", c.URL(), err)
	}
	return cs, nil
}

// Stop stops every process, newest first: SIGTERM to its pid, SIGKILL
// after 10 s.
func (c *Cluster) Stop() { c.stopFrom(0) }

func (c *Cluster) stopFrom(i int) {
	c.mu.Lock()
	stop := append([]*proc(nil), c.procs[i:]...)
	c.procs = c.procs[:i]
	c.mu.Unlock()
	for j := len(stop) - 1; j >= 0; j-- {
		if err := stop[j].stop(); err != nil {
			c.log.Warn("stop control plane process", "err", err)
		}
	}
}

// Wait returns once every process started has exited (stopped by Stop or
// by someone else through its pid).
func (c *Cluster) Wait(ctx context.Context) error {
	c.mu.Lock()
	procs := append([]*proc(nil), c.procs...)
	c.mu.Unlock()
	for _, p := range procs {
		select {
		case <-p.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// LogTails returns the last n lines of every process's log, for reports
// of failures.
func (c *Cluster) LogTails(n int) string {
	c.mu.Lock()
	procs := append([]*proc(nil), c.procs...)
	c.mu.Unlock()
	var b strings.Builder
	for _, p := range procs {
		out, err := os.ReadFile(p.log)
		if err != nil {
			continue
		}
		fmt.Fprintf(&b, "--- last lines of %s (%s) ---\n%s\n", p.name, p.log, tail(string(out), n))
	}
	return b.String()
}

// proc is one started process.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when the process exited
	err  error         // exit status; valid after done
}

// stop sends SIGTERM and waits, then SIGKILL after 10 s.
func (p *proc) stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("%s (pid %d) ignored SIGTERM for 10 s; killed it", p.name, p.cmd.Process.Pid)
}

// spawn starts program name from BinDir, inside NetNS when set, with
// output appended to <Dir>/<name>.log and its pid and start time in
// <Dir>/<name>.pid.
func (c *Cluster) spawn(name string, args ...string) (*proc, error) {
	logPath := filepath.Join(c.opts.Dir, name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log for %s: %w", name, err)
	}
	defer logf.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	defer devnull.Close()
	argv := append([]string{filepath.Join(c.opts.BinDir, name)}, args...)
	if c.opts.NetNS != "" {
		// ip execs the program, so the pid recorded is the program's.
		argv = append([]string{"ip", "netns", "exec", c.opts.NetNS}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = c.opts.Dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, logf, logf
	if c.opts.Detach {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	} else {
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Setpgid: true,
			// If this process dies without cleaning up (a test's
			// timeout, a kill), the control plane goes with it.
			Pdeathsig: syscall.SIGKILL,
		}
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
	if err := writePIDFile(filepath.Join(c.opts.Dir, name+".pid"), cmd.Process.Pid); err != nil {
		c.log.Warn("record pid", "program", name, "err", err)
	}
	c.log.Debug("started", "program", name, "pid", cmd.Process.Pid, "log", logPath)
	return p, nil
}

// writePIDFile records "<pid> <start time in clock ticks>", the format the
// lab uses to tell its processes from unrelated ones that reused a pid.
func writePIDFile(path string, pid int) error {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f)+2)
	}
	return os.WriteFile(path, fmt.Appendf(nil, "%d %s\n", pid, f[19]), 0o644)
}

// waitReady polls ready until it succeeds, the process exits, ctx ends or
// timeout passes. An exit caused by a port in use wraps errPortTaken.
func waitReady(ctx context.Context, p *proc, timeout time.Duration, ready func() error) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
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
			return fmt.Errorf("%s exited (%v) before it was ready; last lines of %s:\n%s", p.name, p.err, p.log, tail(string(out), 30))
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", p.name, ctx.Err())
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(p.log)
			return fmt.Errorf("%s not ready within %v: %v; last lines of %s:\n%s", p.name, timeout, err, p.log, tail(string(out), 30))
		}
	}
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
	_, _ = io.Copy(io.Discard, resp.Body)
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
