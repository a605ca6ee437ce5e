// Package metrics is weft's Prometheus instrumentation. Everything is under
// the weft_ namespace and registered on a private registry (never the
// global one), so tests and several agents in one process do not collide.
//
// A nil *Metrics is valid and records nothing: packages take one without
// caring whether the agent serves /metrics.
package metrics

import (
	"math"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/weftnet/weft/internal/version"
)

// Repair kinds, the label values of weft_reconcile_repairs_total.
const (
	KindRoute     = "route"
	KindNeighbour = "neighbour"
	KindFDB       = "fdb"
	KindRule      = "rule"
	KindDevice    = "device"
	KindAddress   = "address"
)

// Metrics holds the agent's collectors.
type Metrics struct {
	reg            *prometheus.Registry
	leaseExp       atomic.Int64 // unix nanoseconds of the own lease's expiry; 0 unknown, -1 never
	peers          *prometheus.GaugeVec
	storeErrors    *prometheus.CounterVec
	watchRestarts  prometheus.Counter
	repairs        *prometheus.CounterVec
	programLatency prometheus.Histogram
	applyDuration  prometheus.Histogram
	buildInfo      *prometheus.GaugeVec
	neighNeeded    *prometheus.GaugeVec
	neighThresh    *prometheus.GaugeVec
	neighFulls     *kernelCounter
	admit          *admitMetrics
	store          *storeMetrics          // store.go
	identity       *prometheus.CounterVec // identity.go
	udp            *udpMetrics            // udp.go
}

// New creates the collectors on a fresh registry, with the Go runtime and
// process collectors beside them.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		peers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "weft_peers",
			Help: "Peer leases known from the store, by the backend type they publish.",
		}, []string{"backend"}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_store_errors_total",
			Help: "Failed store operations, by operation.",
		}, []string{"op"}),
		watchRestarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weft_store_watch_restarts_total",
			Help: "Times the lease watch was re-established (disconnect or compaction).",
		}),
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_reconcile_repairs_total",
			Help: "Kernel or rule entries the reconciler had to restore or correct, by kind.",
		}, []string{"kind"}),
		programLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "weft_peer_program_latency_seconds",
			Help:    "Delay from a peer's lease event reaching the agent to its kernel entries being in place.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		applyDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "weft_backend_apply_seconds",
			Help:    "Time one backend Apply of a whole lease snapshot took.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}),
	}
	m.buildInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "weft_build_info",
		Help: "Always 1; the labels say which weft build this is, the Go release that built it and the backend the network config selected (empty until it is read).",
	}, []string{"version", "goversion", "backend"})
	m.SetBackend("")
	m.neighNeeded = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "weft_neighbour_entries_needed",
		Help: "Neighbour-table entries this host needs to reach every peer's next hop and every local pod address, plus a margin.",
	}, []string{"family"})
	m.neighThresh = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "weft_neighbour_gc_thresh",
		Help: "The kernel's neighbour-table thresholds net.ipv{4,6}.neigh.default.gc_thresh{1,2,3}, by level.",
	}, []string{"family", "level"})
	m.neighFulls = &kernelCounter{desc: prometheus.NewDesc("weft_neighbour_table_fulls_total",
		"Times the kernel refused a neighbour entry because its table was full (table_fulls in /proc/net/stat), since boot.",
		[]string{"family"}, nil), v: map[string]uint64{}}
	leaseExpiry := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "weft_lease_expiry_seconds",
		Help: "Seconds until this host's subnet lease expires; +Inf for a reservation, 0 before the first lease.",
	}, func() float64 {
		switch ns := m.leaseExp.Load(); ns {
		case 0:
			return 0
		case -1:
			return math.Inf(1)
		default:
			return time.Until(time.Unix(0, ns)).Seconds()
		}
	})
	m.reg.MustRegister(m.buildInfo, leaseExpiry, m.peers, m.storeErrors, m.watchRestarts, m.repairs, m.programLatency, m.applyDuration,
		m.neighNeeded, m.neighThresh, m.neighFulls,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.admit = newAdmitMetrics(m.reg)
	m.store = newStoreMetrics(m.reg)
	m.registerIdentity()
	m.udp = newUDPMetrics(m.reg)
	for _, k := range []string{KindRoute, KindNeighbour, KindFDB, KindRule, KindDevice, KindAddress} {
		m.repairs.WithLabelValues(k)
	}
	return m
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Registry exposes the registry, for tests that gather values directly.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// SetBackend puts the backend type into weft_build_info's labels, once the
// network config has named it.
func (m *Metrics) SetBackend(backend string) {
	if m == nil {
		return
	}
	// One series at a time: the old labels go, so a dashboard joining on
	// the build never sees two.
	m.buildInfo.Reset()
	m.buildInfo.WithLabelValues(version.Version, runtime.Version(), backend).Set(1)
}

// LeaseExpires records when the own lease expires; the zero time means a
// reservation, which never does.
func (m *Metrics) LeaseExpires(exp time.Time) {
	if m == nil {
		return
	}
	if exp.IsZero() {
		m.leaseExp.Store(-1)
		return
	}
	m.leaseExp.Store(exp.UnixNano())
}

// SetPeers replaces the per-backend peer counts.
func (m *Metrics) SetPeers(byBackend map[string]int) {
	if m == nil {
		return
	}
	m.peers.Reset()
	for b, n := range byBackend {
		m.peers.WithLabelValues(b).Set(float64(n))
	}
}

// StoreError counts a failed store operation ("config", "acquire",
// "renew", "watch", "probe").
func (m *Metrics) StoreError(op string) {
	if m == nil {
		return
	}
	m.storeErrors.WithLabelValues(op).Inc()
}

// WatchRestarted counts a re-established watch.
func (m *Metrics) WatchRestarted() {
	if m == nil {
		return
	}
	m.watchRestarts.Inc()
}

// Repaired counts n repairs of one kind.
func (m *Metrics) Repaired(kind string, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.repairs.WithLabelValues(kind).Add(float64(n))
}

// PeerProgrammed records how long a peer took from event to kernel.
func (m *Metrics) PeerProgrammed(d time.Duration) {
	if m == nil {
		return
	}
	m.programLatency.Observe(d.Seconds())
}

// Applied records one backend Apply.
func (m *Metrics) Applied(d time.Duration) {
	if m == nil {
		return
	}
	m.applyDuration.Observe(d.Seconds())
}

// Neighbour-table families, the label values of weft_neighbour_*.
const (
	FamilyIPv4 = "ipv4"
	FamilyIPv6 = "ipv6"
)

// NeighbourNeeded records how many neighbour entries this host needs.
func (m *Metrics) NeighbourNeeded(family string, n int64) {
	if m == nil {
		return
	}
	m.neighNeeded.WithLabelValues(family).Set(float64(n))
}

// NeighbourThresholds records the table's gc_thresh1, 2 and 3.
func (m *Metrics) NeighbourThresholds(family string, gc1, gc2, gc3 int64) {
	if m == nil {
		return
	}
	for i, v := range []int64{gc1, gc2, gc3} {
		m.neighThresh.WithLabelValues(family, strconv.Itoa(i+1)).Set(float64(v))
	}
}

// NeighbourTableFulls records the kernel's table_fulls counter as read.
func (m *Metrics) NeighbourTableFulls(family string, n uint64) {
	if m == nil {
		return
	}
	m.neighFulls.set(family, n)
}

// kernelCounter exports counters the kernel keeps: the value is the
// kernel's, read from time to time, so it is exposed as read rather than
// incremented here. A family appears once it has been read.
type kernelCounter struct {
	desc *prometheus.Desc
	mu   sync.Mutex        // guards v
	v    map[string]uint64 // by label value
}

func (c *kernelCounter) set(label string, n uint64) {
	c.mu.Lock()
	c.v[label] = n
	c.mu.Unlock()
}

func (c *kernelCounter) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *kernelCounter) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for l, n := range c.v {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(n), l)
	}
}
