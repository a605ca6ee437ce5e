package wireguard

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/backend/backendtest"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/netconf"
	"github.com/weftnet/weft/internal/nstest"
)

// The root tests run on backendtest.Hosts (underlay 192.168.78.0/24): host
// i has eth0 192.168.78.i, cni0 10.244.i.1 standing in for a pod, and
// leases 10.244.i.0/24; its backend makes flannel-wg with 10.244.i.0/32
// and listens on UDP 51820.

type host struct {
	*backendtest.Host
	b     *Backend
	lease lease.Lease
	logs  *backendtest.LogBuffer
	dir   string
	spec  hostSpec
	stop  func() // stops Run
}

// hostSpec is how one test host's network is configured: its families,
// and its Backend object ("" for none).
type hostSpec struct {
	v4, v6  bool
	backend string
}

var v4host = hostSpec{v4: true}

func startHosts(t *testing.T, n int) []*host {
	t.Helper()
	specs := make([]hostSpec, n)
	for i := range specs {
		specs[i] = v4host
	}
	return startHostsSpec(t, specs)
}

// config is the network config of spec.
func (spec hostSpec) config() *netconf.Config {
	cfg := &netconf.Config{EnableIPv4: spec.v4, EnableIPv6: spec.v6, SubnetLen: 24, IPv6SubnetLen: 64, BackendType: BackendType}
	if spec.v4 {
		cfg.Network = backendtest.Network
	}
	if spec.v6 {
		cfg.IPv6Network = backendtest.Network6
	}
	if spec.backend != "" {
		cfg.Backend = json.RawMessage(spec.backend)
	}
	return cfg
}

// startHostsSpec starts one host per spec, each with its backend applied
// with every host's lease and running.
func startHostsSpec(t *testing.T, specs []hostSpec) []*host {
	t.Helper()
	var hosts []*host
	for i, bh := range backendtest.Hosts(t, len(specs), backendtest.Options{Underlay: netip.MustParsePrefix("192.168.78.0/24")}) {
		h := &host{Host: bh, logs: &backendtest.LogBuffer{}, dir: t.TempDir(), spec: specs[i]}
		h.start(t)
		hosts = append(hosts, h)
	}
	applyAll(t, hosts)
	for _, h := range hosts {
		h.stop = backendtest.Run(t, h.b.Run)
	}
	return hosts
}

// start builds h's backend from its spec and state directory, and starts
// it with its lease.
func (h *host) start(t *testing.T) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.MultiWriter(t.Output(), h.logs), &slog.HandlerOptions{Level: slog.LevelDebug})).With("host", h.NS)
	b, err := NewWithOptions(backend.Config{
		Ext:      h.Ext,
		Network:  h.spec.config(),
		Log:      log,
		StateDir: h.dir,
	}, Options{Handle: h.Handle, Netns: &h.Netns, ReconcilePeriod: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	typ, data := b.LeaseAttrs()
	h.b = b
	h.lease = lease.Lease{Attrs: lease.Attrs{BackendType: typ, BackendData: data}}
	if h.spec.v4 {
		h.lease.Subnet, h.lease.Attrs.PublicIP = h.Subnet, h.Ext.PublicIP
	}
	if h.spec.v6 {
		h.lease.IPv6Subnet, h.lease.Attrs.PublicIPv6, h.lease.Attrs.BackendV6Data = h.Subnet6, h.Ext.PublicIPv6, backend.LeaseV6Data(b)
	}
	if err := b.Start(t.Context(), h.lease); err != nil {
		t.Fatal(err)
	}
}

// applyAll applies every host's lease on every host.
func applyAll(t *testing.T, hosts []*host) {
	t.Helper()
	var all []lease.Lease
	for _, h := range hosts {
		all = append(all, h.lease)
	}
	for _, h := range hosts {
		if err := h.b.Apply(t.Context(), all); err != nil {
			t.Fatal(err)
		}
	}
}

// Two hosts carry pod traffic through flannel-wg, and each repairs within
// moments what is deleted under it: the Network route, and flannel-wg
// itself, which comes back with the device's peers and sessions anew.
func TestTrafficAndRepair(t *testing.T) {
	hosts := startHosts(t, 2)
	h1, h2 := hosts[0], hosts[1]
	target := h2.EchoServer(t)
	echo := func() error { return h1.Echo(target, time.Second) }
	// The greetings make a session within a second; the deadline leaves
	// room for WireGuard's own retries (5 s, and 15 s after a crossed
	// handshake) on a loaded machine, so that only no session fails.
	nstest.Eventually(t, 30*time.Second, echo)

	link := nstest.Exec(t, h1.NS, "ip", "-d", "link", "show", DeviceName)
	if !strings.Contains(link, "mtu 1420") || !strings.Contains(link, "tun type tun") || !strings.Contains(link, "persist on") {
		t.Errorf("flannel-wg is not a persistent tun with MTU 1420:\n%s", link)
	}
	if addr := nstest.Exec(t, h1.NS, "ip", "-4", "addr", "show", "dev", DeviceName); !strings.Contains(addr, "inet 10.244.1.0/32") {
		t.Errorf("flannel-wg's address:\n%s", addr)
	}
	st, err := h1.b.Status()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Peers) != 1 || st.Peers[0].Key != h2.b.PublicKey() || st.Peers[0].Endpoint != netip.MustParseAddrPort("192.168.78.2:51820") ||
		len(st.Peers[0].AllowedIPs) != 1 || st.Peers[0].AllowedIPs[0] != h2.Subnet || st.PublicKey != h1.b.PublicKey() {
		t.Errorf("h1's device: %+v", st)
	}

	before := h1.b.Repairs()
	nstest.Exec(t, h1.NS, "ip", "route", "del", backendtest.Network.String(), "dev", DeviceName)
	nstest.Eventually(t, 5*time.Second, func() error {
		if h1.b.Repairs() == before {
			return errNotYet("route repair")
		}
		return echo()
	})

	before = h2.b.Repairs()
	nstest.Exec(t, h2.NS, "ip", "link", "del", DeviceName)
	nstest.Eventually(t, 15*time.Second, func() error {
		if h2.b.Repairs() == before {
			return errNotYet("device repair")
		}
		return echo()
	})
	if n := backendtest.LogLines(h2.logs.String(), "device created"); n == 0 {
		t.Errorf("h2 did not log the device it made again:\n%s", h2.logs.String())
	}
}

type errNotYet string

func (e errNotYet) Error() string { return string(e) + " not yet" }

// The key file is created once (0400, base64 as `wg genkey` writes it)
// and reused; one that holds no key is an error naming it, and is left as
// it is; WIREGUARD_KEY_FILE names another file, as in flannel.
func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", KeyFileName)
	k1, created, err := LoadOrCreateKey(path)
	if err != nil || !created {
		t.Fatalf("first load: %v, created %v", err, created)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o400 {
		t.Fatalf("key file mode: %v %v", fi, err)
	}
	b, _ := os.ReadFile(path)
	if strings.TrimSpace(string(b)) != k1.String() {
		t.Errorf("key file holds %q, want %s", b, k1)
	}
	k2, created, err := LoadOrCreateKey(path)
	if err != nil || created || k2 != k1 {
		t.Errorf("second load: %v, created %v, same key %v", err, created, k2 == k1)
	}
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateKey(bad); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("bad key file: %v", err)
	}
	if b, _ := os.ReadFile(bad); string(b) != "not a key\n" {
		t.Errorf("bad key file was changed to %q", b)
	}
	if got := KeyFile("/run/flannel"); got != "/run/flannel/wgkey" {
		t.Errorf("KeyFile = %s", got)
	}
	t.Setenv(KeyFileEnv, "/etc/wg/key")
	if got := KeyFile("/run/flannel"); got != "/etc/wg/key" {
		t.Errorf("KeyFile with %s = %s", KeyFileEnv, got)
	}
}
