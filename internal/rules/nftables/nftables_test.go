package nftables

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/rules/ruleexec"
	"github.com/weftnet/weft/internal/rules/rulespec"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from %s:\n--- got\n%s--- want\n%s", name, path, got, want)
	}
}

var spec = rulespec.Spec{
	Network:     netip.MustParsePrefix("10.244.0.0/16"),
	Subnet:      netip.MustParsePrefix("10.244.1.0/24"),
	IPv6Network: netip.MustParsePrefix("fd10::/48"),
	IPv6Subnet:  netip.MustParsePrefix("fd10:0:0:1::/64"),
	Masq:        true, FullyRandom: true, Forward: true, KeepSource: true,
}

func TestRender(t *testing.T) {
	for _, f := range spec.Families() {
		golden(t, "table-"+f.Name(), Render(f, spec, true))
	}
	keepOnly := rulespec.Spec{Network: spec.Network, Subnet: spec.Subnet, KeepSource: true}
	golden(t, "keepsrc-only", Render(keepOnly.Families()[0], keepOnly, true))

	if got := Render(spec.Families()[0], spec, false); strings.Contains(got, "fully-random") {
		t.Errorf("fully-random without support:\n%s", got)
	}
	if got := Render(rulespec.Spec{}.Families()[0], spec, true); got != "" {
		t.Errorf("disabled family rendered %q", got)
	}
	none := rulespec.Spec{Network: spec.Network, Subnet: spec.Subnet}
	if got := Render(none.Families()[0], none, true); got != "" {
		t.Errorf("no groups rendered %q", got)
	}

	// Deferred keep-source: no keepsrc chain, and without --ip-masq no
	// NAT chain at all, or no table when nothing else is wanted.
	deferred := spec
	deferred.Masq = false
	deferred.KeepSourceDeferred = [2]bool{true, false}
	v4, v6 := Render(deferred.Families()[0], deferred, true), Render(deferred.Families()[1], deferred, true)
	if strings.Contains(v4, "type nat") || !strings.Contains(v4, "chain forward") {
		t.Errorf("deferred IPv4 renders NAT or lacks forward:\n%s", v4)
	}
	if !strings.Contains(v6, "chain keepsrc") {
		t.Errorf("IPv6 not deferred lacks keepsrc:\n%s", v6)
	}
	keepOnly.KeepSourceDeferred[0] = true
	if got := Render(keepOnly.Families()[0], keepOnly, true); got != "" {
		t.Errorf("deferred keep-source as the only group rendered %q", got)
	}
}

// fakeNFT models nft for one namespace: tables as their listing text.
type fakeNFT struct {
	tables       map[string]string // "ip flannel-ipv4" → listing
	noRandom     bool
	notInstalled bool
}

func (n *fakeNFT) handle(c ruleexec.Call) ([]byte, error) {
	if n.notInstalled || c.Name != "nft" {
		return nil, ruleexec.NotFound(c.Name)
	}
	args := strings.Join(c.Args, " ")
	switch {
	case args == "-c -f -":
		if n.noRandom {
			return nil, errors.New("Error: fully-random not supported")
		}
		return nil, nil
	case args == "list tables":
		var b strings.Builder
		for _, k := range slices.Sorted(mapsKeys(n.tables)) {
			b.WriteString("table " + k + "\n")
		}
		return []byte(b.String()), nil
	case strings.HasPrefix(args, "list table "):
		l, ok := n.tables[strings.TrimPrefix(args, "list table ")]
		if !ok {
			return nil, errors.New("Error: No such file or directory")
		}
		return []byte(l), nil
	case args == "-f -":
		lines := strings.Split(c.Stdin, "\n")
		for len(lines) >= 2 && strings.HasPrefix(lines[0], "add table ") && strings.HasPrefix(lines[1], "delete table ") {
			delete(n.tables, strings.TrimPrefix(lines[0], "add table "))
			lines = lines[2:]
		}
		if def := strings.Join(lines, "\n"); strings.TrimSpace(def) != "" {
			head, _, _ := strings.Cut(def, " {")
			n.tables[strings.TrimPrefix(head, "table ")] = def
		}
		return nil, nil
	}
	return nil, errors.New("fake nft: unexpected " + args)
}

func mapsKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func writes(f *ruleexec.Fake) int {
	n := 0
	for _, c := range f.Calls() {
		if strings.Join(c.Args, " ") == "-f -" {
			n++
		}
	}
	return n
}

func TestManager(t *testing.T) {
	ctx := context.Background()
	nft := &fakeNFT{tables: map[string]string{"ip nat": "table ip nat {}\n"}}
	f := &ruleexec.Fake{Handle: nft.handle}
	var logs bytes.Buffer
	m := New(slog.New(slog.NewTextHandler(&logs, nil)), Options{Runner: f})

	if err := m.Sync(ctx, spec); err != nil {
		t.Fatal(err)
	}
	for _, f := range spec.Families() {
		fam, name := TableName(f)
		if got := nft.tables[fam+" "+name]; got != Render(f, spec, true) {
			t.Errorf("%s %s = %q", fam, name, got)
		}
	}
	if !strings.Contains(logs.String(), "installing nftables table") || !strings.Contains(logs.String(), "table missing") {
		t.Errorf("install not logged:\n%s", logs.String())
	}
	if nft.tables["ip nat"] == "" {
		t.Error("someone else's table was touched")
	}

	f.Reset()
	if err := m.Sync(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if writes(f) != 0 {
		t.Errorf("converged Sync wrote: %v", f.Calls())
	}

	// A rule deleted behind weft's back is noticed and put back.
	nft.tables["ip flannel-ipv4"] = strings.Replace(nft.tables["ip flannel-ipv4"], "\t\tip daddr 10.244.1.0/24 return\n", "", 1)
	logs.Reset()
	if err := m.Sync(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "repairing nftables table") || !strings.Contains(logs.String(), "missing: ip daddr 10.244.1.0/24 return") {
		t.Errorf("repair not logged:\n%s", logs.String())
	}
	if nft.tables["ip flannel-ipv4"] != Render(spec.Families()[0], spec, true) {
		t.Error("table not restored")
	}

	// Reordered rules are a change too.
	def := nft.tables["ip flannel-ipv4"]
	nft.tables["ip flannel-ipv4"] = strings.Replace(strings.Replace(def, "\t\tip saddr 10.244.0.0/16 accept\n", "", 1),
		"\t\tip daddr 10.244.0.0/16 accept\n", "\t\tip daddr 10.244.0.0/16 accept\n\t\tip saddr 10.244.0.0/16 accept\n", 1)
	logs.Reset()
	if err := m.Sync(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "rules out of order") {
		t.Errorf("reorder not reported:\n%s", logs.String())
	}

	// IPv6 switched off: its table goes.
	v4 := spec
	v4.IPv6Network, v4.IPv6Subnet = netip.Prefix{}, netip.Prefix{}
	if err := m.Sync(ctx, v4); err != nil {
		t.Fatal(err)
	}
	if _, ok := nft.tables["ip6 flannel-ipv6"]; ok {
		t.Error("ip6 flannel-ipv6 left after IPv6 was switched off")
	}

	if err := m.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if len(nft.tables) != 1 || nft.tables["ip nat"] == "" {
		t.Errorf("after Cleanup tables = %v, want only ip nat", slices.Sorted(mapsKeys(nft.tables)))
	}
}

func TestManagerWithoutFullyRandomOrNFT(t *testing.T) {
	nft := &fakeNFT{tables: map[string]string{}, noRandom: true}
	var logs bytes.Buffer
	m := New(slog.New(slog.NewTextHandler(&logs, nil)), Options{Runner: &ruleexec.Fake{Handle: nft.handle}})
	if err := m.Sync(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(nft.tables["ip flannel-ipv4"], "fully-random") || !strings.Contains(logs.String(), "cannot masquerade fully-random") {
		t.Errorf("fully-random used or not logged:\n%s\n%s", nft.tables["ip flannel-ipv4"], logs.String())
	}

	gone := &fakeNFT{notInstalled: true}
	m = New(slog.New(slog.DiscardHandler), Options{Runner: &ruleexec.Fake{Handle: gone.handle}})
	if err := m.Sync(context.Background(), spec); !errors.Is(err, ruleexec.ErrNotFound) {
		t.Errorf("Sync without nft: %v", err)
	}
	if err := m.Cleanup(context.Background()); err != nil {
		t.Errorf("Cleanup without nft: %v", err)
	}
}

func TestDescribeChange(t *testing.T) {
	was := "a\nb\nc\n"
	for now, want := range map[string][]string{
		"a\nc\n":       {"missing: b"},
		"a\nb\nc\nx\n": {"unexpected: x"},
		"b\na\nc\n":    {"rules out of order"},
		"a\nb\nb\nc\n": {"unexpected: b"},
	} {
		if got := describeChange(was, now); !slices.Equal(got, want) {
			t.Errorf("describeChange(%q) = %q, want %q", now, got, want)
		}
	}
}

// TestManagerRaceAndFormat: a rule inserted between weft's write and its
// check is caught and removed at once; an nft that lists the table in its
// own format is accepted after two identical listings; a table that
// changes on every write is an error.
func TestManagerRaceAndFormat(t *testing.T) {
	nft := &fakeNFT{tables: map[string]string{}}
	v4 := spec
	v4.IPv6Network, v4.IPv6Subnet = netip.Prefix{}, netip.Prefix{}
	var after func(n int)
	writesSeen := 0
	f := &ruleexec.Fake{Handle: func(c ruleexec.Call) ([]byte, error) {
		out, err := nft.handle(c)
		if strings.Join(c.Args, " ") == "-f -" {
			writesSeen++
			after(writesSeen)
		}
		return out, err
	}}
	var logs bytes.Buffer
	m := New(slog.New(slog.NewTextHandler(&logs, nil)), Options{Runner: f})
	ctx := context.Background()

	after = func(n int) {
		if n == 1 {
			nft.tables["ip flannel-ipv4"] += "\tip saddr 1.2.3.4 accept\n"
		}
	}
	if err := m.Sync(ctx, v4); err != nil {
		t.Fatal(err)
	}
	if writesSeen != 2 || nft.tables["ip flannel-ipv4"] != Render(v4.Families()[0], v4, true) {
		t.Errorf("race: %d writes, table %q", writesSeen, nft.tables["ip flannel-ipv4"])
	}

	m = New(slog.New(slog.NewTextHandler(&logs, nil)), Options{Runner: f})
	writesSeen = 0
	after = func(int) {
		nft.tables["ip flannel-ipv4"] = strings.ReplaceAll(nft.tables["ip flannel-ipv4"], "0x00004000", "0x4000")
	}
	if err := m.Sync(ctx, v4); err != nil {
		t.Fatal(err)
	}
	if writesSeen != 2 || !strings.Contains(logs.String(), "differently from how weft writes it") {
		t.Errorf("format: %d writes; log:\n%s", writesSeen, logs.String())
	}
	writesSeen = 0
	if err := m.Sync(ctx, v4); err != nil || writesSeen != 0 {
		t.Errorf("converged Sync in the other format: err %v, %d writes", err, writesSeen)
	}

	m = New(slog.New(slog.DiscardHandler), Options{Runner: f})
	after = func(n int) { nft.tables["ip flannel-ipv4"] += fmt.Sprintf("\tip saddr 1.2.3.%d accept\n", n) }
	if err := m.Sync(ctx, v4); err == nil || !strings.Contains(err.Error(), "changed while being written") {
		t.Errorf("endless writer: err = %v", err)
	}
}
