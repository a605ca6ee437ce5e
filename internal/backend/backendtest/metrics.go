package backendtest

import (
	"testing"

	"github.com/weftnet/weft/internal/metrics"
)

// Repairs reads weft_reconcile_repairs_total{kind} from m, as a scrape
// would see it.
func Repairs(t testing.TB, m *metrics.Metrics, kind string) float64 {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	for _, f := range fams {
		if f.GetName() != "weft_reconcile_repairs_total" {
			continue
		}
		for _, mt := range f.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == "kind" && l.GetValue() == kind {
					return mt.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no weft_reconcile_repairs_total{kind=%q}", kind)
	return 0
}
