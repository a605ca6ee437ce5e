package metrics

import "github.com/prometheus/client_golang/prometheus"

// admitMetrics count the leases the admission step refuses (package
// admit): how many are refused now, and how many refusals have started.
type admitMetrics struct {
	refused      *prometheus.GaugeVec
	refusedTotal *prometheus.CounterVec
}

func newAdmitMetrics(reg *prometheus.Registry) *admitMetrics {
	a := &admitMetrics{
		refused: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "weft_leases_refused",
			Help: "Leases in the store that this host does not program as peers (malformed, overlapping an older lease, a duplicate VtepMAC, another VNI...), by reason.",
		}, []string{"reason"}),
		refusedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_leases_refused_total",
			Help: "Times a lease started being refused as a peer, by reason.",
		}, []string{"reason"}),
	}
	reg.MustRegister(a.refused, a.refusedTotal)
	return a
}

// SetLeasesRefused sets weft_leases_refused to the current count of each
// reason; reasons (every one the admission step knows) missing from now
// are set to 0, so that the series exist before the first refusal.
func (m *Metrics) SetLeasesRefused(reasons []string, now map[string]int) {
	if m == nil {
		return
	}
	for _, r := range reasons {
		m.admit.refused.WithLabelValues(r).Set(float64(now[r]))
		m.admit.refusedTotal.WithLabelValues(r)
	}
	for r, n := range now {
		m.admit.refused.WithLabelValues(r).Set(float64(n))
	}
}

// LeaseRefused counts one lease that started being refused for reason.
func (m *Metrics) LeaseRefused(reason string) {
	if m == nil {
		return
	}
	m.admit.refusedTotal.WithLabelValues(reason).Inc()
}
