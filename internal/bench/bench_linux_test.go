package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/internal/testbin"
)

// TestSmallRun runs every section in its smallest form (one round of
// 1-second transfers, 3 joins, 100 synthetic leases, 2 s of churn), so
// that the harness's whole code path runs in CI. It checks that every
// section produced its numbers and that the labs are gone afterwards; it
// asserts nothing about speed.
//
// Labs built, one after the other (prefix <p> unique per run):
//
//	<p>base <p>bas2 <p>hgw <p>hgwm <p>vx <p>vxh <p>udp   2 hosts × 1 pod each, all up together
//	<p>jhgw <p>jvx                       3 hosts, no pods
//	<p>shgw <p>svx                       1 host, 100.64.0.0/10, synthetic leases
//	<p>rhgw <p>rvx <p>rudp               2 hosts × 1 pod
func TestSmallRun(t *testing.T) {
	nstest.RequireRoot(t)
	prefix := nstest.UniqueName("b") // 7 characters
	var progress bytes.Buffer
	o := Options{
		Rounds:      1,
		Transfer:    time.Second,
		PingCount:   20,
		Joins:       3,
		Leases:      []int{100},
		ScaleStarts: 2,
		ChurnRate:   20,
		ChurnTime:   2 * time.Second,
		Prefix:      prefix,
		StateRoot:   t.TempDir(),
		WeftBinary:  testbin.Weft(t),
		CNIBinDir:   testbin.CNIDir(t),
		Out:         &progress,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := Run(ctx, o)
	t.Logf("progress:\n%s", progress.String())
	if err != nil {
		t.Fatalf("run: %v", err)
	}

	names, err := netns.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			t.Errorf("namespace %s left behind", n)
		}
	}

	// baseline ×2, host-gw ×2, vxlan ×2, udp, wireguard, and wireguard-go
	// when its binary is there.
	wantPaths := 8
	if wireguardGoBinary(o.WeftBinary) != "" {
		wantPaths++
	}
	if d := res.DataPath; d == nil || len(d.Backends) != wantPaths {
		t.Fatalf("data path: %+v", res.DataPath)
	}
	for _, b := range res.DataPath.Backends {
		m := b.Median
		if !(m.TCP1Gbps > 0 && m.TCP4Gbps > 0 && m.UDPpps > 0 && m.RTTp50us > 0 && m.RTTp99us >= m.RTTp50us) {
			t.Errorf("%s: incomplete sample %+v", b.Name, m)
		}
		if b.Agent != m.AgentRSSMiB.OK() || (b.Agent && !(m.AgentCPUSeconds >= 0)) {
			t.Errorf("%s (agent %v): agent CPU %v, RSS %v", b.Name, b.Agent, m.AgentCPUSeconds, m.AgentRSSMiB)
		}
		if b.Name != PathBaseline && !b.VsBaseline.TCP1.OK() {
			t.Errorf("%s: no ratio to the baseline", b.Name)
		}
	}
	if len(res.Join) != 2 {
		t.Errorf("join: %+v", res.Join)
	}
	for _, j := range res.Join {
		if j.JoinMs.N+j.Missed != 3 || j.LeaveMs.N == 0 {
			t.Errorf("join %s: %+v", j.Backend, j)
		}
	}
	if len(res.Scale) != 4 {
		t.Errorf("scale: %+v", res.Scale)
	}
	for i, s := range res.Scale {
		if s.Leases != 100 || s.Start != i%2+1 || s.Missing != 0 || !s.ProgrammedSeconds.OK() || !s.ReadySeconds.OK() || !s.RSSMiB.OK() || !s.SettledRSSMiB.OK() {
			t.Errorf("scale %s: %+v", s.Backend, s)
		}
	}
	if len(res.Churn) != 2 {
		t.Errorf("churn: %+v", res.Churn)
	}
	for _, c := range res.Churn {
		if c.Adds != 40 || c.Deletes != 40 || c.LagMs.N == 0 || c.Lost != 0 || c.Stale != 0 {
			t.Errorf("churn %s: %+v", c.Backend, c)
		}
	}
	if len(res.Restart) != 2*len(AllBackends) {
		t.Errorf("restart: %+v", res.Restart)
	}
	for _, r := range res.Restart {
		if r.Sent == 0 || !r.RestartMs.OK() {
			t.Errorf("restart %s %s: %+v", r.Backend, r.Signal, r)
		}
	}
	var tables bytes.Buffer
	if err := WriteTables(&tables, res); err != nil {
		t.Fatal(err)
	}
	t.Logf("tables:\n%s", tables.String())
}
