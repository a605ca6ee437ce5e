package bench

import (
	"strings"
	"testing"
)

func TestUDPFastSummarizePairsRoundsWithVXLAN(t *testing.T) {
	u := &UDPFast{Rounds: 3, TransferSeconds: 5, PingCount: 100, LoadBefore: 1.5, LoadAfter: 2, Subjects: []UDPFastSubject{
		{Name: UDPFastVXLAN, Rounds: []UDPFastSample{
			{TCP1Gbps: 10, TCP4Gbps: 20, CoreSecondsPerGbit: NaN, RTTp50us: 40, LoadedRTTp50us: 30, LoadedLossPct: 0},
			{TCP1Gbps: 5, TCP4Gbps: 10, CoreSecondsPerGbit: NaN, RTTp50us: 50, LoadedRTTp50us: 30, LoadedLossPct: 0},
			{TCP1Gbps: 8, TCP4Gbps: NaN, CoreSecondsPerGbit: NaN, RTTp50us: 60, LoadedRTTp50us: 30, LoadedLossPct: 0},
		}},
		{Name: UDPFastOffload, Rounds: []UDPFastSample{
			{TCP1Gbps: 5, TCP4Gbps: 5, CoreSecondsPerGbit: 0.2, RTTp50us: 80, LoadedRTTp50us: 900, LoadedLossPct: 0},
			{TCP1Gbps: 4, TCP4Gbps: 4, CoreSecondsPerGbit: 0.3, RTTp50us: 100, LoadedRTTp50us: 1000, LoadedLossPct: 1},
			{TCP1Gbps: 2, TCP4Gbps: 3, CoreSecondsPerGbit: 0.25, RTTp50us: 90, LoadedRTTp50us: 1100, LoadedLossPct: 0},
		}},
	}}
	u.summarize()
	off := u.Subjects[1]
	// Per-round ratios 0.5, 0.8, 0.25: the median pairs rounds, it is not
	// the ratio of the medians (4/8 = 0.5).
	if off.VsVXLAN.TCP1 != 0.5 {
		t.Errorf("TCP1 ratio %v, want 0.5", off.VsVXLAN.TCP1)
	}
	// A round missing on either side is left out: 0.25 and 0.4.
	if got := float64(off.VsVXLAN.TCP4); got < 0.324 || got > 0.326 {
		t.Errorf("TCP4 ratio %v, want 0.325", got)
	}
	if off.Median.CoreSecondsPerGbit != 0.25 || off.Median.LoadedRTTp50us != 1000 {
		t.Errorf("medians %+v", off.Median)
	}
	if ref := u.Subjects[0].VsVXLAN; ref.TCP1.OK() {
		t.Errorf("the reference has a ratio to itself: %+v", ref)
	}
	var b strings.Builder
	writeUDPFast(&b, u)
	for _, want := range []string{"udp-offload", "4.00 Gbit/s (0.50×)", "0.250", "load average 1.50 before, 2.00 after"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}
