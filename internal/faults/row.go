package faults

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// RepairGoal is how soon after a fault (or after the end of an outage)
// the kernel state must be back and pings must flow again, unless the row
// or the run sets another (Row.Goal).
const RepairGoal = time.Second

// Row is one fault's measurement.
type Row struct {
	ID      string // stable name, what gaps and --only refer to
	Fault   string // what was done, for people
	Backend string

	Sent, Lost int
	// Forced says the fault itself cuts traffic (a deleted device drops
	// packets until it is back): loss is then judged by Repair alone.
	Forced bool

	// Repair is the time from injection (or from the end of an outage)
	// until the state was back; negative when the row measures none.
	Repair time.Duration
	// Repaired is false when the state never came back within the row's
	// timeout (Repair is then the timeout).
	Repaired bool
	// Goal is the repair time the row is held to; zero means RepairGoal.
	Goal time.Duration

	// Cause is the first agent log line that named the fault; empty when
	// none did.
	Cause string
	// NoCause says the row does not need a log line (nothing went wrong
	// that an operator must hear about).
	NoCause bool

	// Problems are the row's own findings beyond loss, repair and cause
	// (a pod that saw a masqueraded source, two agents on one subnet).
	Problems []string
	// Notes are details worth keeping that are not failures.
	Notes []string
	// Err is a failure of the suite itself to run the row.
	Err error

	// Gap, when set, is the known gap this row measures: its failure does
	// not fail the suite.
	Gap string
}

// Failures lists why the row misses the goal; empty means PASS.
func (r Row) Failures() []string {
	var f []string
	if r.Err != nil {
		return []string{"not measured: " + r.Err.Error()}
	}
	if !r.Forced && r.Lost > 0 {
		f = append(f, fmt.Sprintf("%d pings lost", r.Lost))
	}
	if r.Repair >= 0 {
		if !r.Repaired {
			f = append(f, fmt.Sprintf("not repaired within %s", fmtDur(r.Repair)))
		} else if goal := r.goal(); r.Repair > goal {
			f = append(f, fmt.Sprintf("repair took %s (goal %s)", fmtDur(r.Repair), fmtDur(goal)))
		}
	}
	if !r.NoCause && r.Cause == "" {
		f = append(f, "no log line named the cause")
	}
	return append(f, r.Problems...)
}

func (r Row) goal() time.Duration {
	if r.Goal > 0 {
		return r.Goal
	}
	return RepairGoal
}

// Result is PASS, FAIL or "known gap (...)".
func (r Row) Result() string {
	switch {
	case len(r.Failures()) == 0 && r.Gap != "":
		return "PASS (known gap fixed: " + r.Gap + ")"
	case len(r.Failures()) == 0:
		return "PASS"
	case r.Gap != "":
		return "known gap (" + r.Gap + ")"
	default:
		return "FAIL"
	}
}

// Fails reports whether the row fails the suite.
func (r Row) Fails() bool { return len(r.Failures()) > 0 && r.Gap == "" }

func fmtDur(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%d ms", d.Milliseconds())
	default:
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
}

func (r Row) repairText() string {
	switch {
	case r.Err != nil:
		return "-"
	case r.Repair < 0:
		return "-"
	case !r.Repaired:
		return "> " + fmtDur(r.Repair)
	default:
		return fmtDur(r.Repair)
	}
}

func (r Row) lostText() string {
	if r.Err != nil && r.Sent == 0 {
		return "-"
	}
	s := fmt.Sprintf("%d/%d", r.Lost, r.Sent)
	if r.Forced {
		s += " (forced)"
	}
	return s
}

func (r Row) causeText(max int) string {
	c := r.Cause
	switch {
	case r.Cause == "" && r.NoCause:
		c = "(none needed)"
	case r.Cause == "":
		c = "(none)"
	}
	if max > 0 && len(c) > max {
		c = c[:max-1] + "…"
	}
	return c
}

// WriteTable prints the rows as a table for a terminal, then the reasons
// of every row that is not a PASS.
func WriteTable(w io.Writer, rows []Row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FAULT\tBACKEND\tLOST/SENT\tREPAIR\tRESULT\tCAUSE (first log line naming it)")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Backend, r.lostText(), r.repairText(), r.Result(), r.causeText(110))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range rows {
		if f := r.Failures(); len(f) > 0 {
			fmt.Fprintf(w, "  %s: %s\n", r.ID, strings.Join(f, "; "))
		}
		for _, n := range r.Notes {
			fmt.Fprintf(w, "  %s: note: %s\n", r.ID, n)
		}
	}
	return nil
}

// MarkdownTable renders the rows for docs/reliability.md.
func MarkdownTable(rows []Row) string {
	var b strings.Builder
	b.WriteString("| fault | backend | lost/sent | repair | result | cause (first log line naming it) |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	for _, r := range rows {
		res := r.Result()
		if f := r.Failures(); len(f) > 0 {
			res += ": " + strings.Join(f, "; ")
		}
		if len(r.Notes) > 0 {
			res += " (" + strings.Join(r.Notes, "; ") + ")"
		}
		fmt.Fprintf(&b, "| `%s` %s | %s | %s | %s | %s | %s |\n", r.ID, mdEscape(r.Fault), r.Backend,
			r.lostText(), r.repairText(), mdEscape(res), mdCode(r.causeText(200)))
	}
	return b.String()
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func mdCode(s string) string {
	if strings.HasPrefix(s, "(") {
		return s
	}
	return "`" + strings.ReplaceAll(strings.ReplaceAll(s, "`", "'"), "|", `\|`) + "`"
}

// Doc markers: the table between them is replaced by each run that
// writes the doc; the text around it is left alone.
const (
	docBegin = "<!-- faults:begin (generated by `make faults`; edits here are overwritten) -->"
	docEnd   = "<!-- faults:end -->"
)

// SpliceDoc returns doc with the text between the markers replaced by
// table; a doc without markers gets them appended.
func SpliceDoc(doc, table string) string {
	block := docBegin + "\n" + table + docEnd
	i := strings.Index(doc, docBegin)
	j := strings.Index(doc, docEnd)
	if i < 0 || j < i {
		if doc != "" && !strings.HasSuffix(doc, "\n") {
			doc += "\n"
		}
		return doc + "\n" + block + "\n"
	}
	return doc[:i] + block + doc[j+len(docEnd):]
}
