package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteJSON writes r as indented JSON.
func WriteJSON(w io.Writer, r *Result) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode benchmark result: %w", err)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// WriteTables renders every section of r that ran as aligned text tables,
// then the targets and any errors.
func WriteTables(w io.Writer, r *Result) error {
	var b strings.Builder
	m := r.Machine
	fmt.Fprintf(&b, "machine: %d CPUs (%s), Linux %s, %s, weft %s\n", m.CPUs, m.CPUModel, m.Kernel, m.GoVersion, m.Weft)
	if d := r.DataPath; d != nil {
		b.WriteString("\n")
		writeDataPath(&b, d)
	}
	if len(r.Join) > 0 {
		b.WriteString("\n")
		writeJoin(&b, r.Join)
	}
	if len(r.Scale) > 0 {
		b.WriteString("\n")
		writeScale(&b, r.Scale)
	}
	if len(r.Churn) > 0 {
		b.WriteString("\n")
		writeChurn(&b, r.Churn)
	}
	if len(r.Restart) > 0 {
		b.WriteString("\n")
		writeRestart(&b, r.Restart)
	}
	if len(r.RulesResync) > 0 {
		b.WriteString("\n")
		writeRulesResync(&b, r.RulesResync)
	}
	if r.UDPFast != nil {
		b.WriteString("\n")
		writeUDPFast(&b, r.UDPFast)
	}
	if len(r.Targets) > 0 {
		b.WriteString("\n")
		writeTargets(&b, r.Targets)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(&b, "\nerror: %s\n", e)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func table(b *strings.Builder, title string, rows [][]string) {
	b.WriteString(title + "\n")
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	_ = tw.Flush()
}

// f formats n with the given verb, or "-" when it is missing.
func f(format string, n Num) string {
	if !n.OK() {
		return "-"
	}
	return fmt.Sprintf(format, float64(n))
}

// withRatio is "value (ratio×)", the ratio left out when missing.
func withRatio(value string, r Num) string {
	if !r.OK() || value == "-" {
		return value
	}
	return fmt.Sprintf("%s (%.2f×)", value, float64(r))
}

func writeDataPath(b *strings.Builder, d *DataPath) {
	rows := [][]string{{"BACKEND", "TCP 1 STREAM", "TCP 4 STREAMS", "UDP 1400 B", "UDP LOSS", "RTT P50", "RTT P99", "AGENT CPU", "AGENT RSS"}}
	for _, p := range d.Backends {
		m, v := p.Median, p.VsBaseline
		if p.Name == PathBaseline {
			v = PathRatios{NaN, NaN, NaN, NaN}
		}
		rows = append(rows, []string{
			p.Name,
			withRatio(f("%.2f Gbit/s", m.TCP1Gbps), v.TCP1),
			withRatio(f("%.2f Gbit/s", m.TCP4Gbps), v.TCP4),
			withRatio(f("%.0f kpps", m.UDPpps/1000), v.UDP),
			f("%.1f %%", m.UDPLossPct),
			f("%.0f µs", m.RTTp50us),
			f("%.0f µs", m.RTTp99us),
			f("%.2f s", m.AgentCPUSeconds),
			f("%.1f MiB", m.AgentRSSMiB),
		})
	}
	table(b, fmt.Sprintf("Data path, pod→pod across hosts: medians of %d rounds, %.0f s iperf3 transfers, %d pings at 10 ms; (×) = ratio to baseline, median of per-round ratios",
		d.Rounds, d.TransferSeconds, d.PingCount), rows)
	b.WriteString("AGENT CPU: utime+stime (children included) of both hosts' agents over the three transfers; AGENT RSS: the larger agent's VmRSS.\n\n")

	rows = [][]string{{"RATIO", "TCP 1", "TCP 4", "UDP PPS", "RTT P50"}}
	add := func(name string, r PathRatios) {
		rows = append(rows, []string{name, f("%.3f", r.TCP1), f("%.3f", r.TCP4), f("%.3f", r.UDP), f("%.3f", r.RTTp50)})
	}
	for _, p := range d.Backends {
		if p.Name == PathBaseline {
			continue
		}
		add(p.Name+" / "+PathBaseline, p.VsBaseline)
		if p.VsReference != nil {
			add(p.Name+" / "+p.Reference, *p.VsReference)
		}
	}
	table(b, "Ratios: median over rounds of each round's ratio (throughput: higher is better; RTT: lower is better)", rows)
}

func writeJoin(b *strings.Builder, js []Join) {
	rows := [][]string{{"BACKEND", "HOSTS", "JOINS", "JOIN P50", "JOIN P90", "JOIN P99", "JOIN MAX", "LEAVE P50", "LEAVE P99", "MISSED"}}
	for _, j := range js {
		rows = append(rows, []string{
			j.Backend, fmt.Sprint(j.Hosts), fmt.Sprint(j.Joins),
			ms(j.JoinMs.P50, j.JoinMs.N), ms(j.JoinMs.P90, j.JoinMs.N), ms(j.JoinMs.P99, j.JoinMs.N), ms(j.JoinMs.Max, j.JoinMs.N),
			ms(j.LeaveMs.P50, j.LeaveMs.N), ms(j.LeaveMs.P99, j.LeaveMs.N), fmt.Sprint(j.Missed),
		})
	}
	table(b, "Join convergence: lease written to etcd → route (vxlan: + neighbour + FDB) in the kernel of every host", rows)
}

func ms(v float64, n int) string {
	if n == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f ms", v)
}

func writeScale(b *strings.Builder, ss []Scale) {
	rows := [][]string{{"BACKEND", "LEASES", "START", "ENTRIES", "PROGRAMMED", "READY", "RSS", "ANON", "FILE", "PEAK RSS", "SETTLED RSS", "ANON", "FILE", "CPU", "MISSING"}}
	for _, s := range ss {
		rows = append(rows, []string{
			s.Backend, fmt.Sprint(s.Leases), fmt.Sprint(s.Start), fmt.Sprint(s.Entries),
			f("%.3f s", s.ProgrammedSeconds), f("%.3f s", s.ReadySeconds),
			f("%.1f MiB", s.RSSMiB), f("%.1f MiB", s.AnonMiB), f("%.1f MiB", s.FileMiB),
			f("%.1f MiB", s.PeakRSSMiB),
			f("%.1f MiB", s.SettledRSSMiB), f("%.1f MiB", s.SettledAnonMiB), f("%.1f MiB", s.SettledFileMiB),
			f("%.2f s", s.CPUSeconds), fmt.Sprint(s.Missing),
		})
	}
	table(b, "Scale: one agent started facing N synthetic leases (times from starting the process; RSS when the last entry appeared, PEAK = VmHWM, SETTLED a few seconds after ready; RSS = ANON, the agent's own memory, + FILE, executable pages shared by every process running the same binary)", rows)
}

func writeChurn(b *strings.Builder, cs []Churn) {
	rows := [][]string{{"BACKEND", "LEASES", "RATE", "ADDS", "DELETES", "LAG P50", "LAG P99", "LAG MAX", "UNOBSERVED", "LOST", "STALE", "CPU", "RSS", "ANON"}}
	for _, c := range cs {
		rows = append(rows, []string{
			c.Backend, fmt.Sprint(c.Leases), fmt.Sprintf("%.0f+%.0f/s", c.Rate, c.Rate),
			fmt.Sprint(c.Adds), fmt.Sprint(c.Deletes),
			ms(c.LagMs.P50, c.LagMs.N), ms(c.LagMs.P99, c.LagMs.N), ms(c.LagMs.Max, c.LagMs.N),
			fmt.Sprint(c.Unobserved), fmt.Sprint(c.Lost), fmt.Sprint(c.Stale),
			f("%.2f s", c.CPUSeconds), f("%.1f MiB", c.RSSMiB), f("%.1f MiB", c.AnonMiB),
		})
	}
	table(b, "Churn: lease adds + deletes against one agent; lag from the etcd write to the kernel change", rows)
}

func writeRestart(b *strings.Builder, rs []Restart) {
	rows := [][]string{{"BACKEND", "SIGNAL", "SENT", "RECEIVED", "LOST", "RESTART"}}
	for _, r := range rs {
		rows = append(rows, []string{r.Backend, r.Signal, fmt.Sprint(r.Sent), fmt.Sprint(r.Received), fmt.Sprint(r.Lost), f("%.0f ms", r.RestartMs)})
	}
	table(b, "Restart continuity: pod→pod ping -i 0.01 while both hosts' agents are restarted one after the other", rows)
}

func writeTargets(b *strings.Builder, ts []Target) {
	rows := [][]string{{"TARGET", "WANT", "GOT", "MET"}}
	for _, t := range ts {
		met := "not measured"
		if t.Met != nil {
			met = "no"
			if *t.Met {
				met = "yes"
			}
		}
		rows = append(rows, []string{t.Name, t.Want, t.Got, met})
	}
	table(b, "Targets (issue 6)", rows)
}

// Targets judges r against issue 6's goals. A goal whose numbers the run
// did not produce is listed as not measured.
func Targets(r *Result) []Target {
	var ts []Target
	judge := func(name, want string, got string, met bool, ok bool) {
		t := Target{Name: name, Want: want, Got: got}
		if ok {
			t.Met = &met
		}
		ts = append(ts, t)
	}
	path := func(name string) (PathBackend, bool) {
		if r.DataPath == nil {
			return PathBackend{}, false
		}
		return r.DataPath.Backend(name)
	}

	if hg, ok := path(PathHostGW); ok {
		v := hg.VsBaseline
		judge("host-gw TCP vs baseline", "≥ 0.98×",
			fmt.Sprintf("%s (1 stream), %s (4 streams)", f("%.3f×", v.TCP1), f("%.3f×", v.TCP4)),
			v.TCP1 >= 0.98 && v.TCP4 >= 0.98, v.TCP1.OK() && v.TCP4.OK())
	} else {
		judge("host-gw TCP vs baseline", "≥ 0.98×", "-", false, false)
	}
	if vx, ok := path(PathVXLAN); ok && vx.VsReference != nil {
		v := *vx.VsReference
		judge("vxlan TCP vs by-hand VXLAN", "≥ 0.95×",
			fmt.Sprintf("%s (1 stream), %s (4 streams)", f("%.3f×", v.TCP1), f("%.3f×", v.TCP4)),
			v.TCP1 >= 0.95 && v.TCP4 >= 0.95, v.TCP1.OK() && v.TCP4.OK())
	} else {
		judge("vxlan TCP vs by-hand VXLAN", "≥ 0.95×", "-", false, false)
	}
	if u, ok := path(PathUDP); ok && u.VsReference != nil {
		v := *u.VsReference
		judge("udp vs vxlan (reported, no target)", "as fast as possible",
			fmt.Sprintf("%s TCP 1, %s TCP 4, %s UDP pps", f("%.3f×", v.TCP1), f("%.3f×", v.TCP4), f("%.3f×", v.UDP)), false, false)
	}

	ts = append(ts, wireguardTargets(r.DataPath)...)

	for _, j := range r.Join {
		judge(fmt.Sprintf("join p99, %d hosts, %s", j.Hosts, j.Backend), "< 100 ms",
			fmt.Sprintf("%.1f ms (%d missed)", j.JoinMs.P99, j.Missed), j.JoinMs.P99 < 100 && j.Missed == 0, j.JoinMs.N > 0)
	}
	if len(r.Join) == 0 {
		judge("join p99, 3 hosts", "< 100 ms", "-", false, false)
	}

	scaled := false
	for _, backend := range []string{"host-gw", "vxlan"} {
		var runs []Scale
		for _, s := range r.Scale {
			if s.Leases == 5000 && s.Backend == backend {
				runs = append(runs, s)
			}
		}
		if len(runs) == 0 {
			continue
		}
		scaled = true
		med := func(get func(Scale) Num) Num {
			xs := make([]Num, len(runs))
			for i, s := range runs {
				xs[i] = get(s)
			}
			return MedianOf(xs)
		}
		missing := 0
		for _, s := range runs {
			missing += s.Missing
		}
		prog, ready := med(func(s Scale) Num { return s.ProgrammedSeconds }), med(func(s Scale) Num { return s.ReadySeconds })
		rss, anon, file := med(func(s Scale) Num { return s.SettledRSSMiB }), med(func(s Scale) Num { return s.SettledAnonMiB }), med(func(s Scale) Num { return s.SettledFileMiB })
		atProg, peak := med(func(s Scale) Num { return s.RSSMiB }), med(func(s Scale) Num { return s.PeakRSSMiB })
		judge(fmt.Sprintf("5000 leases programmed and ready, %s", backend), "< 2 s",
			fmt.Sprintf("programmed %s, ready %s (median of %d starts)", f("%.2f s", prog), f("%.2f s", ready), len(runs)),
			prog < 2 && ready < 2 && missing == 0, prog.OK() && ready.OK())
		judge(fmt.Sprintf("agent RSS at 5000 leases, %s", backend), "< 40 MiB",
			fmt.Sprintf("settled %s (anon %s + file %s); %s when programmed, peak %s (medians)", f("%.1f MiB", rss),
				f("%.1f", anon), f("%.1f", file), f("%.1f MiB", atProg), f("%.1f MiB", peak)),
			rss < 40, rss.OK())
	}
	if !scaled {
		judge("5000 leases programmed and ready", "< 2 s", "-", false, false)
	}

	for _, c := range r.Churn {
		judge(fmt.Sprintf("churn lag p99, %s, %d leases", c.Backend, c.Leases), "< 250 ms, nothing lost or stale",
			fmt.Sprintf("%.1f ms; %d unobserved, %d lost, %d stale", c.LagMs.P99, c.Unobserved, c.Lost, c.Stale),
			c.LagMs.P99 < 250 && c.Unobserved == 0 && c.Lost == 0 && c.Stale == 0, c.LagMs.N > 0)
	}
	if len(r.Churn) == 0 {
		judge("churn lag p99", "< 250 ms", "-", false, false)
	}

	for _, name := range []string{PathHostGW, PathVXLAN} {
		var got []string
		lost, seen := 0, false
		for _, rs := range r.Restart {
			if rs.Backend != name {
				continue
			}
			seen = true
			lost += rs.Lost
			got = append(got, fmt.Sprintf("%d of %d (%s)", rs.Lost, rs.Sent, rs.Signal))
		}
		g := "-"
		if seen {
			g = strings.Join(got, ", ")
		}
		judge("packets lost across agent restarts, "+name, "0", g, lost == 0, seen)
	}
	return ts
}
