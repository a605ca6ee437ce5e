package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// iperfReport is the part of `iperf3 -J` output the benchmarks read.
type iperfReport struct {
	Error string `json:"error"`
	End   struct {
		SumSent struct {
			Packets float64 `json:"packets"`
		} `json:"sum_sent"`
		SumReceived struct {
			Seconds       float64 `json:"seconds"`
			Bytes         float64 `json:"bytes"`
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
}

// IperfTCP returns the receiver's throughput in Gbit/s from `iperf3 -J`
// output of a TCP test.
func IperfTCP(out []byte) (Num, error) {
	r, err := parseIperf(out)
	if err != nil {
		return NaN, err
	}
	s := r.End.SumReceived
	if s.Seconds <= 0 || s.BitsPerSecond <= 0 {
		return NaN, errors.New("iperf3 reported no data received")
	}
	return Num(s.BitsPerSecond / 1e9), nil
}

// IperfUDP returns the datagrams the receiver got per second and the share
// of the sender's it missed (in %) from `iperf3 -u -J -l datagram` output.
//
// Both come from the bytes the receiver got, not from its lost_packets:
// with -O (omit the first seconds) iperf3 counts sequence gaps from the
// omitted seconds too, so under heavy loss its lost_packets can exceed its
// packets, which read as a negative rate and a loss above 100 %.
func IperfUDP(out []byte, datagram int) (pps, lossPct Num, err error) {
	if datagram <= 0 {
		return NaN, NaN, fmt.Errorf("iperf3 UDP: datagram length %d", datagram)
	}
	r, err := parseIperf(out)
	if err != nil {
		return NaN, NaN, err
	}
	s := r.End.SumReceived
	if s.Seconds <= 0 || s.Bytes <= 0 {
		return NaN, NaN, errors.New("iperf3 reported no datagrams received")
	}
	got := math.Floor(s.Bytes / float64(datagram))
	sent := r.End.SumSent.Packets
	if sent <= 0 {
		return NaN, NaN, errors.New("iperf3 reported no datagrams sent")
	}
	loss := max(0, min(100, 100*(sent-got)/sent))
	return Num(got / s.Seconds), Num(math.Round(loss*10) / 10), nil
}

func parseIperf(out []byte) (iperfReport, error) {
	var r iperfReport
	if err := json.Unmarshal(out, &r); err != nil {
		return r, fmt.Errorf("parse iperf3 JSON output: %w", err)
	}
	if r.Error != "" {
		return r, fmt.Errorf("iperf3: %s", r.Error)
	}
	return r, nil
}

// PingStats is what ping printed.
type PingStats struct {
	Sent, Received int
	RTTsMs         []float64 // one per reply, in order
	Seqs           []int     // icmp_seq of each reply, in order
}

// Lost counts the echo requests that got no reply, without the artefact of
// stopping ping with SIGINT: a request sent just before the signal has no
// reply yet and ping counts it lost. Requests up to the last answered one
// are counted by their missing sequence numbers; unanswered ones after it
// count only when there are more than tailGrace of them, which means the
// path was still broken at the end rather than a reply in flight.
func (p PingStats) Lost() int {
	const tailGrace = 2
	last := 0
	seen := map[int]bool{}
	for _, s := range p.Seqs {
		seen[s] = true
		last = max(last, s)
	}
	lost := last - len(seen)
	if tail := p.Sent - last; tail > tailGrace {
		lost += tail
	}
	return lost
}

var (
	pingReply = regexp.MustCompile(`icmp_seq=(\d+) .*time=([0-9.]+) ms`)
	pingTotal = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`)
)

// ParsePing reads iputils ping output: the per-reply times and the
// transmitted/received summary. Duplicate replies ("DUP!") are not counted
// as RTT samples.
func ParsePing(out []byte) (PingStats, error) {
	var st PingStats
	found := false
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if m := pingReply.FindStringSubmatch(line); m != nil && !strings.Contains(line, "DUP!") {
			seq, err1 := strconv.Atoi(m[1])
			v, err2 := strconv.ParseFloat(m[2], 64)
			if err1 == nil && err2 == nil {
				st.Seqs = append(st.Seqs, seq)
				st.RTTsMs = append(st.RTTsMs, v)
			}
			continue
		}
		if m := pingTotal.FindStringSubmatch(line); m != nil {
			st.Sent, _ = strconv.Atoi(m[1])
			st.Received, _ = strconv.Atoi(m[2])
			found = true
		}
	}
	if !found {
		return st, errors.New("no summary line in ping output")
	}
	return st, nil
}

// ProcCPU returns the CPU time of a process and of its children it has
// waited for (utime+stime+cutime+cstime), in clock ticks, from the
// contents of /proc/PID/stat. The children count because the agent runs
// iptables and nft as programs.
func ProcCPU(stat []byte) (uint64, error) {
	// The command name (field 2) may hold spaces and parentheses; the
	// fields after the last ')' are plain.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("parse /proc stat: no command name")
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state); utime, stime, cutime and cstime are fields
	// 14 to 17.
	if len(f) < 15 {
		return 0, fmt.Errorf("parse /proc stat: %d fields", len(f)+2)
	}
	var sum uint64
	for _, s := range f[11:15] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse /proc stat: %w", err)
		}
		sum += v
	}
	return sum, nil
}

// Mem is a process's memory as /proc/PID/status reports it, in MiB.
type Mem struct {
	RSS  Num // VmRSS: resident, anonymous and file-backed
	HWM  Num // VmHWM: the peak of VmRSS
	Anon Num // RssAnon: the process's own memory (heap, stacks)
	File Num // RssFile: pages of mapped files, mostly the executable, shared with every process running it
}

// ProcMem reads VmRSS, VmHWM, RssAnon and RssFile from the contents of
// /proc/PID/status.
func ProcMem(status []byte) (Mem, error) {
	m := Mem{NaN, NaN, NaN, NaN}
	fields := map[string]*Num{"VmRSS": &m.RSS, "VmHWM": &m.HWM, "RssAnon": &m.Anon, "RssFile": &m.File}
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		dst, want := fields[k]
		if !ok || !want {
			continue
		}
		fs := strings.Fields(v)
		if len(fs) != 2 || fs[1] != "kB" {
			return m, fmt.Errorf("parse /proc status: %s:%s", k, v)
		}
		kb, err := strconv.ParseFloat(fs[0], 64)
		if err != nil {
			return m, fmt.Errorf("parse /proc status %s: %w", k, err)
		}
		*dst = Num(kb / 1024)
	}
	if !m.RSS.OK() {
		return m, errors.New("parse /proc status: no VmRSS")
	}
	return m, nil
}
