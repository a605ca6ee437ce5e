package web

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/kernel"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/netconf"
	"github.com/weftnet/weft/internal/status"
	"github.com/weftnet/weft/internal/subnetenv"
)

var t0 = time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)

func hostgw(t *testing.T, subnet, ip string) lease.Lease {
	t.Helper()
	return lease.Lease{
		Subnet:     netip.MustParsePrefix(subnet),
		Attrs:      lease.Attrs{PublicIP: netip.MustParseAddr(ip), BackendType: "host-gw"},
		Expiration: t0.Add(20 * time.Hour),
	}
}

// report is status's own report of a host-gw host whose route to
// 10.244.3.0/24 is missing: one ok peer, one broken.
func report(t *testing.T) status.Report {
	t.Helper()
	cfg, err := netconf.Parse([]byte(`{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}`))
	if err != nil {
		t.Fatal(err)
	}
	return status.Build(status.Inputs{
		Now:    t0,
		Config: cfg,
		Leases: []lease.Lease{
			hostgw(t, "10.244.1.0/24", "192.168.1.1"),
			hostgw(t, "10.244.2.0/24", "192.168.1.2"),
			hostgw(t, "10.244.3.0/24", "192.168.1.3"),
		},
		Store:      "etcd http://192.168.1.100:2379 /coreos.com/network",
		SubnetFile: "/run/flannel/subnet.env",
		SubnetEnv: subnetenv.Env{Networks: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")},
			Subnet: netip.MustParsePrefix("10.244.1.0/24"), MTU: 1500},
		Ext:      backend.ExternalInterface{Name: "eth0", Index: 2, MTU: 1500, Addr: netip.MustParseAddr("192.168.1.1"), PublicIP: netip.MustParseAddr("192.168.1.1")},
		PublicIP: netip.MustParseAddr("192.168.1.1"),
		Kernel: status.Kernel{
			Links: []status.Link{{Name: "eth0", Index: 2, MTU: 1500, Up: true, Addrs: []netip.Prefix{netip.MustParsePrefix("192.168.1.1/24")}}},
			Routes: []kernel.Route{{Dst: netip.MustParsePrefix("10.244.2.0/24"), Gw: netip.MustParseAddr("192.168.1.2"),
				LinkIndex: 2, Proto: kernel.ProtoWeft}},
		},
	})
}

func page(t *testing.T) Page {
	p := Page{Report: report(t)}
	p.Agent = Agent{Version: "v9.9.9", Started: t0.Add(-time.Hour), UptimeSeconds: 3600, Ready: true,
		Events: []Event{{Time: t0, Kind: EventLeave, Message: "peer 10.244.4.0/24 left (was 192.168.1.4)"}}}
	return p
}

func get(t *testing.T, h http.Handler, method, path string) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	res := rec.Result()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

// /status.json decodes into status.Report and equals the report status
// built, field for field: scripts written for `weft status -o json` read it
// unchanged. The agent object rides beside it.
func TestStatusJSONIsStatusReport(t *testing.T) {
	p := page(t)
	h := New(func(context.Context) Page { return p }, nil)
	res, body := get(t, h, http.MethodGet, "/status.json")
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, type %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	var got status.Report
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("decode into status.Report: %v\n%s", err, body)
	}
	want, _ := json.Marshal(p.Report)
	again, _ := json.Marshal(got)
	if string(want) != string(again) {
		t.Errorf("report changed on the way through /status.json:\nwant %s\ngot  %s", want, again)
	}
	var withAgent Page
	if err := json.Unmarshal([]byte(body), &withAgent); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(withAgent.Agent, p.Agent) {
		t.Errorf("agent = %+v, want %+v", withAgent.Agent, p.Agent)
	}
}

// The page is a real table with the kernel state as text and status's
// reason beside it, links to peers on the viewer's port, and nothing
// loaded from another origin.
func TestPageRendersPeers(t *testing.T) {
	p := page(t)
	h := New(func(context.Context) Page { return p }, nil)
	res, body := get(t, h, http.MethodGet, "/")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d\n%s", res.StatusCode, body)
	}
	for _, want := range []string{
		`<table id="peers">`, `<th scope="col">Kernel state</th>`,
		`<tr data-subnet="10.244.2.0/24" class="ok">`,
		`<tr data-subnet="10.244.3.0/24" class="missing">`,
		`<td class="state">missing</td>`,
		"no route to 10.244.3.0/24",
		`<a href="http://192.168.1.2:80/">192.168.1.2</a>`,
		"v9.9.9", "1h00m", "peer 10.244.4.0/24 left",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	for _, bad := range []string{"https://", `src="http`, `href="//`} {
		if strings.Contains(body, bad) {
			t.Errorf("page refers elsewhere: %q", bad)
		}
	}
	if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("CSP = %q", csp)
	}
	for _, asset := range []string{"/page.js", "/page.css"} {
		if res, _ := get(t, h, http.MethodGet, asset); res.StatusCode != http.StatusOK {
			t.Errorf("%s: status %d", asset, res.StatusCode)
		}
	}
}

// Only reading: anything but GET and HEAD is 405 with Allow, on every path.
func TestReadOnly(t *testing.T) {
	h := New(func(context.Context) Page { return page(t) }, nil)
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
		for _, path := range []string{"/", "/status.json"} {
			res, _ := get(t, h, m, path)
			if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != "GET, HEAD" {
				t.Errorf("%s %s: status %d, Allow %q", m, path, res.StatusCode, res.Header.Get("Allow"))
			}
		}
	}
	if res, _ := get(t, h, http.MethodHead, "/status.json"); res.StatusCode != http.StatusOK {
		t.Errorf("HEAD: status %d", res.StatusCode)
	}
	if res, _ := get(t, h, http.MethodGet, "/nothing"); res.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nothing: status %d", res.StatusCode)
	}
}

// However many viewers poll, the report is built at most once per
// MinInterval.
func TestBuildsAreRateLimited(t *testing.T) {
	builds := 0
	h := New(func(context.Context) Page { builds++; return page(t) }, nil)
	now := t0
	h.now = func() time.Time { return now }
	for range 20 {
		get(t, h, http.MethodGet, "/status.json")
	}
	if builds != 1 {
		t.Fatalf("%d builds for 20 requests within MinInterval, want 1", builds)
	}
	now = now.Add(MinInterval)
	get(t, h, http.MethodGet, "/")
	if builds != 2 {
		t.Fatalf("%d builds after MinInterval passed, want 2", builds)
	}
}

// The ring keeps the newest events, newest first, and never more than Max.
func TestEventsRing(t *testing.T) {
	e := Events{Max: 3}
	if got := e.List(); len(got) != 0 {
		t.Fatalf("empty ring lists %v", got)
	}
	for i := range 5 {
		e.Add(Event{Kind: EventJoin, Message: string(rune('a' + i))})
	}
	var got []string
	for _, ev := range e.List() {
		got = append(got, ev.Message)
	}
	if strings.Join(got, "") != "edc" {
		t.Fatalf("ring lists %v, want e d c", got)
	}
}

// Probes run only when /probe.json is asked for, at most once per
// ProbeInterval however often it is; without a prober it does not exist.
func TestProbesOnDemandAndRateLimited(t *testing.T) {
	if res, _ := get(t, New(func(context.Context) Page { return page(t) }, nil), http.MethodGet, "/probe.json"); res.StatusCode != http.StatusNotFound {
		t.Fatalf("/probe.json without a prober: status %d, want 404", res.StatusCode)
	}
	rounds := 0
	h := New(func(context.Context) Page { return page(t) }, nil).WithProbe(func(context.Context) Page {
		rounds++
		p := page(t)
		p.Checked = true
		return p
	})
	now := t0
	h.now = func() time.Time { return now }
	get(t, h, http.MethodGet, "/")
	get(t, h, http.MethodGet, "/status.json")
	if rounds != 0 {
		t.Fatalf("%d probe rounds without /probe.json being asked for", rounds)
	}
	for range 10 {
		now = now.Add(ProbeInterval / 10)
		_, body := get(t, h, http.MethodGet, "/probe.json")
		if !strings.Contains(body, `"checked": true`) {
			t.Fatalf("/probe.json is not a checked report:\n%s", body)
		}
	}
	if rounds != 1 {
		t.Fatalf("%d probe rounds over 10 requests within one ProbeInterval, want 1", rounds)
	}
	now = now.Add(ProbeInterval)
	get(t, h, http.MethodGet, "/probe.json")
	if rounds != 2 {
		t.Fatalf("%d probe rounds once ProbeInterval passed, want 2", rounds)
	}
}
