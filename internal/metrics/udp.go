package metrics

import "github.com/prometheus/client_golang/prometheus"

// The udp backend's data paths, the label values of weft_udp_path.
const (
	// UDPPathOffload: flannel0 carries super-packets (IFF_VNET_HDR with
	// TSO/USO), split into MTU-sized packets before they are sent.
	UDPPathOffload = "offload"
	// UDPPathBatch: the kernel refused the offloads; one packet per read
	// of flannel0, drained per wake-up, and batched socket calls.
	UDPPathBatch = "batch"
)

// The offloads the udp backend asks the kernel for, the label values of
// weft_udp_offload.
const (
	UDPOffloadTun = "tun_tso" // flannel0's IFF_VNET_HDR with TUNSETOFFLOAD
	UDPOffloadGSO = "udp_gso" // UDP_SEGMENT on the socket's sends
	UDPOffloadGRO = "udp_gro" // UDP_GRO on the socket's receives
)

type udpMetrics struct {
	path    *prometheus.GaugeVec
	offload *prometheus.GaugeVec
}

func newUDPMetrics(reg *prometheus.Registry) *udpMetrics {
	u := &udpMetrics{
		path: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "weft_udp_path",
			Help: "1 for the data path the udp backend uses now, 0 for the other: offload (flannel0 with TSO super-packets) or batch (the kernel refused the offloads). Both 0 when no udp backend runs.",
		}, []string{"path"}),
		offload: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "weft_udp_offload",
			Help: "1 for each offload the kernel granted the udp backend, 0 for one it refused: tun_tso (flannel0's IFF_VNET_HDR and TUNSETOFFLOAD), udp_gso (UDP_SEGMENT sends), udp_gro (UDP_GRO receives).",
		}, []string{"feature"}),
	}
	reg.MustRegister(u.path, u.offload)
	return u
}

// SetUDPPath records the udp backend's data path and which of its
// offloads (UDPOffload*) are on.
func (m *Metrics) SetUDPPath(path string, offloads map[string]bool) {
	if m == nil {
		return
	}
	for _, p := range []string{UDPPathOffload, UDPPathBatch} {
		v := 0.0
		if p == path {
			v = 1
		}
		m.udp.path.WithLabelValues(p).Set(v)
	}
	for f, on := range offloads {
		v := 0.0
		if on {
			v = 1
		}
		m.udp.offload.WithLabelValues(f).Set(v)
	}
}
