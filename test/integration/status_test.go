package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/nstest"
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
	if code != 1 || r.OK || r.ProblemCount != 1 || !r.Checked {
		t.Errorf("JSON with a missing route: exit %d ok %v problems %d checked %v", code, r.OK, r.ProblemCount, r.Checked)
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

// upVXLANLab is upLab with the vxlan backend.
func upVXLANLab(t *testing.T, hosts, pods int) *lab.Lab {
	t.Helper()
	nstest.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out strings.Builder
	l, err := lab.Up(ctx, lab.Options{
		Spec:       lab.Spec{Prefix: nstest.UniqueName("it"), Hosts: hosts, Pods: pods, Backend: "vxlan"},
		WeftBinary: testbin.Weft(t),
		CNIBinDir:  testbin.CNIDir(t),
		Out:        &out,
	})
	if err != nil {
		t.Fatalf("lab up: %v\n%s", err, out.String())
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, h := range l.Topology().Hosts {
				t.Logf("agent log of %s:\n%s", h.Name, l.AgentLog(h.Name))
			}
		}
		if err := l.Down(); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	return l
}

func rowOf(t *testing.T, r status.Report, subnet string) status.Row {
	t.Helper()
	for _, row := range r.Leases {
		if row.Subnet == subnet {
			return row
		}
	}
	t.Fatalf("no lease %s in the report", subnet)
	return status.Row{}
}

func codesOf(ps []status.Problem) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Code)
	}
	return out
}

// On a vxlan lab, status sees the device and each peer's neighbour, FDB
// entry and route. Then flannel's classic VtepMAC failure, from both ends:
// h1 (agent stopped) holds a neighbour entry with a MAC that is not h2's
// VtepMAC; h2 (agent stopped) has its device's MAC changed under it, which
// h2's status names as its own problem and h3's --check explains as a
// peer that answers ping but not on its pod gateway.
func TestStatusVXLANWrongVtepMAC(t *testing.T) {
	l := upVXLANLab(t, 3, 1)
	s1, s2, s3 := subnetOf(t, l, "h1"), subnetOf(t, l, "h2"), subnetOf(t, l, "h3")

	r, code := statusJSON(t, l, "h1", "--check")
	if code != 0 || !r.OK || r.Backend != "vxlan" {
		t.Fatalf("healthy vxlan lab: exit %d, %+v", code, r)
	}
	if len(r.Host.Entries) != 2 || r.Host.Entries[0].Kind != status.KindDevice || r.Host.Entries[0].State != status.StateOK {
		t.Errorf("h1's own entries %+v, want flannel.1 and its address, ok", r.Host.Entries)
	}
	for _, s := range []string{s2.String(), s3.String()} {
		row := rowOf(t, r, s)
		var kinds []string
		for _, e := range row.Entries {
			kinds = append(kinds, e.Kind+"="+e.State)
		}
		if strings.Join(kinds, " ") != "neigh=ok fdb=ok route=ok" || row.Check == nil || !row.Check.Reply {
			t.Errorf("peer %s: entries %v check %+v; want neigh, fdb and route ok and a reply", s, kinds, row.Check)
		}
	}

	// h1: a stale neighbour entry for h2's VTEP.
	if err := l.StopAgent("h1", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	const stale = "02:00:00:00:00:99"
	nstest.Exec(t, l.NS("h1"), "ip", "neigh", "replace", s2.Addr().String(), "lladdr", stale, "dev", "flannel.1", "nud", "permanent")
	r, code = statusJSON(t, l, "h1", "--check")
	row := rowOf(t, r, s2.String())
	if code != 1 || row.Status != "problem" || !strings.Contains(strings.Join(codesOf(row.Problems), " "), status.CodeWrongVtepMAC) {
		t.Fatalf("h1 with a stale neighbour for h2: exit %d, row %+v", code, row)
	}
	msg := row.Problems[0].Message
	if !strings.Contains(msg, "has MAC "+stale) || !strings.Contains(msg, "publishes VtepMAC "+row.VtepMAC) || row.VtepMAC == "" {
		t.Errorf("wrong_vtep_mac message %q does not name both MACs (lease %s)", msg, row.VtepMAC)
	}
	if row.Check == nil || row.Check.Reply {
		t.Errorf("h2's pod gateway answered through a stale neighbour entry: %+v", row.Check)
	}
	if other := rowOf(t, r, s3.String()); other.Status != "ok" {
		t.Errorf("h3 row %+v, want ok", other)
	}
	out, _ := weftStatus(t, l, "h1", "--check")
	t.Logf("h1 with a stale neighbour entry:\n%s", out)

	// h2: its device's MAC changes under a stopped agent.
	if err := l.StopAgent("h2", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	nstest.Exec(t, l.NS("h2"), "ip", "link", "set", "flannel.1", "address", "02:00:00:00:00:42")
	r, code = statusJSON(t, l, "h2")
	if code != 1 || !strings.Contains(strings.Join(codesOf(r.Problems), " "), status.CodeOwnVtepMAC) {
		t.Errorf("h2 with a changed device MAC: exit %d, host problems %v; want own_vtep_mac", code, codesOf(r.Problems))
	}
	if self := rowOf(t, r, s2.String()); !self.Self || self.Status != "problem" {
		t.Errorf("h2's own row %+v, want self and problem", self)
	}
	r, code = statusJSON(t, l, "h3", "--check")
	row = rowOf(t, r, s2.String())
	if code != 1 || !slices.Equal(codesOf(row.Problems), []string{status.CodeGatewayNoAnswer}) ||
		row.Check == nil || row.Check.PublicIPReply == nil || !*row.Check.PublicIPReply {
		t.Errorf("h3 looking at h2: exit %d, row %+v, check %+v; want gateway_unreachable with the PublicIP answering", code, row, row.Check)
	}
	if rowOf(t, r, s1.String()).Status != "ok" {
		t.Errorf("h3 sees h1 as %+v, want ok", rowOf(t, r, s1.String()))
	}
	out, _ = weftStatus(t, l, "h3", "--check")
	t.Logf("h3 after h2's device MAC changed:\n%s", out)
}

// `weft status --check` on a dual-stack vxlan lab probes every peer over
// both families. With h1's agent stopped and only its IPv6 route to h3
// deleted, status on h1 exits 1 and names the IPv6 side: h3's IPv4 probe
// still answers, its IPv6 probe finds no route, every problem of the row
// is about IPv6, and h2 stays ok over both.
func TestStatusCheckNamesTheIPv6Side(t *testing.T) {
	l, _ := upLabSpec(t, lab.Spec{Hosts: 3, Pods: 1, Backend: "vxlan", IPFamily: lab.FamilyDual})
	s2, s3 := subnetOf(t, l, "h2"), subnetOf(t, l, "h3")
	s3v6 := v6SubnetOf(t, l, "h3")

	// IPv6 neighbour discovery on the underlay and in the pods settles
	// with the first packets: a healthy report within a deadline.
	var r status.Report
	nstest.Eventually(t, 30*time.Second, func() error {
		var code int
		if r, code = statusJSON(t, l, "h1", "--check"); code != 0 {
			return fmt.Errorf("status --check on a healthy dual-stack lab exited %d: %+v", code, r.Leases)
		}
		return nil
	})
	for _, s := range []string{s2.String(), s3.String()} {
		row := rowOf(t, r, s)
		if row.Check == nil || row.Check.Family != "IPv4" || !row.Check.Reply || row.CheckIPv6 == nil || row.CheckIPv6.Family != "IPv6" || !row.CheckIPv6.Reply {
			t.Errorf("healthy row %s: checks %+v, %+v; want a reply over each family", s, row.Check, row.CheckIPv6)
		}
	}

	if err := l.StopAgent("h1", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	ipIn(t, l, "h1", "-6", "route", "del", s3v6.String())

	r, code := statusJSON(t, l, "h1", "--check")
	if code != 1 || r.OK {
		t.Errorf("status --check without h3's IPv6 route: exit %d, ok %v; want 1", code, r.OK)
	}
	row := rowOf(t, r, s3.String())
	if row.Check == nil || !row.Check.Reply || row.CheckIPv6 == nil || !row.CheckIPv6.NoRoute || row.CheckIPv6.Reply {
		t.Errorf("h3: IPv4 check %+v, IPv6 check %+v; want IPv4 answering, IPv6 without a route", row.Check, row.CheckIPv6)
	}
	if len(row.Problems) == 0 || row.Status != "problem" {
		t.Errorf("h3: status %s, problems %+v", row.Status, row.Problems)
	}
	for _, p := range row.Problems {
		if !strings.HasPrefix(p.Message, "IPv6: ") {
			t.Errorf("h3 problem %q [%s] does not name the IPv6 side", p.Message, p.Code)
		}
	}
	if !slices.ContainsFunc(row.Problems, func(p status.Problem) bool {
		return p.Code == status.CodeNoRoute && strings.Contains(p.Message, "no route to "+s3v6.String())
	}) {
		t.Errorf("h3 problems %+v; want no_route to %s", row.Problems, s3v6)
	}
	if h2 := rowOf(t, r, s2.String()); h2.Status != "ok" || h2.CheckIPv6 == nil || !h2.CheckIPv6.Reply {
		t.Errorf("h2: %+v, IPv6 check %+v; want ok", h2, h2.CheckIPv6)
	}

	out, _ := weftStatus(t, l, "h1", "--check")
	t.Logf("IPv6 route to h3 deleted:\n%s", out)
	if line := strings.Join(tableRow(t, out, s3.String()), " "); !strings.Contains(line, "& no route") || !strings.HasSuffix(line, "PROBLEM") {
		t.Errorf("table row of h3 %q: want the IPv6 check's no route beside the IPv4 one's reply", line)
	}
}
