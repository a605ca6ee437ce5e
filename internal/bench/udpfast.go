package bench

import (
	"fmt"
	"strings"
)

// The udp-fast section (issue 15) measures the udp backend's data paths
// against kernel VXLAN on the same machine, in interleaved rounds: the
// offload path, the batched path it falls back to (--udp-offload=false),
// and a VXLAN device typed by hand (no agent) as the reference.

// SectionUDPFast is the udp-fast section's name for --only.
const SectionUDPFast = "udp-fast"

// The udp-fast subjects.
const (
	UDPFastVXLAN   = "kernel-vxlan"
	UDPFastOffload = "udp-offload"
	UDPFastBatch   = "udp-batch"
)

// UDPFast is the udp-fast section's result.
type UDPFast struct {
	Rounds          int     `json:"rounds"`
	TransferSeconds float64 `json:"transfer_seconds"`
	// PingCount is the pings at 10 ms of each RTT measurement, idle and
	// under load.
	PingCount int `json:"ping_count"`
	// LoadBefore and LoadAfter are the machine's 1-minute load average
	// when the section started and ended: the machine is shared, and a
	// busy neighbour moves every number.
	LoadBefore Num              `json:"load_before"`
	LoadAfter  Num              `json:"load_after"`
	Subjects   []UDPFastSubject `json:"subjects"`
}

// UDPFastSubject is one data path's rounds, their medians and its
// ratios to kernel VXLAN.
type UDPFastSubject struct {
	Name    string          `json:"name"`
	Rounds  []UDPFastSample `json:"rounds"`
	Median  UDPFastSample   `json:"median"`
	VsVXLAN UDPFastRatios   `json:"vs_vxlan"`
}

// UDPFastSample is one round of one subject.
type UDPFastSample struct {
	TCP1Gbps Num `json:"tcp1_gbps"`
	TCP4Gbps Num `json:"tcp4_gbps"`
	// CoreSecondsPerGbit is the CPU time of both hosts' agents over the
	// two TCP transfers divided by the gigabits they moved; null without
	// agents (kernel VXLAN's cost is in softirq, not in a process).
	CoreSecondsPerGbit Num `json:"core_seconds_per_gbit"`
	RTTp50us           Num `json:"rtt_p50_us"`
	// LoadedRTTp50us and LoadedLossPct are of pings sent while a single
	// TCP stream fills the path.
	LoadedRTTp50us Num `json:"loaded_rtt_p50_us"`
	LoadedLossPct  Num `json:"loaded_loss_pct"`
}

// UDPFastRatios are a subject's ratios to kernel VXLAN: the median of
// the per-round ratios.
type UDPFastRatios struct {
	TCP1   Num `json:"tcp1"`
	TCP4   Num `json:"tcp4"`
	RTTp50 Num `json:"rtt_p50"`
}

// summarize fills the medians and the ratios to kernel VXLAN.
func (u *UDPFast) summarize() {
	var ref *UDPFastSubject
	for i := range u.Subjects {
		if u.Subjects[i].Name == UDPFastVXLAN {
			ref = &u.Subjects[i]
		}
	}
	for i := range u.Subjects {
		s := &u.Subjects[i]
		col := func(get func(UDPFastSample) Num) Num {
			var xs []Num
			for _, r := range s.Rounds {
				xs = append(xs, get(r))
			}
			return MedianOf(xs)
		}
		s.Median = UDPFastSample{
			TCP1Gbps:           col(func(r UDPFastSample) Num { return r.TCP1Gbps }),
			TCP4Gbps:           col(func(r UDPFastSample) Num { return r.TCP4Gbps }),
			CoreSecondsPerGbit: col(func(r UDPFastSample) Num { return r.CoreSecondsPerGbit }),
			RTTp50us:           col(func(r UDPFastSample) Num { return r.RTTp50us }),
			LoadedRTTp50us:     col(func(r UDPFastSample) Num { return r.LoadedRTTp50us }),
			LoadedLossPct:      col(func(r UDPFastSample) Num { return r.LoadedLossPct }),
		}
		s.VsVXLAN = UDPFastRatios{NaN, NaN, NaN}
		if ref == nil || ref == s {
			continue
		}
		ratio := func(get func(UDPFastSample) Num) Num {
			var xs []Num
			for j := range min(len(s.Rounds), len(ref.Rounds)) {
				a, b := get(s.Rounds[j]), get(ref.Rounds[j])
				if a.OK() && b.OK() && b != 0 {
					xs = append(xs, a/b)
				}
			}
			return MedianOf(xs)
		}
		s.VsVXLAN = UDPFastRatios{
			TCP1:   ratio(func(r UDPFastSample) Num { return r.TCP1Gbps }),
			TCP4:   ratio(func(r UDPFastSample) Num { return r.TCP4Gbps }),
			RTTp50: ratio(func(r UDPFastSample) Num { return r.RTTp50us }),
		}
	}
}

func writeUDPFast(b *strings.Builder, u *UDPFast) {
	rows := [][]string{{"PATH", "TCP 1 STREAM", "TCP 4 STREAMS", "AGENT CORE·S/GBIT", "RTT P50 IDLE", "RTT P50 LOADED", "PING LOSS LOADED"}}
	for _, s := range u.Subjects {
		m, v := s.Median, s.VsVXLAN
		rows = append(rows, []string{
			s.Name,
			withRatio(f("%.2f Gbit/s", m.TCP1Gbps), v.TCP1),
			withRatio(f("%.2f Gbit/s", m.TCP4Gbps), v.TCP4),
			f("%.3f", m.CoreSecondsPerGbit),
			withRatio(f("%.0f µs", m.RTTp50us), v.RTTp50),
			f("%.0f µs", m.LoadedRTTp50us),
			f("%.1f %%", m.LoadedLossPct),
		})
	}
	table(b, fmt.Sprintf("udp fast path (issue 15), pod→pod across hosts: medians of %d rounds, %.0f s iperf3 transfers, %d pings at 10 ms; (×) = ratio to %s, median of per-round ratios; load average %.2f before, %.2f after",
		u.Rounds, u.TransferSeconds, u.PingCount, UDPFastVXLAN, float64(u.LoadBefore), float64(u.LoadAfter)), rows)
	b.WriteString("AGENT CORE·S/GBIT: CPU time of both hosts' agents over the TCP 1 and TCP 4 transfers per gigabit moved; LOADED: pings while one TCP stream runs.\n")
}
