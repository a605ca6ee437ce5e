package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/backend/backends"
	"github.com/weftnet/weft/internal/embedetcd"
	"github.com/weftnet/weft/internal/embedetcd/etcdtest"
	"github.com/weftnet/weft/internal/health"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/metrics"
	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/internal/options"
	etcdstore "github.com/weftnet/weft/internal/store/etcd"
	"github.com/weftnet/weft/internal/store/storetest"
)

// These tests run the agent's lifecycle against a real (embedded) etcd with
// a recording backend in place of the kernel, so they need no root. The
// kernel side is covered by the backends' own tests and test/integration.

// recorder is a backend that remembers what it was asked to program.
type recorder struct {
	mu      sync.Mutex // guards the fields below
	started lease.Lease
	applied [][]lease.Lease
	gate    chan struct{} // when set, Apply waits for it to close
	// entered, when set, is closed as the first Apply begins.
	entered   chan struct{}
	enterOnce sync.Once
}

func (r *recorder) LeaseAttrs() (string, json.RawMessage) { return "host-gw", nil }
func (r *recorder) MTU() int                              { return 1450 }
func (r *recorder) Start(_ context.Context, own lease.Lease) error {
	r.mu.Lock()
	r.started = own
	r.mu.Unlock()
	return nil
}
func (r *recorder) Apply(_ context.Context, ls []lease.Lease) error {
	if r.entered != nil {
		r.enterOnce.Do(func() { close(r.entered) })
	}
	if r.gate != nil {
		<-r.gate
	}
	r.mu.Lock()
	r.applied = append(r.applied, ls)
	r.mu.Unlock()
	return nil
}
func (r *recorder) Run(ctx context.Context) error { <-ctx.Done(); return nil }

// last returns the subnets of the newest applied snapshot.
func (r *recorder) last() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.applied) == 0 {
		return nil
	}
	var out []string
	for _, l := range r.applied[len(r.applied)-1] {
		out = append(out, l.Subnet.String())
	}
	return out
}

// syncBuffer is a log sink safe for the agent's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

type fixture struct {
	opts    options.Options
	rec     *recorder
	health  *health.Status
	logs    *syncBuffer
	cli     *clientv3.Client
	done    chan error
	cancel  context.CancelFunc
	srv     *embedetcd.Server
	metrics *metrics.Metrics
}

func start(t *testing.T, prefix, subnetEnv string) *fixture {
	t.Helper()
	return startWith(t, prefix, subnetEnv, nil)
}

func startWith(t *testing.T, prefix, subnetEnv string, mod func(*Deps)) *fixture {
	t.Helper()
	srv := etcdtest.StartForTest(t)
	opts := options.Defaults()
	opts.StateDir = t.TempDir() // never the host's /var/lib/weft
	opts.EtcdEndpoints = srv.Endpoint()
	opts.EtcdPrefix = prefix
	opts.SubnetFile = filepath.Join(t.TempDir(), "flannel", "subnet.env")
	if subnetEnv != "" {
		if err := os.MkdirAll(filepath.Dir(opts.SubnetFile), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(opts.SubnetFile, []byte(subnetEnv), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f := &fixture{opts: opts, rec: &recorder{}, health: &health.Status{}, logs: &syncBuffer{}, done: make(chan error, 1)}
	log := slog.New(slog.NewTextHandler(f.logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	st, err := etcdstore.New(ctx, etcdstore.Options{Endpoints: []string{srv.Endpoint()}, Prefix: prefix, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	f.cli, err = clientv3.New(clientv3.Config{Endpoints: []string{srv.Endpoint()}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	deps := Deps{
		Store:           st,
		Backends:        map[string]backend.Factory{"host-gw": func(backend.Config) (backend.Backend, error) { return f.rec, nil }},
		SelectInterface: testInterface,
		Health:          f.health,
		Log:             log,
	}
	f.srv = srv
	f.metrics = metrics.New()
	deps.Metrics = f.metrics
	if mod != nil {
		mod(&deps)
	}
	a := New(opts, deps)
	go func() { f.done <- a.Run(ctx) }()
	t.Cleanup(func() {
		awaitStop(t, cancel, f.done)
		f.cli.Close()
		st.Close()
	})
	return f
}

// testInterface is every test host's external interface.
func testInterface(*options.Options) (backend.ExternalInterface, error) {
	ip := netip.MustParseAddr("10.4.7.21")
	return backend.ExternalInterface{Name: "eth0", Index: 2, MTU: 1500, Addr: ip, PublicIP: ip}, nil
}

// awaitStop cancels an agent and waits for Run to return.
func awaitStop(t *testing.T, cancel context.CancelFunc, done <-chan error) {
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Error("agent did not stop within 10s of cancel")
	}
}

func (f *fixture) put(t *testing.T, key, val string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := f.cli.Put(ctx, key, val); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) readyz(t *testing.T) int {
	rr := httptest.NewRecorder()
	f.health.Handler().ServeHTTP(rr, httptest.NewRequest("GET", "/readyz", nil))
	return rr.Code
}

// The seed's flow: no config yet, so the agent waits and says how to
// create one; once it exists the agent leases the subnet the operator wrote
// into subnet.env beforehand, rewrites the file in flannel's exact format
// and becomes ready.
func TestWaitsForConfigThenLeasesAndWritesSubnetEnv(t *testing.T) {
	f := start(t, "/atomic.io/network", "FLANNEL_NETWORK=172.7.0.0/16\nFLANNEL_SUBNET=172.7.21.1/24\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=false\n")

	nstest.Eventually(t, 5*time.Second, func() error {
		if !strings.Contains(f.logs.String(), `etcdctl put /atomic.io/network/config '{\"Network\"`) {
			return fmt.Errorf("no etcdctl hint logged yet:\n%s", f.logs.String())
		}
		return nil
	})
	if code := f.readyz(t); code != 503 {
		t.Fatalf("/readyz while waiting for config = %d, want 503", code)
	}

	f.put(t, "/atomic.io/network/config", `{"Network": "172.7.0.0/16", "Backend": {"Type": "host-gw"}}`)
	nstest.Eventually(t, 10*time.Second, func() error {
		if code := f.readyz(t); code != 200 {
			return fmt.Errorf("/readyz = %d", code)
		}
		return nil
	})
	got, err := os.ReadFile(f.opts.SubnetFile)
	if err != nil {
		t.Fatal(err)
	}
	want := "FLANNEL_NETWORK=172.7.0.0/16\nFLANNEL_SUBNET=172.7.21.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n"
	if string(got) != want {
		t.Fatalf("subnet.env:\n%s\nwant:\n%s", got, want)
	}
	r, err := f.cli.Get(context.Background(), "/atomic.io/network/subnets/172.7.21.0-24")
	if err != nil || len(r.Kvs) != 1 {
		t.Fatalf("lease key: %v %v", r, err)
	}
	// flannel's JSON, then weft's host ID (the one kept in the state
	// directory).
	id, err := os.ReadFile(filepath.Join(f.opts.StateDir, HostIDFileName))
	if err != nil {
		t.Fatal(err)
	}
	var rec hostIDRecord
	if err := json.Unmarshal(id, &rec); err != nil || rec.HostID == "" {
		t.Fatalf("host ID file %s: %v", id, err)
	}
	if v := string(r.Kvs[0].Value); v != `{"PublicIP":"10.4.7.21","PublicIPv6":null,"BackendType":"host-gw","WeftHostID":"`+rec.HostID+`"}` {
		t.Fatalf("lease value %s", v)
	}
}

// Peers come and go as whole snapshots; the backend sees each change.
func TestPeersReachTheBackendAsSnapshots(t *testing.T) {
	f := start(t, "/coreos.com/network", "")
	// SubnetMax keeps the agent's own lease off the peer's subnet.
	f.put(t, "/coreos.com/network/config", `{"Network": "10.244.0.0/16", "SubnetMax": "10.244.90.0", "Backend": {"Type": "host-gw"}}`)
	nstest.Eventually(t, 10*time.Second, func() error {
		if f.readyz(t) != 200 {
			return fmt.Errorf("not ready")
		}
		return nil
	})
	peer := "/coreos.com/network/subnets/10.244.99.0-24"
	f.put(t, peer, `{"PublicIP":"10.4.7.22","PublicIPv6":null,"BackendType":"host-gw"}`)
	nstest.Eventually(t, 5*time.Second, func() error {
		if s := f.rec.last(); !contains(s, "10.244.99.0/24") {
			return fmt.Errorf("backend saw %v", s)
		}
		return nil
	})
	if _, err := f.cli.Delete(context.Background(), peer); err != nil {
		t.Fatal(err)
	}
	nstest.Eventually(t, 5*time.Second, func() error {
		if s := f.rec.last(); contains(s, "10.244.99.0/24") || len(s) != 1 {
			return fmt.Errorf("backend still sees %v", s)
		}
		return nil
	})
	if !strings.Contains(f.logs.String(), `msg="peer added" peer=10.244.99.0/24`) ||
		!strings.Contains(f.logs.String(), `msg="peer removed" peer=10.244.99.0/24`) {
		t.Fatalf("want one log line per peer added and removed:\n%s", f.logs.String())
	}
}

// An invalid config is reported with the field at fault, and the agent
// keeps waiting for a good one instead of exiting: a bad network, a
// backend this build lacks, and options the backend refuses alike.
func TestInvalidConfigIsReportedAndAwaited(t *testing.T) {
	f := startWith(t, "/coreos.com/network", "", func(d *Deps) { d.CheckBackend = backends.CheckOptions })
	for _, c := range []struct{ config, logged string }{
		{`{"Network": "10.244.0.0/30"}`, "too small"},
		{`{"Network": "10.244.0.0/16", "Backend": {"Type": "ipip"}}`, "is a flannel backend that this build of weft does not implement"},
		{`{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan", "VNI": 99999999}}`, "vxlan option VNI 99999999"},
		{`{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}`, `Backend.Type \"vxlan\" is not available in this agent (it has host-gw)`},
	} {
		f.put(t, "/coreos.com/network/config", c.config)
		nstest.Eventually(t, 5*time.Second, func() error {
			if !strings.Contains(f.logs.String(), c.logged) {
				return fmt.Errorf("%s: no error %q logged:\n%s", c.config, c.logged, f.logs.String())
			}
			return nil
		})
		select {
		case err := <-f.done:
			t.Fatalf("agent exited on config %s: %v", c.config, err)
		default:
		}
	}
	f.put(t, "/coreos.com/network/config", `{"Network": "10.244.0.0/16", "Backend": {"Type": "host-gw"}}`)
	nstest.Eventually(t, 10*time.Second, func() error {
		if f.readyz(t) != 200 {
			return fmt.Errorf("not ready")
		}
		return nil
	})
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func (f *fixture) waitReady(t *testing.T) {
	t.Helper()
	nstest.Eventually(t, 10*time.Second, func() error {
		if code := f.readyz(t); code != 200 {
			return fmt.Errorf("/readyz = %d", code)
		}
		return nil
	})
}

// scrape returns the agent's /metrics text.
func (f *fixture) scrape(t *testing.T) string {
	rr := httptest.NewRecorder()
	f.metrics.Handler().ServeHTTP(rr, httptest.NewRequest("GET", "/metrics", nil))
	return rr.Body.String()
}

// A store outage longer than the grace turns /readyz 503 (the data plane is
// untouched); it is ready again when the store answers.
func TestReadinessFollowsStoreOutage(t *testing.T) {
	f := startWith(t, "/coreos.com/network", "", func(d *Deps) {
		d.OutageGrace = 300 * time.Millisecond
		d.ProbeEvery = 50 * time.Millisecond
	})
	f.put(t, "/coreos.com/network/config", `{"Network": "10.244.0.0/16", "Backend": {"Type": "host-gw"}}`)
	f.waitReady(t)

	f.srv.Close()
	nstest.Eventually(t, 10*time.Second, func() error {
		if code := f.readyz(t); code != 503 {
			return fmt.Errorf("/readyz = %d during the outage", code)
		}
		return nil
	})
	rr := httptest.NewRecorder()
	f.health.Handler().ServeHTTP(rr, httptest.NewRequest("GET", "/readyz", nil))
	if !strings.Contains(rr.Body.String(), "store unreachable") {
		t.Fatalf("/readyz body does not say why: %q", rr.Body.String())
	}
	if !strings.Contains(f.scrape(t), `weft_store_errors_total{op="probe"}`) {
		t.Fatal("probe errors not counted")
	}
}

// A peer joining moves the peers gauge and the event-to-kernel histogram.
func TestMetricsFollowPeers(t *testing.T) {
	f := start(t, "/coreos.com/network", "")
	f.put(t, "/coreos.com/network/config", `{"Network": "10.244.0.0/16", "Backend": {"Type": "host-gw"}}`)
	f.waitReady(t)
	before := f.scrape(t)
	if strings.Contains(before, `weft_peers{backend="host-gw"} 1`) {
		t.Fatalf("peer counted before any joined:\n%s", before)
	}
	f.put(t, "/coreos.com/network/subnets/10.244.7.0-24", `{"PublicIP":"10.4.7.22","PublicIPv6":null,"BackendType":"host-gw"}`)
	nstest.Eventually(t, 5*time.Second, func() error {
		m := f.scrape(t)
		if !strings.Contains(m, `weft_peers{backend="host-gw"} 1`) {
			return fmt.Errorf("peers gauge not 1")
		}
		if !strings.Contains(m, "weft_peer_program_latency_seconds_count 1") {
			return fmt.Errorf("latency histogram has not one observation")
		}
		return nil
	})
	m := f.scrape(t)
	for _, want := range []string{"weft_lease_expiry_seconds 86", "weft_backend_apply_seconds_count", `weft_reconcile_repairs_total{kind="route"} 0`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// systemd's Type=notify: READY=1 once subnet.env exists, STOPPING=1 on
// shutdown, on the socket systemd names in NOTIFY_SOCKET.
func TestSdNotify(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	msgs := make(chan string, 10)
	go func() {
		buf := make([]byte, 1024)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	f := start(t, "/coreos.com/network", "")
	f.put(t, "/coreos.com/network/config", `{"Network": "10.244.0.0/16", "Backend": {"Type": "host-gw"}}`)
	expect := func(want string) {
		t.Helper()
		select {
		case m := <-msgs:
			if m != want {
				t.Fatalf("got %q, want %q", m, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no %q within 10s", want)
		}
	}
	expect("READY=1")
	if _, err := os.Stat(f.opts.SubnetFile); err != nil {
		t.Fatalf("READY=1 before subnet.env exists: %v", err)
	}
	f.cancel()
	expect("STOPPING=1")
}

// fakeFixture is an agent on an in-memory store (storetest.Fake): for the
// loops' reactions to store failures and to changes no real store can be
// made to produce on cue.
type fakeFixture struct {
	opts   options.Options
	st     *storetest.Fake
	rec    *recorder
	health *health.Status
	logs   *syncBuffer
	done   chan error
	cancel context.CancelFunc
}

const fakeConf = `{"Network": "10.244.0.0/16", "Backend": {"Type": "host-gw"}}`

// configuredFake is a fake store holding fakeConf.
func configuredFake(t *testing.T) *storetest.Fake {
	t.Helper()
	st := storetest.New(nil)
	if err := st.SetConfig(fakeConf); err != nil {
		t.Fatal(err)
	}
	return st
}

// startFake runs an agent on st with the recording backend rec.
func startFake(t *testing.T, st *storetest.Fake, rec *recorder) *fakeFixture {
	t.Helper()
	opts := options.Defaults()
	opts.StateDir = t.TempDir() // never the host's /var/lib/weft
	opts.SubnetFile = filepath.Join(t.TempDir(), "subnet.env")
	f := &fakeFixture{opts: opts, st: st, rec: rec, health: &health.Status{}, logs: &syncBuffer{}, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	a := New(opts, Deps{
		Store:           st,
		Backends:        map[string]backend.Factory{"host-gw": func(backend.Config) (backend.Backend, error) { return rec, nil }},
		SelectInterface: testInterface,
		Health:          f.health,
		Metrics:         metrics.New(),
		Log:             slog.New(slog.NewTextHandler(f.logs, nil)),
	})
	go func() { f.done <- a.Run(ctx) }()
	t.Cleanup(func() { awaitStop(t, cancel, f.done) })
	return f
}

func (f *fakeFixture) readyz() (int, string) {
	rr := httptest.NewRecorder()
	f.health.Handler().ServeHTTP(rr, httptest.NewRequest("GET", "/readyz", nil))
	return rr.Code, rr.Body.String()
}

func (f *fakeFixture) waitReady(t *testing.T) {
	t.Helper()
	nstest.Eventually(t, 10*time.Second, func() error {
		if code, body := f.readyz(); code != 200 {
			return fmt.Errorf("/readyz = %d %s", code, body)
		}
		return nil
	})
}

// /readyz stays 503 after subnet.env exists until the first snapshot of
// peers is in the kernel, so a DaemonSet's readiness means "pods can reach
// every known peer".
func TestReadyOnlyAfterPeersProgrammed(t *testing.T) {
	st := configuredFake(t)
	rec := &recorder{gate: make(chan struct{}), entered: make(chan struct{})}
	f := startFake(t, st, rec)
	select {
	case <-rec.entered:
	case err := <-f.done:
		f.done <- err
		t.Fatalf("agent stopped before programming peers: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the first Apply did not begin within 10s")
	}
	if _, err := os.Stat(f.opts.SubnetFile); err != nil {
		t.Fatalf("the first Apply began before subnet.env was written: %v", err)
	}
	// The agent says it is programming peers once subnet.env is written
	// and it waits for the first Apply, which the gate holds: from then
	// on nothing but that Apply returning may make it ready.
	nstest.Eventually(t, 10*time.Second, func() error {
		if code, body := f.readyz(); code != 503 || !strings.Contains(body, "programming peers") {
			return fmt.Errorf("/readyz = %d %q while the first Apply is held, want 503 programming peers", code, body)
		}
		return nil
	})
	close(rec.gate)
	f.waitReady(t)
}

// Acquire failures are retried until the store recovers; the agent is
// not ready meanwhile and does not exit.
func TestAcquireRetriedUntilStoreRecovers(t *testing.T) {
	st := configuredFake(t)
	st.Fail(storetest.OpAcquire, storetest.ErrInjected)
	f := startFake(t, st, &recorder{})
	nstest.Eventually(t, 10*time.Second, func() error {
		if n := st.Calls(storetest.OpAcquire); n < 2 {
			return fmt.Errorf("%d acquire calls, want a retry", n)
		}
		return nil
	})
	if code, _ := f.readyz(); code != 503 {
		t.Fatalf("/readyz = %d without a lease", code)
	}
	if !strings.Contains(f.logs.String(), "cannot acquire a subnet lease; retrying") {
		t.Errorf("the failure is not logged:\n%s", f.logs.String())
	}
	st.Fail(storetest.OpAcquire, nil)
	f.waitReady(t)
	if ls := st.Leases(); len(ls) != 1 || ls[0].Attrs.PublicIP != netip.MustParseAddr("10.4.7.21") {
		t.Errorf("store holds %v, want this host's one lease", ls)
	}
}

// When this host's lease vanishes from the store (an administrator
// deleted it), the agent re-creates it for the same subnet at once.
func TestDeletedOwnLeaseIsRecreated(t *testing.T) {
	st := configuredFake(t)
	f := startFake(t, st, &recorder{})
	f.waitReady(t)
	own := st.Leases()[0]
	renewed := st.Calls(storetest.OpRenew)
	st.Delete(own.Subnet)
	nstest.Eventually(t, 10*time.Second, func() error {
		ls := st.Leases()
		if len(ls) != 1 || ls[0].Subnet != own.Subnet {
			return fmt.Errorf("store holds %v, want %s back", ls, own.Subnet)
		}
		return nil
	})
	if st.Calls(storetest.OpRenew) <= renewed {
		t.Error("the lease came back without a Renew")
	}
	if !strings.Contains(f.logs.String(), "own lease is gone from the store") {
		t.Errorf("no log line about the lost lease:\n%s", f.logs.String())
	}
}

// A watch that fails for good stops the agent with the error.
func TestWatchFailureStopsTheAgent(t *testing.T) {
	st := configuredFake(t)
	st.Fail(storetest.OpWatch, storetest.ErrInjected)
	f := startFake(t, st, &recorder{})
	select {
	case err := <-f.done:
		f.done <- err // for the cleanup, which waits for the agent to stop
		if !errors.Is(err, storetest.ErrInjected) || !strings.Contains(err.Error(), "watch leases") {
			t.Errorf("Run returned %v, want the watch failure", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("agent still running 10s after its watch failed")
	}
}
