package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/health"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/metrics"
	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/internal/options"
	"github.com/weftnet/weft/internal/store/storetest"
)

// idBackend is a backend whose Apply fails for the peers failing names,
// and which publishes an address (a VTEP MAC) it can replace.
type idBackend struct {
	mu         sync.Mutex
	failing    func(peer lease.Lease) bool
	mac        string
	readdrs    int
	nextMAC    string
	lastLeases []lease.Lease
}

func (b *idBackend) LeaseAttrs() (string, json.RawMessage) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return "vxlan", json.RawMessage(`{"VNI":1,"VtepMAC":"` + b.mac + `"}`)
}
func (b *idBackend) MTU() int                                 { return 1450 }
func (b *idBackend) Start(context.Context, lease.Lease) error { return nil }
func (b *idBackend) Run(ctx context.Context) error            { <-ctx.Done(); return nil }
func (b *idBackend) Apply(_ context.Context, ls []lease.Lease) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lastLeases = ls
	var errs []error
	for _, l := range ls {
		if b.failing != nil && b.failing(l) {
			errs = append(errs, fmt.Errorf("peer %s (subnet %s): replace route: network is unreachable", l.Attrs.PublicIP, l.Subnet))
		}
	}
	return errors.Join(errs...)
}
func (b *idBackend) Address() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.mac
}
func (b *idBackend) LeaseAddress(l lease.Lease) string {
	var d struct{ VtepMAC string }
	if json.Unmarshal(l.Attrs.BackendData, &d) != nil {
		return ""
	}
	return d.VtepMAC
}
func (b *idBackend) Readdress() (string, string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.mac
	b.mac, b.readdrs = b.nextMAC, b.readdrs+1
	return old, b.mac, nil
}

var _ backend.Readdresser = (*idBackend)(nil)

type idFixture struct {
	st     *storetest.Fake
	be     *idBackend
	health *health.Status
	m      *metrics.Metrics
	logs   *syncBuffer
}

func startID(t *testing.T, st *storetest.Fake, be *idBackend) *idFixture {
	t.Helper()
	opts := options.Defaults()
	opts.StateDir = t.TempDir()
	opts.SubnetFile = filepath.Join(t.TempDir(), "subnet.env")
	f := &idFixture{st: st, be: be, health: &health.Status{}, m: metrics.New(), logs: &syncBuffer{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	a := New(opts, Deps{
		Store:           st,
		Backends:        map[string]backend.Factory{"vxlan": func(backend.Config) (backend.Backend, error) { return be, nil }},
		SelectInterface: testInterface,
		Health:          f.health,
		Metrics:         f.m,
		Log:             slog.New(slog.NewTextHandler(f.logs, nil)),
	})
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { awaitStop(t, cancel, done) })
	return f
}

func (f *idFixture) ready(t *testing.T, want bool, reasonHas string) {
	t.Helper()
	nstest.Eventually(t, 10*time.Second, func() error {
		ok, why := f.health.Ready()
		if ok != want || !strings.Contains(why, reasonHas) {
			return fmt.Errorf("ready %v %q, want %v %q", ok, why, want, reasonHas)
		}
		return nil
	})
}

// own is the agent's lease in the store (zero before it has one).
func (f *idFixture) own() lease.Lease {
	for _, l := range f.st.Leases() {
		if l.Attrs.PublicIP == netip.MustParseAddr("10.4.7.21") && l.Attrs.HostID != "" {
			return l
		}
	}
	return lease.Lease{}
}

func vxlanPeer(sn, ip, mac, id string) lease.Lease {
	return lease.Lease{Subnet: netip.MustParsePrefix(sn), Expiration: time.Now().Add(time.Hour),
		Attrs: lease.Attrs{PublicIP: netip.MustParseAddr(ip), BackendType: "vxlan", BackendData: json.RawMessage(`{"VNI":1,"VtepMAC":"` + mac + `"}`), HostID: id}}
}

func newIDStore(t *testing.T) *storetest.Fake {
	st := storetest.New(nil)
	if err := st.SetConfig(`{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}`); err != nil {
		t.Fatal(err)
	}
	return st
}

// Not ready while every peer fails to be programmed; one bad peer among
// two leaves the host ready.
func TestReadinessFollowsProgrammablePeers(t *testing.T) {
	st := newIDStore(t)
	st.Put(vxlanPeer("10.244.2.0/24", "10.4.7.22", "0a:00:00:00:00:02", ""))
	var mu sync.Mutex
	bad := map[netip.Prefix]bool{netip.MustParsePrefix("10.244.2.0/24"): true}
	be := &idBackend{mac: "0a:00:00:00:00:01", failing: func(l lease.Lease) bool { mu.Lock(); defer mu.Unlock(); return bad[l.Subnet] }}
	f := startID(t, st, be)
	f.ready(t, false, "none of the 1 peers could be programmed: peer 10.4.7.22 (subnet 10.244.2.0/24)")

	st.Put(vxlanPeer("10.244.3.0/24", "10.4.7.23", "0a:00:00:00:00:03", ""))
	f.ready(t, true, "")

	mu.Lock()
	bad[netip.MustParsePrefix("10.244.3.0/24")] = true
	bad[netip.MustParsePrefix("10.244.4.0/24")] = true
	mu.Unlock()
	st.Put(vxlanPeer("10.244.4.0/24", "10.4.7.24", "0a:00:00:00:00:04", ""))
	f.ready(t, false, "none of the 3 peers")
	st.Delete(netip.MustParsePrefix("10.244.4.0/24"))
	f.ready(t, false, "none of the 2 peers")
	if n := strings.Count(f.logs.String(), "no peer can be programmed"); n != 2 {
		t.Errorf("%d ERROR lines for 2 starts of the condition:\n%s", n, f.logs.String())
	}
}

// A peer lease that appears with our PublicIP and another host ID is
// logged at ERROR once and counted; one without an ID is not.
func TestRunningAgentReportsAnotherHostWithItsPublicIP(t *testing.T) {
	st := newIDStore(t)
	f := startID(t, st, &idBackend{mac: "0a:00:00:00:00:01"})
	f.ready(t, true, "")
	st.Put(vxlanPeer("10.244.9.0/24", "10.4.7.21", "0a:00:00:00:00:09", ""))
	st.Put(vxlanPeer("10.244.8.0/24", "10.4.7.21", "0a:00:00:00:00:08", "otherhost"))
	nstest.Eventually(t, 5*time.Second, func() error {
		if !strings.Contains(f.logs.String(), "two hosts use public IP 10.4.7.21: set --public-ip or --iface on one of them") {
			return fmt.Errorf("no ERROR yet:\n%s", f.logs.String())
		}
		return nil
	})
	st.Put(vxlanPeer("10.244.5.0/24", "10.4.7.25", "0a:00:00:00:00:05", "")) // another snapshot
	nstest.Eventually(t, 5*time.Second, func() error {
		if !strings.Contains(f.logs.String(), "10.244.5.0/24") {
			return fmt.Errorf("snapshot not seen")
		}
		return nil
	})
	logs := f.logs.String()
	if n := strings.Count(logs, "two hosts use public IP"); n != 1 || !strings.Contains(logs, "other-host-id=otherhost") {
		t.Fatalf("%d ERROR lines, want 1 naming otherhost:\n%s", n, logs)
	}
	body := gatherText(t, f.m)
	if !strings.Contains(body, `weft_identity_conflicts_total{kind="public_ip"} 1`) {
		t.Errorf("metric:\n%s", body)
	}
}

// A peer that was there first with our VTEP MAC makes this host pick a
// new one and republish; a peer that takes our MAC later does not.
func TestVTEPMACClashReaddressesTheNewcomer(t *testing.T) {
	st := newIDStore(t)
	st.Put(vxlanPeer("10.244.2.0/24", "10.4.7.22", "0a:00:00:00:00:01", "first"))
	be := &idBackend{mac: "0a:00:00:00:00:01", nextMAC: "0a:00:00:00:00:11"}
	f := startID(t, st, be)
	nstest.Eventually(t, 10*time.Second, func() error {
		if got := be.LeaseAddress(f.own()); got != "0a:00:00:00:00:11" {
			return fmt.Errorf("own lease publishes %s", got)
		}
		return nil
	})
	if !strings.Contains(f.logs.String(), "picked a new address and republishing the lease") {
		t.Fatalf("no WARN:\n%s", f.logs.String())
	}

	// A newer peer with our (new) MAC: warned about, not readdressed.
	st.Put(vxlanPeer("10.244.3.0/24", "10.4.7.23", "0a:00:00:00:00:11", "later"))
	nstest.Eventually(t, 10*time.Second, func() error {
		if !strings.Contains(f.logs.String(), "a peer that joined after this host publishes this host's backend address") {
			return fmt.Errorf("no WARN for the newer peer")
		}
		return nil
	})
	be.mu.Lock()
	n := be.readdrs
	be.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d readdresses, want 1", n)
	}
}

func gatherText(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		for _, mm := range mf.GetMetric() {
			fmt.Fprintf(&b, "%s", mf.GetName())
			var ls []string
			for _, lp := range mm.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
			}
			if len(ls) > 0 {
				fmt.Fprintf(&b, "{%s}", strings.Join(ls, ","))
			}
			if c := mm.GetCounter(); c != nil {
				fmt.Fprintf(&b, " %g", c.GetValue())
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}
