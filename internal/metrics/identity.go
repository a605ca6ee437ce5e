package metrics

import "github.com/prometheus/client_golang/prometheus"

// Identity conflict kinds, the label values of weft_identity_conflicts_total.
const (
	// ConflictPublicIP: another live host publishes this host's PublicIP
	// under another host ID (two hosts with one --public-ip).
	ConflictPublicIP = "public_ip"
	// ConflictAddress: a peer publishes this host's backend address (the
	// vxlan VTEP MAC of a copied state directory).
	ConflictAddress = "address"
)

func (m *Metrics) registerIdentity() {
	m.identity = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "weft_identity_conflicts_total",
		Help: "Times another host was found claiming this host's identity, by kind: public_ip (another live host with this host's PublicIP; counted once each time the condition starts), address (a peer publishing this host's VTEP MAC).",
	}, []string{"kind"})
	m.reg.MustRegister(m.identity)
	for _, k := range []string{ConflictPublicIP, ConflictAddress} {
		m.identity.WithLabelValues(k)
	}
}

// IdentityConflict counts one identity conflict of a kind.
func (m *Metrics) IdentityConflict(kind string) {
	if m == nil {
		return
	}
	m.identity.WithLabelValues(kind).Inc()
}
