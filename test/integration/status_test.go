package integration

import (
	"bytes"
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/status"
	"github.com/weftnet/weft/internal/testbin"
)

// weftStatus runs `weft status` on a lab host the way an operator would:
// the binary inside the host's namespace with the agent's own flags. It
// returns stdout and the exit status.
func weftStatus(t *testing.T, l *lab.Lab, host string, extra ...string) (string, int) {
	t.Helper()
	h, ok := l.Topology().Host(host)
	if !ok {
		t.Fatalf("no host %s", host)
	}
	args := append([]string{"netns", "exec", h.NS, testbin.Weft(t), "status"}, l.Topology().AgentArgs(h)[1:]...)
	args = append(args, extra...)
	cmd := exec.Command("ip", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return stdout.String(), 0
	case errors.As(err, &exit):
		if exit.ExitCode() != 1 {
			t.Fatalf("weft status on %s exited %d:\n%s%s", host, exit.ExitCode(), stdout.String(), stderr.String())
		}
		return stdout.String(), 1
	default:
		t.Fatalf("run weft status on %s: %v\n%s", host, err, stderr.String())
		return "", 0
	}
}

// tableRow returns the fields of the table line for subnet.
func tableRow(t *testing.T, out, subnet string) []string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == subnet {
			return f
		}
	}
	t.Fatalf("no row for %s in\n%s", subnet, out)
	return nil
}

func statusJSON(t *testing.T, l *lab.Lab, host string, extra ...string) (status.Report, int) {
	t.Helper()
	out, code := weftStatus(t, l, host, append([]string{"-o", "json"}, extra...)...)
	var r status.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("weft status -o json: %v\n%s", err, out)
	}
	return r, code
}

// `weft status` on a healthy lab lists every lease and finds every peer's
// route and pod gateway; after h1's agent is stopped and its route to h3
// deleted, status on h1 shows h3 broken, says why in words, and exits 1,
// while h2 stays ok.
func TestStatusListsLeasesAndExplainsMissingRoute(t *testing.T) {
	l := upLab(t, 3, 1)
	s1, s2, s3 := subnetOf(t, l, "h1"), subnetOf(t, l, "h2"), subnetOf(t, l, "h3")

	out, code := weftStatus(t, l, "h1", "--check")
	if code != 0 {
		t.Fatalf("status on a healthy lab exited %d:\n%s", code, out)
	}
	if f := tableRow(t, out, s1.String()); f[1] != hostIP(t, l, "h1").String() || f[len(f)-1] != "ok" || !strings.Contains(strings.Join(f, " "), " self ") {
		t.Errorf("own row %q: want h1's address, self, ok", f)
	}
	for _, h := range []string{"h2", "h3"} {
		s := subnetOf(t, l, h)
		f := tableRow(t, out, s.String())
		if f[1] != hostIP(t, l, h).String() || f[2] != "host-gw" || f[len(f)-1] != "ok" {
			t.Errorf("row of %s %q: want its PublicIP, host-gw, ok", h, f)
		}
		if !strings.Contains(strings.Join(f, " "), "peer ok ok ") {
			t.Errorf("row of %s %q: want kernel ok and probe ok", h, f)
		}
	}
	t.Logf("healthy:\n%s", out)

	r, code := statusJSON(t, l, "h1")
	if code != 0 || !r.OK || len(r.Leases) != 3 || r.Host.Subnet != s1.String() || r.Backend != "host-gw" {
		t.Fatalf("JSON on a healthy lab: exit %d, %+v", code, r)
	}

	// The running agent repairs a deleted route within milliseconds, so
	// stop it first: this is the "agent is down" case status is for.
	if err := l.StopAgent("h1", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ip", "-n", l.NS("h1"), "route", "del", s3.String()).CombinedOutput(); err != nil {
		t.Fatalf("ip route del: %v: %s", err, out)
	}

	out, code = weftStatus(t, l, "h1", "--check")
	t.Logf("broken:\n%s", out)
	if code != 1 {
		t.Errorf("status with a missing route exited %d, want 1", code)
	}
	if f := tableRow(t, out, s3.String()); f[len(f)-1] != "PROBLEM" || !strings.Contains(strings.Join(f, " "), "route missing no route") {
		t.Errorf("row of h3 %q: want route missing, no route, PROBLEM", f)
	}
	if f := tableRow(t, out, s2.String()); f[len(f)-1] != "ok" {
		t.Errorf("row of h2 %q: want ok", f)
	}
	flat := strings.Join(strings.Fields(out), " ")
	want := "no route to " + s3.String() + ": the agent has not programmed it; is weft running? (see `journalctl -u weft`)"
	if !strings.Contains(flat, want) {
		t.Errorf("output lacks %q", want)
	}

	r, code = statusJSON(t, l, "h1", "--check")
	if code != 1 || r.OK || r.ProblemCnt != 1 || !r.Checked {
		t.Errorf("JSON with a missing route: exit %d ok %v problems %d checked %v", code, r.OK, r.ProblemCnt, r.Checked)
	}
	for _, row := range r.Leases {
		switch row.Subnet {
		case s3.String():
			if row.Status != "problem" || len(row.Problems) != 1 || row.Problems[0].Code != status.CodeNoRoute ||
				row.Check == nil || !row.Check.NoRoute || row.Check.Reply {
				t.Errorf("JSON row of h3: %+v check %+v", row, row.Check)
			}
		case s2.String():
			if row.Status != "ok" || row.Check == nil || !row.Check.Reply {
				t.Errorf("JSON row of h2: %+v check %+v", row, row.Check)
			}
		}
	}
}
