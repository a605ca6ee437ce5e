package status

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteJSON writes r as indented JSON (`weft status -o json`).
func WriteJSON(w io.Writer, r Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write status as JSON: %w", err)
	}
	return nil
}

// wrapWidth is where problem messages are wrapped.
const wrapWidth = 100

// WriteTable writes r for people: a header about this host, one line per
// lease, then every problem with its explanation.
func WriteTable(w io.Writer, r Report) error {
	var b strings.Builder
	network := both(r.Network, r.IPv6Network)
	fmt.Fprintf(&b, "network %s, backend %s, leases from %s\n", network, r.Backend, r.Store)
	fmt.Fprintf(&b, "this host: %s\n\n", hostLine(r.Host))

	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SUBNET\tPUBLIC IP\tBACKEND\tEXPIRES\tHOST\tKERNEL\tCHECK\tSTATUS")
	for _, row := range r.Leases {
		host, kern := "peer", kernelSummary(row.Entries)
		if row.Self {
			host, kern = "self", kernelSummary(r.Host.Entries)
		}
		st := row.Status
		switch st {
		case "problem":
			st = "PROBLEM"
		case "refused":
			st = "REFUSED"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			both(row.Subnet, row.IPv6Subnet), both(row.PublicIP, row.PublicIPv6), orDash(row.Backend), expiresText(row, r.Time), orDash(host), kern, checkSummary(row, r.Checked), st)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	if r.ProblemCount > 0 {
		b.WriteString("\nProblems:\n")
		if len(r.Problems) > 0 {
			b.WriteString("  this host:\n")
			writeProblems(&b, r.Problems)
		}
		for _, row := range r.Leases {
			if len(row.Problems) == 0 {
				continue
			}
			fmt.Fprintf(&b, "  %s (%s):\n", row.Subnet, row.PublicIP)
			writeProblems(&b, row.Problems)
		}
	}
	if r.WarningCount > 0 {
		b.WriteString("\nWarnings:\n  this host:\n")
		writeProblemsAs(&b, r.Warnings, "WARN ")
	}
	b.WriteString("\n" + summary(r) + "\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func hostLine(h Host) string {
	var parts []string
	ip := h.PublicIP
	if ip == "" {
		ip = "PublicIP unknown"
	}
	if h.Interface != "" {
		ip += fmt.Sprintf(" on %s (mtu %d)", h.Interface, h.MTU)
	}
	parts = append(parts, ip)
	if h.Subnet != "" {
		parts = append(parts, "subnet "+both(h.Subnet, h.IPv6Subnet))
	} else {
		parts = append(parts, "no lease")
	}
	if h.PodMTU != 0 {
		parts = append(parts, "pod mtu "+strconv.Itoa(h.PodMTU))
	}
	parts = append(parts, h.SubnetFile)
	return strings.Join(parts, ", ")
}

// both renders a value and its IPv6 counterpart, when there is one, as
// "10.5.1.0/24 & fd00::/64"; the IPv6 one alone when there is no IPv4 one
// (an IPv6-only network).
func both(v4, v6 string) string {
	switch {
	case v6 == "":
		return v4
	case v4 == "":
		return v6
	}
	return v4 + " & " + v6
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func expiresText(row Row, now time.Time) string {
	switch {
	case row.Node:
		return "never (node)"
	case row.Reservation || row.Expires == nil:
		return "reservation"
	}
	left := row.Expires.Sub(now)
	if left <= 0 {
		return "expired " + FormatDuration(left) + " ago"
	}
	return "in " + FormatDuration(left)
}

// kernelSummary is "ok" when every entry is in place, "-" when none is
// needed, else what is missing or wrong ("route missing", "neigh wrong").
func kernelSummary(es []Entry) string {
	if len(es) == 0 {
		return "-"
	}
	var bad []string
	for _, e := range es {
		if e.State != StateOK {
			bad = append(bad, e.Kind+" "+e.State)
		}
	}
	if len(bad) == 0 {
		return "ok"
	}
	return strings.Join(bad, ", ")
}

// checkSummary is what --check found for row: of its one family, or of
// both as "ok 0.12ms & no route" (IPv4 first).
func checkSummary(row Row, checked bool) string {
	if !checked {
		return "-"
	}
	if row.CheckIPv6 != nil {
		return oneCheckSummary(row.Check) + " & " + oneCheckSummary(row.CheckIPv6)
	}
	return oneCheckSummary(row.Check)
}

func oneCheckSummary(c *Check) string {
	switch {
	case c == nil:
		return "-"
	case c.Reply && c.FullSizeReply != nil && !*c.FullSizeReply:
		return "small only"
	case c.Reply && c.RTTms != nil:
		return fmt.Sprintf("ok %.2fms", *c.RTTms)
	case c.Reply:
		return "ok"
	case c.NoRoute:
		return "no route"
	default:
		return "no reply"
	}
}

func writeProblems(b *strings.Builder, ps []Problem) { writeProblemsAs(b, ps, "") }

// writeProblemsAs writes each problem's message after tag, wrapped, then
// its want, have and fix.
func writeProblemsAs(b *strings.Builder, ps []Problem, tag string) {
	for _, p := range ps {
		lines := wrap(tag+p.Message+" ["+p.Code+"]", wrapWidth-6)
		for i, l := range lines {
			if i == 0 {
				b.WriteString("    - " + l + "\n")
			} else {
				b.WriteString("      " + l + "\n")
			}
		}
		if p.Want != "" {
			b.WriteString("      want: " + p.Want + "\n")
		}
		if p.Have != "" {
			b.WriteString("      have: " + p.Have + "\n")
		}
		if p.Fix != "" {
			b.WriteString("      fix:  " + p.Fix + "\n")
		}
	}
}

// wrap breaks s into lines of at most width bytes at spaces, never inside
// a `quoted command`; a longer word gets a line of its own.
func wrap(s string, width int) []string {
	var lines []string
	var cur strings.Builder
	for _, word := range words(s) {
		if cur.Len() > 0 && cur.Len()+1+len(word) > width {
			lines = append(lines, cur.String())
			cur.Reset()
		}
		if cur.Len() > 0 {
			cur.WriteByte(' ')
		}
		cur.WriteString(word)
	}
	if cur.Len() > 0 {
		lines = append(lines, cur.String())
	}
	return lines
}

// words splits s at spaces, keeping each `quoted command` in one piece.
func words(s string) []string {
	var out []string
	open := false
	for _, f := range strings.Fields(s) {
		if open {
			out[len(out)-1] += " " + f
		} else {
			out = append(out, f)
		}
		if strings.Count(f, "`")%2 == 1 {
			open = !open
		}
	}
	return out
}

func summary(r Report) string {
	peers := 0
	for _, row := range r.Leases {
		if !row.Self {
			peers++
		}
	}
	counts := fmt.Sprintf("%d %s, %d %s", len(r.Leases), plural(len(r.Leases), "lease", "leases"), peers, plural(peers, "peer", "peers"))
	checked := ""
	if r.Checked {
		checked = ", probed"
	}
	warned := ""
	if r.WarningCount > 0 {
		warned = fmt.Sprintf(", %d %s", r.WarningCount, plural(r.WarningCount, "warning", "warnings"))
	}
	if r.OK && warned != "" {
		return "WARNINGS: " + counts + checked + ", no problems" + warned
	}
	if r.OK {
		return "ok: " + counts + checked + ", no problems"
	}
	return fmt.Sprintf("PROBLEMS: %s%s, %d %s%s", counts, checked, r.ProblemCount, plural(r.ProblemCount, "problem", "problems"), warned)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
