package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sys/unix"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/embedetcd/etcdtest"
	"github.com/weftnet/weft/internal/health"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/metrics"
	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/internal/options"
	etcdstore "github.com/weftnet/weft/internal/store/etcd"
	"github.com/weftnet/weft/internal/subnetenv"
)

// bhBackend is a backend that programs nothing: these tests look only at
// the blackhole route, which the agent keeps itself.
type bhBackend struct{}

func (bhBackend) LeaseAttrs() (string, json.RawMessage)      { return "host-gw", nil }
func (bhBackend) MTU() int                                   { return 1500 }
func (bhBackend) Start(context.Context, lease.Lease) error   { return nil }
func (bhBackend) Apply(context.Context, []lease.Lease) error { return nil }
func (bhBackend) Run(ctx context.Context) error              { <-ctx.Done(); return nil }

// blackholes lists the blackhole routes of ns's main table, as
// "DST proto P metric M".
func blackholes(t *testing.T, h *netlink.Handle) []string {
	t.Helper()
	rs, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatalf("list routes: %v", err)
	}
	var out []string
	for _, r := range rs {
		if r.Type == unix.RTN_BLACKHOLE {
			out = append(out, fmt.Sprintf("%s proto %d metric %d", r.Dst, r.Protocol, r.Priority))
		}
	}
	return out
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// runBlackholeAgent runs an agent whose blackhole routes go to the
// namespace h is bound to, until the test ends; it returns once the agent
// is ready, with the agent's options.
func runBlackholeAgent(t *testing.T, h *netlink.Handle, endpoint, subnetFile string, blackhole bool) options.Options {
	t.Helper()
	opts := options.Defaults()
	// One host restarted: the same state directory (never the host's
	// /var/lib/weft).
	opts.StateDir = filepath.Join(filepath.Dir(subnetFile), "state")
	opts.EtcdEndpoints = endpoint
	opts.SubnetFile = subnetFile
	opts.IPBlackholeRoute = blackhole
	opts.IPTablesResync = 1
	opts.HealthzIP = "127.0.0.1"
	opts.HealthzPort = freePort(t)
	runEtcdAgent(t, opts, endpoint, slog.New(slog.NewTextHandler(io.Discard, nil)), Deps{
		Backends: map[string]backend.Factory{"host-gw": func(backend.Config) (backend.Backend, error) { return bhBackend{}, nil }},
		SelectInterface: func(*options.Options) (backend.ExternalInterface, error) {
			ip := netip.MustParseAddr("10.4.7.31")
			return backend.ExternalInterface{Name: "eth0", Index: 2, MTU: 1500, Addr: ip, PublicIP: ip}, nil
		},
		Blackhole: NewBlackholeRoutes(h),
	})
	return opts
}

// runEtcdAgent runs an agent with opts and deps against etcd at endpoint
// until the test ends, filling in deps' store, health, metrics and log,
// and returns once it is ready.
func runEtcdAgent(t *testing.T, opts options.Options, endpoint string, log *slog.Logger, deps Deps) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := etcdstore.New(ctx, etcdstore.Options{Endpoints: []string{endpoint}, Prefix: opts.EtcdPrefix, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	hs := &health.Status{}
	deps.Store, deps.Health, deps.Metrics, deps.Log = st, hs, metrics.New(), log
	a := New(opts, deps)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("agent: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("agent did not stop within 10s of cancel")
		}
		st.Close()
	})
	nstest.Eventually(t, 15*time.Second, func() error {
		if ok, reason := hs.Ready(); !ok {
			return fmt.Errorf("not ready: %s", reason)
		}
		return nil
	})
}

// With --ip-blackhole-route the host's leased subnet gets a blackhole
// route (the previous lease's one goes), a deleted one comes back within
// the resync period and counts as a repair on /metrics, and an agent
// started without the flag removes it.
func TestBlackholeRouteFollowsLease(t *testing.T) {
	nstest.RequireRoot(t)
	ns := nstest.NewNS(t, "bh")
	h, err := netns.Handle(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()

	srv := etcdtest.StartForTest(t)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.Endpoint()}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "/coreos.com/network/config", `{"Network": "10.244.0.0/16", "Backend": {"Type": "host-gw"}}`); err != nil {
		t.Fatal(err)
	}

	// A previous run held 10.244.1.0/24, which another host holds now (a
	// reservation for it), and left its blackhole route behind.
	subnetFile := filepath.Join(t.TempDir(), "subnet.env")
	if err := os.WriteFile(subnetFile, []byte("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "/coreos.com/network/subnets/10.244.1.0-24", `{"PublicIP":"10.4.7.99","PublicIPv6":null,"BackendType":"host-gw"}`); err != nil {
		t.Fatal(err)
	}
	old := netip.MustParsePrefix("10.244.1.0/24")
	if _, err := NewBlackholeRoutes(h).Ensure(old); err != nil {
		t.Fatal(err)
	}

	var opts options.Options
	t.Run("installed for the lease", func(t *testing.T) {
		opts = runBlackholeAgent(t, h, srv.Endpoint(), subnetFile, true)
		env, err := subnetenv.Read(subnetFile)
		if err != nil {
			t.Fatal(err)
		}
		own := env.Subnet.Masked()
		if own == old || !netip.MustParsePrefix("10.244.0.0/16").Contains(own.Addr()) {
			t.Fatalf("leased %v, want a new subnet in 10.244.0.0/16", own)
		}
		want := fmt.Sprintf("%s proto 87 metric %d", own, BlackholeMetric)
		if got := blackholes(t, h); len(got) != 1 || got[0] != want {
			t.Fatalf("blackhole routes %q, want only %q (the previous lease's removed)", got, want)
		}

		// Someone deletes it: it is back within the resync period (1 s).
		if out, err := nstest.ExecErr(ns, "ip", "route", "del", "blackhole", own.String(), "metric", strconv.Itoa(BlackholeMetric)); err != nil {
			t.Fatalf("ip route del: %v: %s", err, out)
		}
		if got := blackholes(t, h); len(got) != 0 {
			t.Fatalf("after deleting: %q", got)
		}
		nstest.Eventually(t, 5*time.Second, func() error {
			if got := blackholes(t, h); len(got) != 1 || got[0] != want {
				return fmt.Errorf("blackhole routes %q, want %q", got, want)
			}
			return nil
		})

		// The blackhole sits below the bridge's connected route: with a
		// cni0 holding the subnet's gateway address, a pod address routes
		// to cni0; without one, it is dropped rather than sent anywhere.
		pod := own.Addr().Next().Next().Next().Next()
		// A default route, which the pod address would follow without the
		// blackhole.
		nstest.Exec(t, ns, "ip", "link", "add", "up0", "type", "veth", "peer", "name", "up1")
		nstest.Exec(t, ns, "ip", "addr", "add", "192.0.2.2/24", "dev", "up0")
		nstest.Exec(t, ns, "ip", "link", "set", "up0", "up")
		nstest.Exec(t, ns, "ip", "route", "add", "default", "via", "192.0.2.1")
		nstest.Exec(t, ns, "ip", "link", "add", "cni0", "type", "bridge")
		nstest.Exec(t, ns, "ip", "addr", "add", netip.PrefixFrom(own.Addr().Next(), own.Bits()).String(), "dev", "cni0")
		nstest.Exec(t, ns, "ip", "link", "set", "cni0", "up")
		if out := nstest.Exec(t, ns, "ip", "route", "get", pod.String()); !strings.Contains(out, "dev cni0") {
			t.Errorf("with cni0 up, ip route get %s = %q, want dev cni0", pod, out)
		}
		nstest.Exec(t, ns, "ip", "link", "del", "cni0")
		if out, err := nstest.ExecErr(ns, "ip", "route", "get", pod.String()); err == nil {
			t.Errorf("without cni0, ip route get %s = %q, want the blackhole's refusal", pod, out)
		}

		// The repair and the build show on the agent's /metrics.
		resp, err := http.Get("http://" + net.JoinHostPort(opts.HealthzIP, strconv.Itoa(opts.HealthzPort)) + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, w := range []string{`weft_reconcile_repairs_total{kind="route"} 1`, `weft_build_info{backend="host-gw",goversion=`} {
			if !strings.Contains(string(body), w) {
				t.Errorf("/metrics lacks %q", w)
			}
		}
	})
	if t.Failed() {
		return
	}

	t.Run("removed without the flag", func(t *testing.T) {
		runBlackholeAgent(t, h, srv.Endpoint(), subnetFile, false)
		if got := blackholes(t, h); len(got) != 0 {
			t.Fatalf("blackhole routes %q after a start without --ip-blackhole-route, want none", got)
		}
	})
}
