package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/backend/backendtest"
	"github.com/weftnet/weft/internal/backend/vxlan"
	"github.com/weftnet/weft/internal/embedetcd/etcdtest"
	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/internal/options"
	"github.com/weftnet/weft/internal/subnetenv"
)

// runVXLANAgent runs an agent for backendtest host h against etcd at
// endpoint, its vxlan backend programming h's namespace, until the test
// ends; it returns once the agent is ready. The host's subnet.env names
// its pod subnets (cni0's), so that it leases them.
func runVXLANAgent(t *testing.T, h *backendtest.Host, endpoint string) {
	t.Helper()
	dir := t.TempDir()
	opts := options.Defaults()
	opts.StateDir = filepath.Join(dir, "state")
	opts.SubnetFile = filepath.Join(dir, "subnet.env")
	opts.EtcdEndpoints = endpoint
	opts.HealthzIP = "127.0.0.1"
	opts.HealthzPort = freePort(t)
	if err := subnetenv.Write(opts.SubnetFile, subnetenv.Env{
		Networks: []netip.Prefix{backendtest.Network}, Subnet: h.Subnet,
		IPv6Network: []netip.Prefix{backendtest.Network6}, IPv6Subnet: h.Subnet6, MTU: 1430,
	}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(t.Output(), nil)).With("host", h.NS)
	runEtcdAgent(t, opts, endpoint, log, Deps{
		Backends: map[string]backend.Factory{"vxlan": func(cfg backend.Config) (backend.Backend, error) {
			return backend.Built(vxlan.NewWithOptions(cfg, vxlan.Options{Handle: h.Handle, Netns: &h.Netns}))
		}},
		SelectInterface: func(*options.Options) (backend.ExternalInterface, error) { return h.Ext, nil },
	})
}

// TestDualStackVXLANAgents runs two agents against real etcd with a
// dual-stack vxlan config: each publishes its flannel-v6 VTEP MAC in
// BackendV6Data, programs the other's IPv6 half from the lease it reads
// back, and their pods reach each other over IPv6 and IPv4.
func TestDualStackVXLANAgents(t *testing.T) {
	hosts := backendtest.Hosts(t, 2, backendtest.Options{})
	srv := etcdtest.StartForTest(t)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.Endpoint()}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := cli.Put(ctx, "/coreos.com/network/config",
		`{"Network": "10.244.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:10:244::/56", "IPv6SubnetLen": 64, "Backend": {"Type": "vxlan"}}`); err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		runVXLANAgent(t, h, srv.Endpoint())
	}

	key := "/coreos.com/network/subnets/10.244.1.0-24&fd00:10:244:1::-64"
	nstest.Eventually(t, 10*time.Second, func() error {
		resp, err := cli.Get(ctx, key)
		if err != nil || len(resp.Kvs) != 1 {
			return fmt.Errorf("host 1's dual-stack lease %s: %v %v", key, resp, err)
		}
		want := `"PublicIPv6":"fd70::1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"`
		if v := string(resp.Kvs[0].Value); !strings.Contains(v, want) || !strings.Contains(v, `"BackendV6Data":{"VNI":1,"VtepMAC":"`) {
			return fmt.Errorf("host 1's lease %s: want PublicIPv6 and BackendV6Data", v)
		}
		return nil
	})
	for i, from := range hosts {
		to := hosts[1-i]
		for _, target := range []string{to.EchoServer6(t), to.EchoServer(t)} {
			nstest.Eventually(t, 20*time.Second, func() error {
				if err := from.Echo(target, time.Second); err != nil {
					return fmt.Errorf("%s -> %s: %w", from.NS, target, err)
				}
				return nil
			})
		}
	}
}
