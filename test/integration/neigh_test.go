package integration

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/internal/testbin"
)

// The kernel's neighbour table is shared by every namespace, and its
// thresholds exist only in the initial one, so this test never lowers
// them: the agents read a fake /proc instead (--proc-root), whose
// thresholds are tiny, while everything else is real — the agents, their
// routing tables (each peer on the segment is its own next hop), the
// store and the data plane.
//
//	            netns <p>-ul: switch sw0 10.4.7.12/24, etcd :2379
//	       ┌──────────────────┬──────────────────┐
//	eth0 10.4.7.21     eth0 10.4.7.22     eth0 10.4.7.23
//	netns <p>-h1       netns <p>-h2       netns <p>-h3
//	weft agent --proc-root=<fake>   (each needs 2 peers + 253 pods + 16 = 271)
//
// A host whose need passes gc_thresh2 warns once, and `weft status
// --check` shows it and exits 3; the kernel refusing entries (table_fulls
// rising) is an ERROR; gc_thresh3 below the need is an ERROR; /readyz
// stays 200 throughout and /metrics shows the numbers.
func TestAgentWarnsBeforeTheNeighbourTableOverflows(t *testing.T) {
	proc := t.TempDir()
	write := func(rel, v string) {
		t.Helper()
		p := filepath.Join(proc, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p+".tmp", []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(p+".tmp", p); err != nil {
			t.Fatal(err)
		}
	}
	stat := func(fulls int) string {
		return fmt.Sprintf("entries  allocs forced_gc_runs table_fulls\n00000010 00000001 00000000 %08x\n00000010 00000001 00000000 00000000", fulls)
	}
	write("sys/net/ipv4/neigh/default/gc_thresh1", "128")
	write("sys/net/ipv4/neigh/default/gc_thresh2", "270")
	write("sys/net/ipv4/neigh/default/gc_thresh3", "1024")
	write("sys/net/ipv4/ip_forward", "1")
	write("net/stat/arp_cache", stat(0))

	l, _ := upLabSpec(t, lab.Spec{Hosts: 3, Pods: 1, Backend: "host-gw", AgentArgs: []string{"--proc-root=" + proc}})
	hosts := []string{"h1", "h2", "h3"}
	logLines := func(host string, subs ...string) int {
		n := 0
		for _, line := range strings.Split(l.AgentLog(host), "\n") {
			all := true
			for _, s := range subs {
				all = all && strings.Contains(line, s)
			}
			if all {
				n++
			}
		}
		return n
	}
	waitLog := func(subs ...string) {
		t.Helper()
		for _, h := range hosts {
			nstest.Eventually(t, 20*time.Second, func() error {
				if logLines(h, subs...) == 0 {
					return fmt.Errorf("%s has logged no line with %q", h, subs)
				}
				return nil
			})
		}
	}
	metric := func(host, line string) {
		t.Helper()
		nstest.Eventually(t, 20*time.Second, func() error {
			code, m, err := l.AgentGet(host, "/metrics")
			if err != nil || code != 200 {
				return fmt.Errorf("GET /metrics on %s: %d %v", host, code, err)
			}
			if !strings.Contains(m, line+"\n") {
				return fmt.Errorf("%s /metrics lacks %q", host, line)
			}
			return nil
		})
	}

	waitLog("level=WARN", "code=neigh_gc_thresh2", "current=270", "suggested=1024", "2 peer next hops + 253 pod addresses + 16 margin")
	metric("h1", `weft_neighbour_entries_needed{family="ipv4"} 271`)
	metric("h1", `weft_neighbour_gc_thresh{family="ipv4",level="2"} 270`)

	// `weft status --check`, given the agent's flags (--proc-root too),
	// shows the same shortfall as a WARN line with the fix and exits 3:
	// warnings only.
	h1, _ := l.Topology().Host("h1")
	args := append([]string{"netns", "exec", h1.NS, testbin.Weft(t), "status"}, l.Topology().AgentArgs(h1)[1:]...)
	out, err := exec.Command("ip", append(args, "--check")...).Output()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Errorf("weft status --check with a short table: %v, want exit status 3\n%s", err, out)
	}
	for _, want := range []string{
		"    - WARN this host needs 271 IPv4 neighbour entries",
		"      fix:  sysctl -w net.ipv4.neigh.default.gc_thresh1=271 net.ipv4.neigh.default.gc_thresh2=1024",
		"WARNINGS: 3 leases, 2 peers, probed, no problems, 1 warning",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("weft status --check lacks %q:\n%s", want, out)
		}
	}

	// The kernel refuses entries: every agent says so within a poll.
	write("net/stat/arp_cache", stat(5))
	waitLog("level=ERROR", "the kernel dropped neighbour entries", "code=neigh_table_full")
	metric("h2", `weft_neighbour_table_fulls_total{family="ipv4"} 5`)

	// gc_thresh3 below the need: the warning becomes an error.
	write("sys/net/ipv4/neigh/default/gc_thresh3", "270")
	waitLog("level=ERROR", "code=neigh_gc_thresh3", "current=270", "sysctl=net.ipv4.neigh.default.gc_thresh3")

	for _, h := range hosts {
		if n := logLines(h, "level=WARN", "code=neigh_gc_thresh2", "current=270"); n != 1 {
			t.Errorf("%s warned %d times about one crossing of gc_thresh2, want once", h, n)
		}
		if code, _, err := l.AgentGet(h, "/readyz"); err != nil || code != 200 {
			t.Errorf("%s /readyz = %d %v with a short neighbour table; readiness must stay true", h, code, err)
		}
	}
}
