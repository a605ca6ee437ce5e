package metrics

import (
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/version"
)

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rr := httptest.NewRecorder()
	m.Handler().ServeHTTP(rr, httptest.NewRequest("GET", "/metrics", nil))
	if rr.Code != 200 {
		t.Fatalf("GET /metrics = %d", rr.Code)
	}
	return rr.Body.String()
}

// buildInfoLines returns the weft_build_info samples of a scrape.
func buildInfoLines(body string) []string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "weft_build_info{") {
			out = append(out, l)
		}
	}
	return out
}

// weft_build_info is one series of value 1 naming the build and the Go
// release from the start, and the backend once the config names it,
// without leaving the backend-less series behind.
func TestBuildInfo(t *testing.T) {
	m := New()
	got := buildInfoLines(scrape(t, m))
	want := `weft_build_info{backend="",goversion="` + runtime.Version() + `",version="` + version.Version + `"} 1`
	if len(got) != 1 || got[0] != want {
		t.Fatalf("before the config: %q, want [%q]", got, want)
	}

	m.SetBackend("vxlan")
	got = buildInfoLines(scrape(t, m))
	want = `weft_build_info{backend="vxlan",goversion="` + runtime.Version() + `",version="` + version.Version + `"} 1`
	if len(got) != 1 || got[0] != want {
		t.Fatalf("after SetBackend: %q, want [%q]", got, want)
	}

	var nilMetrics *Metrics
	nilMetrics.SetBackend("host-gw") // a nil *Metrics records nothing and must not panic
}

func TestNeighbourMetrics(t *testing.T) {
	m := New()
	if s := scrape(t, m); strings.Contains(s, "weft_neighbour_table_fulls_total{") {
		t.Errorf("table fulls exposed before any read:\n%s", s)
	}
	m.NeighbourNeeded(FamilyIPv4, 1290)
	m.NeighbourThresholds(FamilyIPv4, 128, 512, 1024)
	m.NeighbourTableFulls(FamilyIPv4, 7)
	m.NeighbourTableFulls(FamilyIPv4, 9)
	m.NeighbourTableFulls(FamilyIPv6, 0)

	s := scrape(t, m)
	for _, want := range []string{
		`weft_neighbour_entries_needed{family="ipv4"} 1290`,
		`weft_neighbour_gc_thresh{family="ipv4",level="1"} 128`,
		`weft_neighbour_gc_thresh{family="ipv4",level="2"} 512`,
		`weft_neighbour_gc_thresh{family="ipv4",level="3"} 1024`,
		"# TYPE weft_neighbour_table_fulls_total counter",
		`weft_neighbour_table_fulls_total{family="ipv4"} 9`,
		`weft_neighbour_table_fulls_total{family="ipv6"} 0`,
	} {
		if !strings.Contains(s, want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	var nilm *Metrics
	nilm.NeighbourNeeded(FamilyIPv4, 1)
	nilm.NeighbourThresholds(FamilyIPv4, 1, 2, 3)
	nilm.NeighbourTableFulls(FamilyIPv4, 1)
}
