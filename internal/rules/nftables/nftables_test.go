package nftables

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/knftables"

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

// dump is the table Desired wants, as knftables' fake holds it once written.
func dump(t *testing.T, f rulespec.Family, s rulespec.Spec, fullyRandom bool) string {
	t.Helper()
	w, ok := Desired(f, s, fullyRandom)
	if !ok {
		return ""
	}
	fake := knftables.NewFake(w.Family, w.Name)
	tx := fake.NewTransaction()
	replace(tx, w)
	if err := fake.Run(context.Background(), tx); err != nil {
		t.Fatalf("write %s: %v", w.Name, err)
	}
	return fake.Dump()
}

func TestDesired(t *testing.T) {
	for _, f := range spec.Families() {
		golden(t, "table-"+f.Name(), dump(t, f, spec, true))
	}
	keepOnly := rulespec.Spec{Network: spec.Network, Subnet: spec.Subnet, KeepSource: true}
	golden(t, "keepsrc-only", dump(t, keepOnly.Families()[0], keepOnly, true))

	if got := dump(t, spec.Families()[0], spec, false); strings.Contains(got, "fully-random") {
		t.Errorf("fully-random without support:\n%s", got)
	}
	if _, ok := Desired(rulespec.Spec{}.Families()[0], spec, true); ok {
		t.Error("disabled family wants a table")
	}
	none := rulespec.Spec{Network: spec.Network, Subnet: spec.Subnet}
	if _, ok := Desired(none.Families()[0], none, true); ok {
		t.Error("no groups want a table")
	}

	// Deferred keep-source: no keepsrc chain, and without --ip-masq no
	// NAT chain at all, or no table when nothing else is wanted.
	deferred := spec
	deferred.Masq = false
	deferred.KeepSourceDeferred = [2]bool{true, false}
	v4, v6 := dump(t, deferred.Families()[0], deferred, true), dump(t, deferred.Families()[1], deferred, true)
	if strings.Contains(v4, "type nat") || !strings.Contains(v4, "chain ip flannel-ipv4 forward") {
		t.Errorf("deferred IPv4 has NAT or lacks forward:\n%s", v4)
	}
	if !strings.Contains(v6, "chain ip6 flannel-ipv6 keepsrc") {
		t.Errorf("IPv6 not deferred lacks keepsrc:\n%s", v6)
	}
	keepOnly.KeepSourceDeferred[0] = true
	if _, ok := Desired(keepOnly.Families()[0], keepOnly, true); ok {
		t.Error("deferred keep-source as the only group wants a table")
	}
}

// deleteRule removes the rule with text r from a fake's chain.
func deleteRule(f *knftables.Fake, chain, r string) bool {
	f.Lock()
	defer f.Unlock()
	c := f.Table.Chains[chain]
	for i, x := range c.Rules {
		if x.Rule == r {
			c.Rules = append(c.Rules[:i], c.Rules[i+1:]...)
			return true
		}
	}
	return false
}

func newManager(fake *Fake, log *bytes.Buffer, repaired *int) *Manager {
	opts := Options{Repaired: func(n int) { *repaired += n }}
	fake.Options(&opts)
	return New(slog.New(slog.NewTextHandler(log, nil)), opts)
}

// TestFlannelRules checks postrtg and forward of both families against
// flannel's nftables rules (flannel.md §8.2; ip6 and ff00::/8 for IPv6)
// with the two fixes the package comment names: the fourth postrtg rule
// as flannel's iptables has it (! saddr N, daddr S), and the kube-proxy
// mark matched as a bit.
func TestFlannelRules(t *testing.T) {
	for _, tc := range []struct {
		f    rulespec.Family
		want string
	}{
		{spec.Families()[0], `chain forward: ip saddr 10.244.0.0/16 accept
chain forward: ip daddr 10.244.0.0/16 accept
chain postrtg: meta mark & 0x00004000 == 0x00004000 return
chain postrtg: ip saddr 10.244.1.0/24 ip daddr 10.244.0.0/16 return
chain postrtg: ip saddr 10.244.0.0/16 ip daddr 10.244.1.0/24 return
chain postrtg: ip saddr != 10.244.0.0/16 ip daddr 10.244.1.0/24 return
chain postrtg: ip saddr 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random
chain postrtg: ip saddr != 10.244.0.0/16 ip daddr 10.244.0.0/16 masquerade fully-random
`},
		{spec.Families()[1], `chain forward: ip6 saddr fd10::/48 accept
chain forward: ip6 daddr fd10::/48 accept
chain postrtg: meta mark & 0x00004000 == 0x00004000 return
chain postrtg: ip6 saddr fd10:0:0:1::/64 ip6 daddr fd10::/48 return
chain postrtg: ip6 saddr fd10::/48 ip6 daddr fd10:0:0:1::/64 return
chain postrtg: ip6 saddr != fd10::/48 ip6 daddr fd10:0:0:1::/64 return
chain postrtg: ip6 saddr fd10::/48 ip6 daddr != ff00::/8 masquerade fully-random
chain postrtg: ip6 saddr != fd10::/48 ip6 daddr fd10::/48 masquerade fully-random
`},
	} {
		w, ok := Desired(tc.f, spec, true)
		if !ok {
			t.Fatalf("%s: no table", tc.f.Name())
		}
		var got strings.Builder
		for _, c := range w.Chains {
			if c.Chain.Name != ChainMasq && c.Chain.Name != ChainForward {
				continue
			}
			for _, r := range c.Rules {
				got.WriteString("chain " + c.Chain.Name + ": " + r.Rule + "\n")
			}
		}
		// Desired lists postrtg before forward; flannel's order within
		// each chain is what counts.
		lines := strings.SplitAfter(got.String(), "\n")
		slices.SortStableFunc(lines, func(a, b string) int {
			return strings.Compare(strings.SplitN(a, ":", 2)[0], strings.SplitN(b, ":", 2)[0])
		})
		if g := strings.Join(lines, ""); g != tc.want {
			t.Errorf("%s rules:\n%s\nwant\n%s", tc.f.Name(), g, tc.want)
		}
	}
}

func TestManager(t *testing.T) {
	ctx := context.Background()
	fake := NewFake()
	var logs bytes.Buffer
	repaired := 0
	m := newManager(fake, &logs, &repaired)

	if err := m.Sync(ctx, spec); err != nil {
		t.Fatal(err)
	}
	for i, f := range spec.Families() {
		if got, want := fake.Tables[i].Dump(), dump(t, f, spec, true); got != want {
			t.Errorf("family %s:\n%s\nwant\n%s", f.Name(), got, want)
		}
	}
	if !strings.Contains(logs.String(), "installing nftables table") || !strings.Contains(logs.String(), "table missing") {
		t.Errorf("install not logged:\n%s", logs.String())
	}

	writes, _ := fake.Counts()
	if err := m.Sync(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if w, _ := fake.Counts(); w != writes || repaired != 0 {
		t.Errorf("converged Sync wrote %d times, counted %d repairs", w-writes, repaired)
	}

	// A rule deleted behind weft's back is noticed, put back and counted.
	if !deleteRule(fake.Tables[0], "keepsrc", "ip daddr 10.244.1.0/24 return") {
		t.Fatal("rule to delete not found")
	}
	logs.Reset()
	if err := m.Sync(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "repairing nftables table") || !strings.Contains(logs.String(), "missing: ip daddr 10.244.1.0/24 return") {
		t.Errorf("repair not logged:\n%s", logs.String())
	}
	if fake.Tables[0].Dump() != dump(t, spec.Families()[0], spec, true) || repaired != 1 {
		t.Errorf("table not restored or repair not counted (%d):\n%s", repaired, fake.Tables[0].Dump())
	}

	// Reordered rules are a change too.
	fake.Tables[0].Lock()
	r := fake.Tables[0].Table.Chains["forward"].Rules
	r[0], r[1] = r[1], r[0]
	fake.Tables[0].Unlock()
	logs.Reset()
	if err := m.Sync(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "rules out of order") || repaired != 2 {
		t.Errorf("reorder not reported or counted (%d):\n%s", repaired, logs.String())
	}

	// A change of the desired rules is no repair; IPv6 switched off: its
	// table goes.
	v4 := spec
	v4.IPv6Network, v4.IPv6Subnet = netip.Prefix{}, netip.Prefix{}
	v4.Subnet = netip.MustParsePrefix("10.244.9.0/24")
	if err := m.Sync(ctx, v4); err != nil {
		t.Fatal(err)
	}
	if FakeState(fake.Tables[1]).Exists || repaired != 2 {
		t.Errorf("ip6 flannel-ipv6 left after IPv6 was switched off, or a change counted as repair (%d)", repaired)
	}

	if err := m.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if FakeState(fake.Tables[0]).Exists {
		t.Error("ip flannel-ipv4 left after Cleanup")
	}
}

func TestManagerWithoutFullyRandomOrNFT(t *testing.T) {
	fake := NewFake()
	fake.NoFullyRandom = true
	var logs bytes.Buffer
	repaired := 0
	m := newManager(fake, &logs, &repaired)
	if err := m.Sync(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	if d := fake.Tables[0].Dump(); strings.Contains(d, "fully-random") || !strings.Contains(logs.String(), "cannot masquerade fully-random") {
		t.Errorf("fully-random used or not logged:\n%s\n%s", d, logs.String())
	}

	opts := Options{
		NFT:  func(knftables.Family, string) (knftables.Interface, error) { return nil, ruleexec.NotFound("nft") },
		Read: func(knftables.Family, string) (State, error) { return State{}, nil },
	}
	m = New(slog.New(slog.DiscardHandler), opts)
	if err := m.Sync(context.Background(), spec); !errors.Is(err, ruleexec.ErrNotFound) {
		t.Errorf("Sync without nft: %v", err)
	}
	if err := m.Cleanup(context.Background()); err != nil {
		t.Errorf("Cleanup without nft: %v", err)
	}
}

// TestManagerRace: a rule inserted between weft's write and its read-back
// is caught and removed at once; a table that changes on every write is
// an error.
func TestManagerRace(t *testing.T) {
	v4 := spec
	v4.IPv6Network, v4.IPv6Subnet = netip.Prefix{}, netip.Prefix{}
	fake := NewFake()
	insert := func(int) {
		tbl := fake.Tables[0]
		tbl.Lock()
		c := tbl.Table.Chains["forward"]
		c.Rules = append(c.Rules, &knftables.Rule{Chain: "forward", Rule: "ip saddr 1.2.3.4 accept"})
		tbl.Unlock()
	}
	fake.AfterWrite = func(n int) {
		if n == 1 {
			insert(n)
		}
	}
	var logs bytes.Buffer
	repaired := 0
	m := newManager(fake, &logs, &repaired)
	ctx := context.Background()
	if err := m.Sync(ctx, v4); err != nil {
		t.Fatal(err)
	}
	if w, _ := fake.Counts(); w != 2 || fake.Tables[0].Dump() != dump(t, v4.Families()[0], v4, true) {
		t.Errorf("race: %d writes, table\n%s", w, fake.Tables[0].Dump())
	}
	if !strings.Contains(logs.String(), "changed while being written") {
		t.Errorf("rewrite not logged:\n%s", logs.String())
	}

	fake = NewFake()
	fake.AfterWrite = insert
	m = newManager(fake, &logs, &repaired)
	if err := m.Sync(ctx, v4); err == nil || !strings.Contains(err.Error(), "changed while being written") {
		t.Errorf("endless writer: err = %v", err)
	}
}

func TestDescribeChange(t *testing.T) {
	w, _ := Desired(spec.Families()[0], spec, true)
	fake := knftables.NewFake(w.Family, w.Name)
	tx := fake.NewTransaction()
	replace(tx, w)
	if err := fake.Run(context.Background(), tx); err != nil {
		t.Fatal(err)
	}
	ref := newReference(FakeState(fake), w)
	change := func(edit func(c map[string]ChainState)) State {
		st := FakeState(fake)
		chains := map[string]ChainState{}
		for _, c := range st.Chains {
			c.Rules = append([]string(nil), c.Rules...)
			chains[c.Name] = c
		}
		edit(chains)
		for i, c := range st.Chains {
			st.Chains[i] = chains[c.Name]
		}
		return st
	}
	for name, tc := range map[string]struct {
		now  State
		want string
	}{
		"missing": {change(func(c map[string]ChainState) {
			f := c["forward"]
			f.Rules = f.Rules[1:]
			c["forward"] = f
		}), "missing: ip saddr 10.244.0.0/16 accept"},
		"unexpected": {change(func(c map[string]ChainState) {
			f := c["forward"]
			f.Rules = append(f.Rules, "ip saddr 1.2.3.4 accept")
			c["forward"] = f
		}), "unexpected: chain forward rule 3"},
		"duplicate": {change(func(c map[string]ChainState) {
			f := c["forward"]
			f.Rules = append(f.Rules, f.Rules[0])
			c["forward"] = f
		}), "unexpected: chain forward rule 3 (again: ip saddr 10.244.0.0/16 accept)"},
		"order": {change(func(c map[string]ChainState) {
			f := c["forward"]
			f.Rules[0], f.Rules[1] = f.Rules[1], f.Rules[0]
			c["forward"] = f
		}), "rules out of order"},
		"gone": {State{}, "table missing"},
	} {
		if got := strings.Join(ref.describeChange(tc.now), "; "); got != tc.want {
			t.Errorf("%s: %q, want %q", name, got, tc.want)
		}
	}
}
