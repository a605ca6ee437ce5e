package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, err := io.ReadAll(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
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
