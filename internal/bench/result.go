package bench

import (
	"bytes"
	"math"
	"strconv"
	"time"
)

// Num is one measured number. NaN means "not measured" or "meaningless
// here" (the CPU of an agent that does not run) and encodes as JSON null.
type Num float64

// NaN is the Num for a missing value.
var NaN = Num(math.NaN())

// OK reports whether n holds a value.
func (n Num) OK() bool { return !math.IsNaN(float64(n)) && !math.IsInf(float64(n), 0) }

// MarshalJSON writes null for a missing value, else the number rounded to
// four decimals (no measurement here is more precise than that).
func (n Num) MarshalJSON() ([]byte, error) {
	if !n.OK() {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, math.Round(float64(n)*1e4)/1e4, 'f', -1, 64), nil
}

// UnmarshalJSON reads what MarshalJSON writes.
func (n *Num) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("null")) {
		*n = NaN
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return err
	}
	*n = Num(f)
	return nil
}

// Nums converts samples, leaving out missing ones.
func nums(xs []Num) []float64 {
	out := make([]float64, 0, len(xs))
	for _, x := range xs {
		if x.OK() {
			out = append(out, float64(x))
		}
	}
	return out
}

// MedianOf is the median of the values present; NaN when none is.
func MedianOf(xs []Num) Num {
	f := nums(xs)
	if len(f) == 0 {
		return NaN
	}
	return Num(Median(f))
}

// RatioOf is a/b as a Num; NaN when either is missing or not positive.
func RatioOf(a, b Num) Num { return Num(Ratio(float64(a), float64(b))) }

// Result is everything one run measured; `weft lab bench -o json` prints
// it. Sections not run are left out.
type Result struct {
	Machine  Machine   `json:"machine"`
	Settings Settings  `json:"settings"`
	Started  time.Time `json:"started"`
	Elapsed  Num       `json:"elapsed_seconds"`

	DataPath *DataPath `json:"datapath,omitempty"`
	Join     []Join    `json:"join,omitempty"`
	Scale    []Scale   `json:"scale,omitempty"`
	Churn    []Churn   `json:"churn,omitempty"`
	Restart  []Restart `json:"restart,omitempty"`

	RulesResync []RulesResync `json:"rules_resync,omitempty"`
	UDPFast     *UDPFast      `json:"udp_fast,omitempty"` // udpfast.go

	Targets []Target `json:"targets,omitempty"`
	// Errors are the sections (or backends of a section) that failed; the
	// rest of the run went on without them.
	Errors []string `json:"errors,omitempty"`
}

// Machine is where the numbers were measured.
type Machine struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model"`
	Kernel    string `json:"kernel"`
	GoVersion string `json:"go_version"`
	Weft      string `json:"weft_version"`
}

// Settings are the options the run used, for the record.
type Settings struct {
	Sections        []string `json:"sections"`
	Backends        []string `json:"backends"`
	Rounds          int      `json:"rounds"`
	TransferSeconds float64  `json:"transfer_seconds"`
	PingCount       int      `json:"ping_count"`
	Joins           int      `json:"joins"`
	Leases          []int    `json:"leases"`
	ChurnRate       float64  `json:"churn_rate"`
	ChurnSeconds    float64  `json:"churn_seconds"`
	AgentArgs       []string `json:"agent_args,omitempty"`
}

// Data-path backends, in table order. Baseline and by-hand VXLAN run no
// agent.
const (
	PathBaseline = "baseline"
	// PathBaselineAgain is a second, identical baseline lab: the ratio of
	// two identical data paths shows how far this machine's noise alone
	// moves a ratio (an A/A control).
	PathBaselineAgain = "baseline-2"
	PathHostGW        = "host-gw"
	// PathHostGWMasq is host-gw with --ip-masq: what masquerading, and
	// the connection tracking it turns on, costs.
	PathHostGWMasq  = "host-gw+masq"
	PathVXLAN       = "vxlan"
	PathVXLANByHand = "vxlan-by-hand"
	PathUDP         = "udp"
	// PathWireGuard is the wireguard backend (WireGuard in the agent);
	// PathWireGuardGo the same tunnels made by standalone wireguard-go
	// processes, its reference.
	PathWireGuard   = "wireguard"
	PathWireGuardGo = "wireguard-go"
	// The IPv6 rows (--ipv6): the same data paths between the pods' IPv6
	// addresses in dual-stack labs. host-gw-v6 is judged against IPv6
	// routes typed by hand, vxlan-v6 (flannel-v6.1 over the IPv6
	// underlay) against vxlan over IPv4, which shows what the longer
	// IPv6 encapsulation costs.
	PathBaselineV6 = "baseline-v6"
	PathHostGWV6   = "host-gw-v6"
	PathVXLANV6    = "vxlan-v6"
	// PathWireGuardV6 is the wireguard backend's flannel-wg-v6 (Mode
	// separate, WireGuard over the IPv6 underlay), judged against the
	// wireguard row over IPv4 in the same run.
	PathWireGuardV6 = "wireguard-v6"
)

// isIPv6Path says whether the named data path runs between IPv6 addresses.
func isIPv6Path(name string) bool {
	return name == PathBaselineV6 || name == PathHostGWV6 || name == PathVXLANV6 || name == PathWireGuardV6
}

// DataPath is the data-path section.
type DataPath struct {
	Rounds          int           `json:"rounds"`
	TransferSeconds float64       `json:"transfer_seconds"`
	PingCount       int           `json:"ping_count"`
	Backends        []PathBackend `json:"backends"`
}

// PathBackend is one backend's data-path numbers.
type PathBackend struct {
	Name  string `json:"name"`
	Agent bool   `json:"agent"`
	// Rounds are the samples, one per round; Median is their per-metric
	// median.
	Rounds []PathSample `json:"rounds"`
	Median PathSample   `json:"median"`
	// VsBaseline are the ratios to the baseline: the median over rounds of
	// each round's ratio (see pairedRatios; for RTT, >1 means slower).
	VsBaseline PathRatios `json:"vs_baseline"`
	// Reference is what else this backend is compared with: the baseline
	// with weft's rules for host-gw, by-hand VXLAN for vxlan, vxlan for udp.
	Reference   string      `json:"reference,omitempty"`
	VsReference *PathRatios `json:"vs_reference,omitempty"`
}

// PathSample is one round of one backend.
type PathSample struct {
	TCP1Gbps Num `json:"tcp1_gbps"`
	TCP4Gbps Num `json:"tcp4_gbps"`
	// UDPpps is 1400-byte datagrams received per second with the sender
	// unlimited (-b 0); UDPLossPct is the share the receiver missed.
	UDPpps     Num `json:"udp_pps"`
	UDPLossPct Num `json:"udp_loss_pct"`
	RTTp50us   Num `json:"rtt_p50_us"`
	RTTp99us   Num `json:"rtt_p99_us"`
	// AgentCPUSeconds is the CPU time of both hosts' agents (and of the
	// programs they ran) summed over the three iperf3 transfers; null
	// where no agent runs.
	AgentCPUSeconds Num `json:"agent_cpu_seconds"`
	// AgentRSSMiB is the larger VmRSS of the two agents after the
	// transfers.
	AgentRSSMiB Num `json:"agent_rss_mib"`
}

// PathRatios compare two backends' medians.
type PathRatios struct {
	TCP1   Num `json:"tcp1"`
	TCP4   Num `json:"tcp4"`
	UDP    Num `json:"udp_pps"`
	RTTp50 Num `json:"rtt_p50"`
}

func ratios(a, b PathSample) PathRatios {
	return PathRatios{
		TCP1:   RatioOf(a.TCP1Gbps, b.TCP1Gbps),
		TCP4:   RatioOf(a.TCP4Gbps, b.TCP4Gbps),
		UDP:    RatioOf(a.UDPpps, b.UDPpps),
		RTTp50: RatioOf(a.RTTp50us, b.RTTp50us),
	}
}

// pairedRatios compares two backends round by round, each round's sample
// of a with the same round's of b (measured minutes apart at most, in
// the same interleaved pass), and takes the median of those ratios. That
// cancels the drift of a shared machine better than a ratio of medians,
// whose two medians may come from different rounds. With rounds missing
// on either side it falls back to the ratio of medians.
func pairedRatios(a, b PathBackend) PathRatios {
	if len(a.Rounds) == 0 || len(a.Rounds) != len(b.Rounds) {
		return ratios(a.Median, b.Median)
	}
	per := make([]PathRatios, len(a.Rounds))
	for i := range a.Rounds {
		per[i] = ratios(a.Rounds[i], b.Rounds[i])
	}
	pick := func(f func(PathRatios) Num) Num {
		xs := make([]Num, len(per))
		for i, r := range per {
			xs[i] = f(r)
		}
		return MedianOf(xs)
	}
	return PathRatios{
		TCP1:   pick(func(r PathRatios) Num { return r.TCP1 }),
		TCP4:   pick(func(r PathRatios) Num { return r.TCP4 }),
		UDP:    pick(func(r PathRatios) Num { return r.UDP }),
		RTTp50: pick(func(r PathRatios) Num { return r.RTTp50 }),
	}
}

// medianSample is the per-metric median of samples.
func medianSample(ss []PathSample) PathSample {
	pick := func(f func(PathSample) Num) Num {
		xs := make([]Num, len(ss))
		for i, s := range ss {
			xs[i] = f(s)
		}
		return MedianOf(xs)
	}
	return PathSample{
		TCP1Gbps:        pick(func(s PathSample) Num { return s.TCP1Gbps }),
		TCP4Gbps:        pick(func(s PathSample) Num { return s.TCP4Gbps }),
		UDPpps:          pick(func(s PathSample) Num { return s.UDPpps }),
		UDPLossPct:      pick(func(s PathSample) Num { return s.UDPLossPct }),
		RTTp50us:        pick(func(s PathSample) Num { return s.RTTp50us }),
		RTTp99us:        pick(func(s PathSample) Num { return s.RTTp99us }),
		AgentCPUSeconds: pick(func(s PathSample) Num { return s.AgentCPUSeconds }),
		AgentRSSMiB:     pick(func(s PathSample) Num { return s.AgentRSSMiB }),
	}
}

// Summarize fills every backend's Median, its ratios to the baseline, and
// the reference comparisons (vxlan to by-hand VXLAN, udp to vxlan), from
// the rounds. Ratios are medians of per-round ratios (pairedRatios).
func (d *DataPath) Summarize() {
	idx := map[string]int{}
	for i := range d.Backends {
		b := &d.Backends[i]
		b.Median = medianSample(b.Rounds)
		idx[b.Name] = i
	}
	refOf := map[string]string{PathHostGWMasq: PathHostGW, PathVXLAN: PathVXLANByHand, PathUDP: PathVXLAN, PathWireGuard: PathWireGuardGo,
		PathHostGWV6: PathBaselineV6, PathVXLANV6: PathVXLAN, PathWireGuardV6: PathWireGuard}
	for i := range d.Backends {
		b := &d.Backends[i]
		if j, ok := idx[PathBaseline]; ok {
			b.VsBaseline = pairedRatios(*b, d.Backends[j])
		} else {
			b.VsBaseline = PathRatios{NaN, NaN, NaN, NaN}
		}
		b.Reference, b.VsReference = "", nil
		if ref, ok := refOf[b.Name]; ok {
			if j, ok := idx[ref]; ok {
				r := pairedRatios(*b, d.Backends[j])
				b.Reference, b.VsReference = ref, &r
			}
		}
	}
}

// Backend returns the named backend's numbers.
func (d *DataPath) Backend(name string) (PathBackend, bool) {
	for _, b := range d.Backends {
		if b.Name == name {
			return b, true
		}
	}
	return PathBackend{}, false
}

// Join is the join-convergence section for one backend.
type Join struct {
	Backend string `json:"backend"`
	Hosts   int    `json:"hosts"`
	Joins   int    `json:"joins"`
	// JoinMs: from just before the lease's etcd write to the last of its
	// kernel entries (route; for vxlan also neighbour and FDB) appearing
	// on the last host. LeaveMs: the same for the lease's deletion and the
	// entries disappearing.
	JoinMs  Dist `json:"join_ms"`
	LeaveMs Dist `json:"leave_ms"`
	// Missed counts joins or leaves not complete within the timeout; they
	// are not in the distributions.
	Missed int `json:"missed"`
}

// Scale is one agent started facing many synthetic leases.
type Scale struct {
	Backend string `json:"backend"`
	Leases  int    `json:"leases"`
	// Start numbers the agent starts at this count, from 1.
	Start int `json:"start"`
	// Entries is how many kernel entries the leases ask for (routes; for
	// vxlan also neighbours and FDB entries).
	Entries int `json:"entries"`
	// ProgrammedSeconds: from starting the agent process to the last entry
	// in the kernel. ReadySeconds: to /readyz answering 200.
	ProgrammedSeconds Num `json:"programmed_seconds"`
	ReadySeconds      Num `json:"ready_seconds"`
	// RSSMiB is VmRSS when everything is programmed, PeakRSSMiB VmHWM
	// then; AnonMiB and FileMiB split RSSMiB into the agent's own memory
	// (RssAnon) and the pages of the weft executable it has touched
	// (RssFile, shared with every weft process). CPUSeconds is
	// utime+stime (children included) from the agent's start until then.
	RSSMiB     Num `json:"rss_mib"`
	PeakRSSMiB Num `json:"peak_rss_mib"`
	AnonMiB    Num `json:"rss_anon_mib"`
	FileMiB    Num `json:"rss_file_mib"`
	CPUSeconds Num `json:"cpu_seconds"`
	// SettledRSSMiB, SettledAnonMiB and SettledFileMiB are the same
	// readings SettleSeconds after ready: what the agent keeps once the
	// start's transient allocations are collected, which is what an
	// operator's monitoring sees.
	SettledRSSMiB  Num     `json:"settled_rss_mib"`
	SettledAnonMiB Num     `json:"settled_rss_anon_mib"`
	SettledFileMiB Num     `json:"settled_rss_file_mib"`
	SettleSeconds  float64 `json:"settle_seconds"`
	// Missing entries were not programmed within the timeout.
	Missing int `json:"missing"`
}

// Churn is lease adds and deletes at a steady rate against one agent.
type Churn struct {
	Backend string  `json:"backend"`
	Leases  int     `json:"leases"`  // the standing set the churn runs against
	Rate    float64 `json:"rate"`    // adds per second asked for (and as many deletes)
	Seconds float64 `json:"seconds"` // how long it ran
	Adds    int     `json:"adds"`
	Deletes int     `json:"deletes"`
	// LagMs: from just before each etcd write to the kernel change it
	// causes (the route's appearance or disappearance).
	LagMs Dist `json:"lag_ms"`
	// Unobserved writes never showed in the kernel.
	Unobserved int `json:"unobserved"`
	// Lost and Stale compare the kernel with etcd after the churn settled:
	// entries of leases in etcd that the kernel lacks, and entries the
	// kernel holds for leases that are gone.
	Lost       int `json:"lost"`
	Stale      int `json:"stale"`
	CPUSeconds Num `json:"cpu_seconds"`  // the agent's, during the churn
	RSSMiB     Num `json:"rss_mib"`      // after it
	AnonMiB    Num `json:"rss_anon_mib"` // its RssAnon part
}

// Restart is pod→pod ping loss across agent restarts.
type Restart struct {
	Backend  string `json:"backend"`
	Signal   string `json:"signal"` // SIGTERM or SIGKILL
	Sent     int    `json:"sent"`
	Received int    `json:"received"`
	Lost     int    `json:"lost"`
	// RestartMs is the longest time from signalling an agent to the new
	// one answering /readyz.
	RestartMs Num `json:"restart_ms"`
}

// Target is one of issue 6's goals, judged from a result.
type Target struct {
	Name string `json:"name"`
	Want string `json:"want"`
	Got  string `json:"got"`
	// Met is nil when the run did not measure what the target needs.
	Met *bool `json:"met"`
}
