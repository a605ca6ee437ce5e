package bench

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func pathSample(tcp1, tcp4, pps, rtt float64) PathSample {
	return PathSample{TCP1Gbps: Num(tcp1), TCP4Gbps: Num(tcp4), UDPpps: Num(pps), UDPLossPct: 1, RTTp50us: Num(rtt), RTTp99us: Num(2 * rtt), AgentCPUSeconds: NaN, AgentRSSMiB: NaN}
}

// result is a made-up run with every section, for the rendering tests.
func result() *Result {
	d := &DataPath{Rounds: 3, TransferSeconds: 5, PingCount: 500, Backends: []PathBackend{
		{Name: PathBaseline, Rounds: []PathSample{pathSample(10, 20, 500e3, 40), pathSample(12, 22, 520e3, 42), pathSample(11, 21, 510e3, 41)}},
		{Name: PathHostGW, Agent: true, Rounds: []PathSample{pathSample(10.9, 20.5, 505e3, 41), pathSample(10.7, 20.7, 500e3, 43), pathSample(11.5, 20.9, 490e3, 40)}},
		{Name: PathVXLANByHand, Rounds: []PathSample{pathSample(8, 16, 400e3, 50)}},
		{Name: PathVXLAN, Agent: true, Rounds: []PathSample{pathSample(7.8, 16.2, 390e3, 51)}},
		{Name: PathUDP, Agent: true, Rounds: []PathSample{pathSample(2, 2.2, 100e3, 90)}},
	}}
	for i := range d.Backends {
		if d.Backends[i].Agent {
			for j := range d.Backends[i].Rounds {
				d.Backends[i].Rounds[j].AgentCPUSeconds = 0.5
				d.Backends[i].Rounds[j].AgentRSSMiB = 45
			}
		}
	}
	d.Summarize()
	r := &Result{
		Machine:  Machine{CPUs: 2, CPUModel: "AMD EPYC", Kernel: "6.18", GoVersion: "go1.26", Weft: "dev"},
		Started:  time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Elapsed:  600,
		DataPath: d,
		Join:     []Join{{Backend: "host-gw", Hosts: 3, Joins: 50, JoinMs: Dist{N: 50, P50: 4, P99: 9}, LeaveMs: Dist{N: 50, P50: 3, P99: 7}}},
		Scale: []Scale{{Backend: "vxlan", Leases: 5000, Start: 1, Entries: 15000, ProgrammedSeconds: 1.4, ReadySeconds: 1.45,
			RSSMiB: 70, AnonMiB: 30, FileMiB: 40, PeakRSSMiB: 71, CPUSeconds: 1.3,
			SettledRSSMiB: 45, SettledAnonMiB: 25, SettledFileMiB: 20, SettleSeconds: 3}},
		Churn:   []Churn{{Backend: "vxlan", Leases: 5000, Rate: 100, Seconds: 30, Adds: 3000, Deletes: 3000, LagMs: Dist{N: 6000, P50: 50, P99: 90}, CPUSeconds: 9, RSSMiB: 72, AnonMiB: 31}},
		Restart: []Restart{{Backend: "host-gw", Signal: "SIGKILL", Sent: 300, Received: 300, RestartMs: 150}, {Backend: "vxlan", Signal: "SIGTERM", Sent: 300, Received: 299, Lost: 1, RestartMs: 160}},
	}
	r.Targets = Targets(r)
	return r
}

func TestSummarizeRatios(t *testing.T) {
	r := result()
	hg, _ := r.DataPath.Backend(PathHostGW)
	if hg.Median.TCP1Gbps != 10.9 || hg.Median.TCP4Gbps != 20.7 {
		t.Errorf("host-gw medians %+v", hg.Median)
	}
	// Round by round 10.9/10, 10.7/12, 11.5/11: the median is 11.5/11,
	// not the ratio of the medians (10.9/11).
	if got, want := float64(hg.VsBaseline.TCP1), 11.5/11; math.Abs(got-want) > 1e-9 {
		t.Errorf("host-gw TCP1 / baseline = %v, want %v (median of per-round ratios)", got, want)
	}
	if hg.VsReference != nil {
		t.Errorf("host-gw has a reference: %+v", hg.VsReference)
	}
	vx, _ := r.DataPath.Backend(PathVXLAN)
	if vx.Reference != PathVXLANByHand || vx.VsReference == nil || math.Abs(float64(vx.VsReference.TCP1)-7.8/8) > 1e-9 {
		t.Errorf("vxlan vs by-hand: %s %+v", vx.Reference, vx.VsReference)
	}
	u, _ := r.DataPath.Backend(PathUDP)
	if u.Reference != PathVXLAN || u.VsReference == nil || math.Abs(float64(u.VsReference.UDP)-100e3/390e3) > 1e-9 {
		t.Errorf("udp vs vxlan: %s %+v", u.Reference, u.VsReference)
	}
	base, _ := r.DataPath.Backend(PathBaseline)
	if base.Median.AgentCPUSeconds.OK() {
		t.Error("the baseline has agent CPU")
	}
}

func TestTargets(t *testing.T) {
	r := result()
	met := map[string]string{}
	for _, tg := range r.Targets {
		switch {
		case tg.Met == nil:
			met[tg.Name] = "not measured"
		case *tg.Met:
			met[tg.Name] = "yes"
		default:
			met[tg.Name] = "no"
		}
	}
	for name, want := range map[string]string{
		"host-gw TCP vs baseline":                     "yes", // 1.045 and 0.995 (per-round medians)
		"vxlan TCP vs by-hand VXLAN":                  "yes",
		"join p99, 3 hosts, host-gw":                  "yes",
		"5000 leases programmed and ready, vxlan":     "yes",
		"agent RSS at 5000 leases, vxlan":             "no",
		"churn lag p99, vxlan, 5000 leases":           "yes",
		"packets lost across agent restarts, host-gw": "yes",
		"packets lost across agent restarts, vxlan":   "no",
		"udp vs vxlan (reported, no target)":          "not measured",
	} {
		if met[name] != want {
			t.Errorf("target %q: met %q, want %q (all: %v)", name, met[name], want, met)
		}
	}
	// A run without a section leaves its targets unmeasured, not missed.
	empty := Targets(&Result{})
	for _, tg := range empty {
		if tg.Met != nil {
			t.Errorf("empty run judged %q: %v", tg.Name, *tg.Met)
		}
	}
	if len(empty) < 6 {
		t.Errorf("empty run lists %d targets, want every goal", len(empty))
	}
}

func TestWriteTables(t *testing.T) {
	var b bytes.Buffer
	if err := WriteTables(&b, result()); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"machine: 2 CPUs (AMD EPYC), Linux 6.18",
		"Data path, pod→pod across hosts: medians of 3 rounds, 5 s iperf3 transfers, 500 pings",
		"host-gw        10.90 Gbit/s (1.05×)",
		"vxlan / vxlan-by-hand",
		"udp / vxlan",
		"Join convergence",
		"Scale: one agent",
		"15000    1.400 s",
		"settled 45.0 MiB (anon 25.0 + file 20.0)",
		"Churn:",
		"100+100/s",
		"Restart continuity",
		"Targets (issue 6)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("tables lack %q:\n%s", want, out)
		}
	}
	// The data-path rows start their numbers in one column.
	var offs []int
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "Gbit/s") {
			offs = append(offs, strings.IndexAny(line, "0123456789"))
		}
	}
	if len(offs) != 5 || slices.Min(offs) != slices.Max(offs) {
		t.Errorf("data-path columns not aligned: %v\n%s", offs, out)
	}
	if strings.Contains(out, "NaN") {
		t.Errorf("a missing value rendered as NaN:\n%s", out)
	}
}

func TestJSONShape(t *testing.T) {
	var b bytes.Buffer
	if err := WriteJSON(&b, result()); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b.Bytes(), &m); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, b.String())
	}
	for _, k := range []string{"machine", "settings", "started", "elapsed_seconds", "datapath", "join", "scale", "churn", "restart", "targets"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	dp := m["datapath"].(map[string]any)
	bs := dp["backends"].([]any)
	base := bs[0].(map[string]any)
	if base["name"] != "baseline" {
		t.Fatalf("first backend %v", base["name"])
	}
	med := base["median"].(map[string]any)
	for _, k := range []string{"tcp1_gbps", "tcp4_gbps", "udp_pps", "udp_loss_pct", "rtt_p50_us", "rtt_p99_us", "agent_cpu_seconds", "agent_rss_mib"} {
		if _, ok := med[k]; !ok {
			t.Errorf("median lacks %q", k)
		}
	}
	if med["agent_cpu_seconds"] != nil {
		t.Errorf("baseline agent CPU = %v, want null", med["agent_cpu_seconds"])
	}
	if med["tcp1_gbps"] != 11.0 {
		t.Errorf("baseline tcp1 = %v", med["tcp1_gbps"])
	}
	vx := bs[3].(map[string]any)
	if vx["reference"] != "vxlan-by-hand" || vx["vs_reference"] == nil {
		t.Errorf("vxlan reference: %v %v", vx["reference"], vx["vs_reference"])
	}
	tg := m["targets"].([]any)[0].(map[string]any)
	for _, k := range []string{"name", "want", "got", "met"} {
		if _, ok := tg[k]; !ok {
			t.Errorf("target lacks %q", k)
		}
	}

	// And it reads back into a Result.
	var back Result
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.DataPath.Backends[0].Median.AgentCPUSeconds.OK() || back.Scale[0].Leases != 5000 {
		t.Errorf("round trip: %+v", back.DataPath.Backends[0].Median)
	}
}

func TestNumJSON(t *testing.T) {
	for _, c := range []struct {
		n    Num
		want string
	}{{1.23456789, "1.2346"}, {NaN, "null"}, {Num(math.Inf(1)), "null"}, {500000, "500000"}} {
		b, err := json.Marshal(c.n)
		if err != nil || string(b) != c.want {
			t.Errorf("Marshal(%v) = %s, %v; want %s", c.n, b, err, c.want)
		}
	}
}

// TestScaleTargetsUseMedians: with several starts, the memory and time
// targets are judged on the medians, so one unlucky start neither passes
// nor fails a target alone.
func TestScaleTargetsUseMedians(t *testing.T) {
	start := func(i int, prog, settled float64) Scale {
		return Scale{Backend: "host-gw", Leases: 5000, Start: i, ProgrammedSeconds: Num(prog), ReadySeconds: Num(prog + 0.01),
			RSSMiB: 50, PeakRSSMiB: 52, SettledRSSMiB: Num(settled), SettledAnonMiB: 15, SettledFileMiB: 20}
	}
	judged := func(ss ...Scale) map[string]bool {
		out := map[string]bool{}
		for _, tg := range Targets(&Result{Scale: ss}) {
			if tg.Met != nil {
				out[tg.Name] = *tg.Met
			}
		}
		return out
	}
	got := judged(start(1, 2.5, 45), start(2, 1.1, 35), start(3, 1.2, 38))
	if !got["agent RSS at 5000 leases, host-gw"] || !got["5000 leases programmed and ready, host-gw"] {
		t.Errorf("medians 38 MiB and 1.2 s judged %v, want both met", got)
	}
	got = judged(start(1, 1.0, 39), start(2, 2.2, 41), start(3, 2.3, 42))
	if got["agent RSS at 5000 leases, host-gw"] || got["5000 leases programmed and ready, host-gw"] {
		t.Errorf("medians 41 MiB and 2.2 s judged %v, want both missed", got)
	}
}

// TestIPv6RowsReferences checks that the IPv6 rows are judged against
// their own: host-gw-v6 against IPv6 routes typed by hand, vxlan-v6
// against vxlan over IPv4, wireguard-v6 against wireguard over IPv4.
func TestIPv6RowsReferences(t *testing.T) {
	d := &DataPath{Rounds: 1, Backends: []PathBackend{
		{Name: PathBaseline, Rounds: []PathSample{pathSample(10, 20, 500e3, 40)}},
		{Name: PathVXLAN, Agent: true, Rounds: []PathSample{pathSample(8, 16, 400e3, 50)}},
		{Name: PathBaselineV6, Rounds: []PathSample{pathSample(9, 18, 450e3, 45)}},
		{Name: PathHostGWV6, Agent: true, Rounds: []PathSample{pathSample(9, 18, 450e3, 45)}},
		{Name: PathVXLANV6, Agent: true, Rounds: []PathSample{pathSample(6, 16, 300e3, 60)}},
		{Name: PathWireGuard, Agent: true, Rounds: []PathSample{pathSample(4, 8, 200e3, 80)}},
		{Name: PathWireGuardV6, Agent: true, Rounds: []PathSample{pathSample(3, 8, 200e3, 80)}},
	}}
	d.Summarize()
	hg6, _ := d.Backend(PathHostGWV6)
	if hg6.Reference != PathBaselineV6 || hg6.VsReference == nil || float64(hg6.VsReference.TCP1) != 1 {
		t.Errorf("host-gw-v6 reference %q %+v, want baseline-v6 at 1.0", hg6.Reference, hg6.VsReference)
	}
	vx6, _ := d.Backend(PathVXLANV6)
	if vx6.Reference != PathVXLAN || vx6.VsReference == nil || math.Abs(float64(vx6.VsReference.TCP1)-6.0/8) > 1e-9 {
		t.Errorf("vxlan-v6 reference %q %+v, want vxlan at 0.75", vx6.Reference, vx6.VsReference)
	}
	wg6, _ := d.Backend(PathWireGuardV6)
	if wg6.Reference != PathWireGuard || wg6.VsReference == nil || math.Abs(float64(wg6.VsReference.TCP1)-3.0/4) > 1e-9 {
		t.Errorf("wireguard-v6 reference %q %+v, want wireguard at 0.75", wg6.Reference, wg6.VsReference)
	}
	if !isIPv6Path(PathBaselineV6) || !isIPv6Path(PathWireGuardV6) || isIPv6Path(PathBaseline) {
		t.Error("isIPv6Path")
	}
}
