package faults

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRowResult(t *testing.T) {
	for _, tc := range []struct {
		name string
		row  Row
		want string
		fail bool
	}{
		{"clean", Row{Repair: 20 * time.Millisecond, Repaired: true, Cause: "x"}, "PASS", false},
		{"forced loss judged by repair", Row{Lost: 40, Forced: true, Repair: 400 * time.Millisecond, Repaired: true, Cause: "x"}, "PASS", false},
		{"loss the fault does not force", Row{Lost: 1, Repair: -1, Cause: "x"}, "FAIL", true},
		{"slow repair", Row{Repair: 1100 * time.Millisecond, Repaired: true, Cause: "x"}, "FAIL", true},
		{"never repaired", Row{Repair: 15 * time.Second, Cause: "x"}, "FAIL", true},
		{"silent", Row{Repair: -1}, "FAIL", true},
		{"silence allowed", Row{Repair: -1, NoCause: true}, "PASS", false},
		{"own problem", Row{Repair: -1, NoCause: true, Problems: []string{"h3 renumbered"}}, "FAIL", true},
		{"not measured", Row{Repair: -1, NoCause: true, Err: errors.New("boom")}, "FAIL", true},
		{"known gap", Row{Repair: -1, Gap: "issue 16 item 5"}, "known gap (issue 16 item 5)", false},
		{"known gap fixed", Row{Repair: -1, NoCause: true, Gap: "issue 16 item 5"}, "PASS (known gap fixed: issue 16 item 5)", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.row.Result(); got != tc.want {
				t.Errorf("Result() = %q, want %q (failures %q)", got, tc.want, tc.row.Failures())
			}
			if got := tc.row.Fails(); got != tc.fail {
				t.Errorf("Fails() = %v, want %v", got, tc.fail)
			}
		})
	}
}

func TestGapsRequire(t *testing.T) {
	// A list of its own: the real one is empty while every row passes.
	saved := KnownGaps
	KnownGaps = map[string]string{"etcd-blocked": "issue 16 item 5", "lease-overlap-25": "issue 16 item 1"}
	t.Cleanup(func() { KnownGaps = saved })
	some := "etcd-blocked"
	if g := Gaps(""); len(g) != len(KnownGaps) {
		t.Errorf("Gaps(\"\") has %d rows, want all %d", len(g), len(KnownGaps))
	}
	if g := Gaps(" " + some + " ,nonexistent"); len(g) != len(KnownGaps)-1 || g[some] != "" {
		t.Errorf("Gaps(%q) still holds %q or lost others: %v", some, some, g)
	}
	if g := Gaps("all"); len(g) != 0 {
		t.Errorf("Gaps(all) = %v, want none", g)
	}
	if KnownGaps[some] == "" {
		t.Errorf("Gaps changed KnownGaps")
	}
}

func TestSpliceDoc(t *testing.T) {
	doc := "# Reliability\n\nintro\n\n" + docBegin + "\nold table\n" + docEnd + "\n\nafter\n"
	got := SpliceDoc(doc, "new table\n")
	want := "# Reliability\n\nintro\n\n" + docBegin + "\nnew table\n" + docEnd + "\n\nafter\n"
	if got != want {
		t.Errorf("SpliceDoc replaced wrongly:\n%s\nwant:\n%s", got, want)
	}
	if again := SpliceDoc(got, "new table\n"); again != got {
		t.Errorf("SpliceDoc is not idempotent:\n%s", again)
	}
	fresh := SpliceDoc("# R\n", "t\n")
	if !strings.HasPrefix(fresh, "# R\n\n"+docBegin+"\nt\n"+docEnd) {
		t.Errorf("SpliceDoc on a doc without markers = %q", fresh)
	}
}

func TestMarkdownTableEscapes(t *testing.T) {
	md := MarkdownTable([]Row{{ID: "x", Fault: "a | b", Backend: "vxlan", Repair: -1, Cause: "h1: msg=`a|b`"}})
	line := strings.Split(strings.TrimSpace(md), "\n")[2]
	// 6 columns: 7 unescaped bars.
	if n := strings.Count(line, "|") - strings.Count(line, `\|`); n != 7 {
		t.Errorf("row %q has %d column bars, want 7", line, n)
	}
}
