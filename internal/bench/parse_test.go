package bench

import (
	"math"
	"strings"
	"testing"
)

// Trimmed from iperf3 3.12 -J output.
const iperfTCP = `{"start":{},"intervals":[],"end":{"streams":[],
 "sum_sent":{"start":0,"end":5.0,"seconds":5.0,"bytes":6000000000,"bits_per_second":9600000000,"retransmits":0,"sender":true},
 "sum_received":{"start":0,"end":5.0,"seconds":5.0,"bytes":5990000000,"bits_per_second":9584000000,"sender":true},
 "cpu_utilization_percent":{"host_total":50}}}`

const iperfUDP = `{"start":{},"intervals":[],"end":{"streams":[],
 "sum":{"start":0,"end":1.0,"seconds":1.0,"bytes":330862000,"bits_per_second":2646856297,"jitter_ms":0.003,"lost_packets":44441,"packets":236330,"lost_percent":18.8,"sender":true},
 "sum_sent":{"start":0,"end":1.0,"seconds":1.0,"bytes":330862000,"bits_per_second":2646856297,"jitter_ms":0,"lost_packets":0,"packets":236330,"lost_percent":0,"sender":true},
 "sum_received":{"start":0,"end":1.0,"seconds":1.0,"bytes":268634800,"bits_per_second":2148947314,"jitter_ms":0.003,"lost_packets":44441,"packets":236323,"lost_percent":18.8,"sender":false}}}`

const iperfUDPOmitted = `{"start":{},"intervals":[],"end":{"streams":[],
 "sum_sent":{"start":0,"end":5.0,"seconds":5.0,"bytes":700000000,"bits_per_second":1120000000,"jitter_ms":0,"lost_packets":0,"packets":500000,"lost_percent":0,"sender":true},
 "sum_received":{"start":0,"end":5.0,"seconds":5.0,"bytes":49000000,"bits_per_second":78400000,"jitter_ms":0.01,"lost_packets":563000,"packets":500000,"lost_percent":112.6,"sender":false}}}`

func TestIperf(t *testing.T) {
	g, err := IperfTCP([]byte(iperfTCP))
	if err != nil || math.Abs(float64(g)-9.584) > 1e-9 {
		t.Errorf("IperfTCP = %v, %v; want 9.584 Gbit/s (the receiver's)", g, err)
	}
	pps, loss, err := IperfUDP([]byte(iperfUDP), 1400)
	if err != nil || pps != 268634800/1400 || loss != 18.8 {
		t.Errorf("IperfUDP = %v pps, %v %%, %v; want the receiver's 191882 pps and 18.8 %%", pps, loss, err)
	}
	// A wireguard round of `weft lab bench` under UDP overload: with -O 1
	// the receiver's lost_packets exceeded its packets, once shown as
	// -11 kpps and 112.6 %.
	pps, loss, err = IperfUDP([]byte(iperfUDPOmitted), 1400)
	if err != nil || pps != 7000 || loss != 93.0 {
		t.Errorf("IperfUDP with lost > packets = %v pps, %v %%, %v; want 7000 pps and 93.0 %% from the bytes received", pps, loss, err)
	}
	if _, _, err := IperfUDP([]byte(iperfUDP), 0); err == nil {
		t.Error("IperfUDP accepted a datagram length of 0")
	}
	if _, err := IperfTCP([]byte(`{"error":"the server is busy running a test. try again later"}`)); err == nil || !strings.Contains(err.Error(), "busy") {
		t.Errorf("iperf3 error not reported: %v", err)
	}
	if _, err := IperfTCP([]byte(`not json`)); err == nil {
		t.Error("garbage parsed")
	}
}

const pingOut = `PING 172.7.2.2 (172.7.2.2) 56(84) bytes of data.
64 bytes from 172.7.2.2: icmp_seq=1 ttl=62 time=0.101 ms
64 bytes from 172.7.2.2: icmp_seq=2 ttl=62 time=0.050 ms
64 bytes from 172.7.2.2: icmp_seq=2 ttl=62 time=0.070 ms (DUP!)
From 172.7.1.1 icmp_seq=3 Destination Host Unreachable
64 bytes from 172.7.2.2: icmp_seq=5 ttl=62 time=0.060 ms

--- 172.7.2.2 ping statistics ---
6 packets transmitted, 3 received, +1 duplicates, +1 errors, 50% packet loss, time 55ms
rtt min/avg/max/mdev = 0.050/0.070/0.101/0.020 ms
`

func TestParsePing(t *testing.T) {
	st, err := ParsePing([]byte(pingOut))
	if err != nil {
		t.Fatal(err)
	}
	if st.Sent != 6 || st.Received != 3 || len(st.RTTsMs) != 3 || st.RTTsMs[0] != 0.101 {
		t.Errorf("ParsePing = %+v", st)
	}
	// Seqs 3 and 4 are missing before the last reply (5); seq 6 was sent
	// but within the grace of a reply in flight when ping was stopped.
	if got := st.Lost(); got != 2 {
		t.Errorf("Lost = %d, want 2", got)
	}
	if _, err := ParsePing([]byte("64 bytes from x: icmp_seq=1 time=1 ms\n")); err == nil {
		t.Error("output without a summary parsed")
	}
}

func TestPingLostTail(t *testing.T) {
	// The path broke for good: everything after seq 10 is lost.
	st := PingStats{Sent: 100, Seqs: []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}}
	if got := st.Lost(); got != 90 {
		t.Errorf("Lost = %d, want 90", got)
	}
	st = PingStats{Sent: 12, Seqs: []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}}
	if got := st.Lost(); got != 0 {
		t.Errorf("Lost = %d, want 0 (two in flight at the end)", got)
	}
}

func TestProcParsers(t *testing.T) {
	stat := "1234 (weft (agent)) S 1 1234 1234 0 -1 4194560 5000 0 0 0 250 125 7 3 20 0 12 0 100 2000000 7000 18446744073709551615\n"
	ticks, err := ProcCPU([]byte(stat))
	if err != nil || ticks != 385 {
		t.Errorf("ProcCPU = %d, %v; want 385 (utime 250 + stime 125 + children's 7 + 3)", ticks, err)
	}
	if _, err := ProcCPU([]byte("1234 weft S 1")); err == nil {
		t.Error("stat without a command name parsed")
	}
	status := "Name:\tweft\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\nRssAnon:\t    8192 kB\nRssFile:\t   32768 kB\n"
	m, err := ProcMem([]byte(status))
	if err != nil || m.RSS != 40 || m.HWM != 50 || m.Anon != 8 || m.File != 32 {
		t.Errorf("ProcMem = %+v, %v", m, err)
	}
	if _, err := ProcMem([]byte("Name:\tweft\n")); err == nil {
		t.Error("status without VmRSS parsed")
	}
}

// FuzzIperf feeds iperf3's JSON parsers arbitrary output: they return a
// value or an error, never a negative rate or a loss outside 0-100 %.
func FuzzIperf(f *testing.F) {
	f.Add([]byte(iperfTCP))
	f.Add([]byte(iperfUDP))
	f.Add([]byte(iperfUDPOmitted))
	f.Add([]byte(`{"error":"busy"}`))
	f.Fuzz(func(t *testing.T, out []byte) {
		if g, err := IperfTCP(out); err == nil && !(g > 0) {
			t.Fatalf("IperfTCP = %v with no error", g)
		}
		pps, loss, err := IperfUDP(out, 1400)
		if err != nil {
			return
		}
		if !(pps >= 0) || !(loss >= 0 && loss <= 100) {
			t.Fatalf("IperfUDP = %v pps, %v %% with no error", pps, loss)
		}
	})
}
