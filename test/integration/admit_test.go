package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/internal/web"
)

// peerEntries is what a host's kernel holds for one vxlan peer: the route,
// the neighbour of its gateway and the FDB entry for its VTEP MAC, in
// iproute2's words.
func peerEntries(t *testing.T, l *lab.Lab, host string, subnet netip.Prefix, mac string) string {
	t.Helper()
	run := func(args ...string) string {
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v: %s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	ns := l.NS(host)
	route := run("ip", "-n", ns, "-4", "route", "show", "exact", subnet.String())
	neigh := run("ip", "-n", ns, "neigh", "show", subnet.Addr().String(), "dev", "flannel.1")
	var fdb []string
	for _, line := range strings.Split(run("bridge", "-n", ns, "fdb", "show", "dev", "flannel.1"), "\n") {
		if strings.HasPrefix(line, mac+" ") {
			fdb = append(fdb, line)
		}
	}
	return fmt.Sprintf("route %q neigh %q fdb %q", route, neigh, fdb)
}

// Two hostile leases are written into a live 3-host vxlan lab: a /25 over
// h2's /24 with another PublicIP (flannel programs it everywhere: 100 %
// loss to h2's pods), and a lease sorting before every other that carries
// h2's VtepMAC (flannel's desire evicts h2 for it). Pings from h1's and
// h3's pods to h2's keep going without a loss, h2's route, neighbour and
// FDB entry stay as they were on h1 and h3, each agent logs one ERROR per
// refusal naming both keys, counts it, and status shows the bogus leases
// refused and h2's ok. Deleting them ends the refusals with an INFO line.
func TestHostileLeasesAreRefused(t *testing.T) {
	l := upVXLANLab(t, 3, 1)
	cli := etcd(t, l)
	s2 := subnetOf(t, l, "h2")
	mac2 := vtepMAC(t, l, "h2")
	dst, ok := l.PodAddr("h2p1")
	if !ok {
		t.Fatal("no pod h2p1")
	}
	before := map[string]string{}
	for _, h := range []string{"h1", "h3"} {
		before[h] = peerEntries(t, l, h, s2, mac2)
		if !strings.Contains(before[h], "onlink") || !strings.Contains(before[h], "PERMANENT") || !strings.Contains(before[h], "dst "+hostIP(t, l, "h2").String()) {
			t.Fatalf("%s's entries for h2 before the test: %s", h, before[h])
		}
	}

	var sent, lost atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{}, 2)
	for _, from := range []string{"h1p1", "h3p1"} {
		go func() {
			defer func() { done <- struct{}{} }()
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
				_, err := lab.Ping(ctx, l.NS(from), dst)
				cancel()
				sent.Add(1)
				if err != nil {
					lost.Add(1)
				}
			}
		}()
	}
	stopPings := func() {
		select {
		case <-stop:
			return
		default:
		}
		close(stop)
		<-done
		<-done
	}
	t.Cleanup(stopPings)
	atLeast := func(n int64) {
		nstest.Eventually(t, 20*time.Second, func() error {
			if s := sent.Load(); s < n {
				return fmt.Errorf("%d pings sent, %d lost", s, lost.Load())
			}
			return nil
		})
	}
	atLeast(40)

	narrow := netip.PrefixFrom(s2.Addr(), 25)
	first := netip.MustParsePrefix("172.7.0.0/24") // below SubnetMin: no host has it, and it sorts first
	narrowKey, firstKey := lease.KeyName(narrow, netip.Prefix{}), lease.KeyName(first, netip.Prefix{})
	s2Key := lease.KeyName(s2, netip.Prefix{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	put := func(key, value string) {
		t.Helper()
		if _, err := cli.Put(ctx, prefix+"/subnets/"+key, value); err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
	}
	put(narrowKey, `{"PublicIP":"10.4.7.99","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0a:58:ac:07:00:99"}}`)
	put(firstKey, fmt.Sprintf(`{"PublicIP":"10.4.7.98","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":%q}}`, mac2))

	// Every agent refuses both, with one ERROR line each naming both keys.
	wantLines := map[string][]string{
		narrowKey: {"level=ERROR", narrowKey + " (PublicIP 10.4.7.99) overlaps " + s2Key + " (PublicIP " + hostIP(t, l, "h2").String() + ")"},
		firstKey:  {"level=ERROR", firstKey + " (PublicIP 10.4.7.98) publishes VtepMAC " + mac2},
	}
	for _, h := range []string{"h1", "h2", "h3"} {
		nstest.Eventually(t, 5*time.Second, func() error {
			for key, parts := range wantLines {
				if n := countLines(l.AgentLog(h), append([]string{"lease=" + key}, parts...)); n != 1 {
					return fmt.Errorf("%s: %d ERROR lines refusing %s with %q", h, n, key, parts)
				}
			}
			return nil
		})
	}
	if n := countLines(l.AgentLog("h1"), []string{"level=ERROR", "lease=" + firstKey, "like " + s2Key}); n != 1 {
		t.Errorf("h1 names the genuine owner of the VtepMAC in %d lines, want 1", n)
	}

	// More pings, and more snapshots (a change elsewhere): still no loss
	// and no second ERROR line.
	put("172.7.250.0-24", `{"PublicIP":"10.4.7.97","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0a:58:ac:07:00:97"}}`)
	atLeast(sent.Load() + 200)
	stopPings()
	t.Logf("pings to h2's pod while the hostile leases were in the store: %d sent, %d lost", sent.Load(), lost.Load())
	if lost.Load() != 0 {
		t.Errorf("%d of %d pings to h2's pod lost; want none", lost.Load(), sent.Load())
	}
	for _, h := range []string{"h1", "h3"} {
		if got := peerEntries(t, l, h, s2, mac2); got != before[h] {
			t.Errorf("%s's entries for h2 changed:\nbefore %s\nafter  %s", h, before[h], got)
		}
		for _, p := range []netip.Prefix{narrow, first} {
			if via := routeVia(t, l, h, p); via.IsValid() {
				t.Errorf("%s routes the refused %s via %v", h, p, via)
			}
		}
		for key, parts := range wantLines {
			if n := countLines(l.AgentLog(h), append([]string{"lease=" + key}, parts...)); n != 1 {
				t.Errorf("%s: %d ERROR lines for %s after more snapshots, want 1", h, n, key)
			}
		}
	}

	// The metrics count them, by reason.
	_, m, err := l.AgentGet("h1", "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`weft_leases_refused{reason="overlap"} 1`, `weft_leases_refused{reason="duplicate_identity"} 1`,
		`weft_leases_refused_total{reason="overlap"} 1`, `weft_leases_refused_total{reason="duplicate_identity"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("h1 /metrics lacks %q", want)
		}
	}

	// weft status and the agent's /status.json say the same.
	r, code := statusJSON(t, l, "h1")
	if code != 1 {
		t.Errorf("weft status with refused leases exited %d, want 1", code)
	}
	_, body, err := l.AgentGet("h1", "/status.json")
	if err != nil {
		t.Fatal(err)
	}
	var page web.Page
	if err := json.Unmarshal([]byte(body), &page); err != nil {
		t.Fatalf("/status.json: %v\n%s", err, body)
	}
	for name, rep := range map[string][]byte{"weft status": mustJSON(t, r), "/status.json": mustJSON(t, page.Report)} {
		var got struct {
			Leases []struct{ Subnet, Status, Refused string }
		}
		if err := json.Unmarshal(rep, &got); err != nil {
			t.Fatal(err)
		}
		rows := map[string][2]string{}
		for _, row := range got.Leases {
			rows[row.Subnet] = [2]string{row.Status, row.Refused}
		}
		if row := rows[s2.String()]; row[0] != "ok" {
			t.Errorf("%s: h2's lease is %q, want ok", name, row)
		}
		if row := rows[narrow.String()]; row[0] != "refused" || !strings.Contains(row[1], wantLines[narrowKey][1]) {
			t.Errorf("%s: the /25 is %q, want refused naming both keys", name, row)
		}
		if row := rows[first.String()]; row[0] != "refused" || !strings.Contains(row[1], "like "+s2Key) {
			t.Errorf("%s: the VtepMAC copy is %q, want refused naming h2's key", name, row)
		}
	}
	out, _ := weftStatus(t, l, "h1")
	if f := tableRow(t, out, narrow.String()); f[len(f)-1] != "REFUSED" {
		t.Errorf("table row of the /25: %q", f)
	}
	if flat := strings.Join(strings.Fields(out), " "); !strings.Contains(flat, "refused: "+wantLines[narrowKey][1]) {
		t.Errorf("weft status lacks %q:\n%s", "refused: "+wantLines[narrowKey][1], out)
	}

	// Deleting the keys ends the refusals: one INFO line each, gauge 0.
	for _, key := range []string{narrowKey, firstKey} {
		if _, err := cli.Delete(ctx, prefix+"/subnets/"+key); err != nil {
			t.Fatal(err)
		}
	}
	nstest.Eventually(t, 5*time.Second, func() error {
		for _, key := range []string{narrowKey, firstKey} {
			if n := countLines(l.AgentLog("h1"), []string{"level=INFO", "lease no longer refused", "lease=" + key}); n != 1 {
				return fmt.Errorf("%d INFO lines ending the refusal of %s", n, key)
			}
		}
		_, m, err := l.AgentGet("h1", "/metrics")
		if err != nil {
			return err
		}
		if !strings.Contains(m, `weft_leases_refused{reason="overlap"} 0`) || !strings.Contains(m, `weft_leases_refused{reason="duplicate_identity"} 0`) {
			return fmt.Errorf("gauges not back to 0")
		}
		return nil
	})
}

// countLines counts the lines of log that hold every one of parts.
func countLines(log string, parts []string) int {
	n := 0
	for _, line := range strings.Split(log, "\n") {
		all := true
		for _, p := range parts {
			if !strings.Contains(line, p) {
				all = false
				break
			}
		}
		if all {
			n++
		}
	}
	return n
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
