package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/weftnet/weft/internal/store"
)

// storeMetrics say what kind of trouble the store is in, beside
// weft_store_errors_total (which counts failures by operation).
type storeMetrics struct {
	byCause *prometheus.CounterVec
	trouble *prometheus.GaugeVec
}

func newStoreMetrics(reg *prometheus.Registry) *storeMetrics {
	s := &storeMetrics{
		byCause: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_store_errors_by_cause_total",
			Help: "Failed store operations, by cause: unreachable, timeout, tls, auth, permission, no-config, invalid-config, other.",
		}, []string{"cause"}),
		trouble: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "weft_store_trouble",
			Help: "1 while the store is in trouble of this cause (from the first failure until a call succeeds again), else 0.",
		}, []string{"cause"}),
	}
	reg.MustRegister(s.byCause, s.trouble)
	// Every cause from the start, so that rate() and alerts see a zero
	// before the first failure.
	for _, c := range store.Causes {
		s.byCause.WithLabelValues(string(c))
		s.trouble.WithLabelValues(string(c))
	}
	return s
}

// StoreErrorCause counts one failed store operation by its cause
// (store.Classify).
func (m *Metrics) StoreErrorCause(cause store.Cause) {
	if m == nil {
		return
	}
	m.store.byCause.WithLabelValues(string(cause)).Inc()
}

// StoreTrouble sets whether the store is in trouble of this cause.
func (m *Metrics) StoreTrouble(cause store.Cause, on bool) {
	if m == nil {
		return
	}
	v := 0.0
	if on {
		v = 1
	}
	m.store.trouble.WithLabelValues(string(cause)).Set(v)
}
