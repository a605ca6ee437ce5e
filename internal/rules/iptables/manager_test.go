package iptables

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/rules/ruleexec"
	"github.com/weftnet/weft/internal/rules/rulespec"
)

func TestChooseVariant(t *testing.T) {
	none := Observation{}
	empty := Observation{Available: true}
	some := func(n int) Observation { return Observation{Available: true, Rules: n} }
	hinted := Observation{Available: true, Rules: 1, Hint: true}
	cases := []struct {
		name        string
		legacy, nft Observation
		want        Variant
		ok          bool
	}{
		{"nothing installed", none, none, "", false},
		{"only legacy", some(0), none, Legacy, true},
		{"only nft", none, empty, NFT, true},
		{"empty host defaults to nft", empty, empty, NFT, true},
		{"legacy has more rules", some(30), some(2), Legacy, true},
		{"nft has more rules", some(2), some(30), NFT, true},
		{"tie goes to nft", some(5), some(5), NFT, true},
		{"kubelet hint beats counts", hinted, some(100), Legacy, true},
		{"hint in both falls back to counts", hinted, Observation{Available: true, Rules: 3, Hint: true}, NFT, true},
	}
	for _, tc := range cases {
		v, reason, ok := ChooseVariant(tc.legacy, tc.nft)
		if v != tc.want || ok != tc.ok || (ok && reason == "") {
			t.Errorf("%s: got %q %v (%q), want %q %v", tc.name, v, ok, reason, tc.want, tc.ok)
		}
	}
}

func TestSupportsRandomFully(t *testing.T) {
	for in, want := range map[string]bool{
		"iptables-save v1.8.9 (nf_tables)": true,
		"iptables-save v1.6.2":             true,
		"iptables-save v1.6.1":             false,
		"iptables-save v1.4.21":            false,
		"iptables v2.0.0 (legacy)":         true,
		"garbage":                          false,
	} {
		if got := supportsRandomFully(in); got != want {
			t.Errorf("supportsRandomFully(%q) = %v", in, got)
		}
	}
}

func newTestManager(t *testing.T, h *fakeHost, opts Options) (*Manager, *ruleexec.Fake, *bytes.Buffer) {
	var logs bytes.Buffer
	f := &ruleexec.Fake{Handle: h.handle}
	opts.Runner = f
	return New(slog.New(slog.NewTextHandler(&logs, nil)), opts), f, &logs
}

func restores(f *ruleexec.Fake) []ruleexec.Call {
	var out []ruleexec.Call
	for _, c := range f.Calls() {
		if strings.HasSuffix(c.Name, "-restore") {
			out = append(out, c)
		}
	}
	return out
}

// TestManagerSync follows a host whose Docker uses iptables-legacy and
// which has stale flannel rules in iptables-nft: weft must pick legacy,
// say so, install there, clean nft, and then leave a converged host alone.
func TestManagerSync(t *testing.T) {
	staleNFT := "*nat\n:POSTROUTING ACCEPT [0:0]\n:FLANNEL-POSTRTG - [0:0]\n" +
		"-A POSTROUTING -m comment --comment \"flanneld masq\" -j FLANNEL-POSTRTG\n" +
		"-A FLANNEL-POSTRTG -j RETURN\nCOMMIT\n"
	h := &fakeHost{t: t, version: "iptables-save v1.8.9", v: map[Variant]*fakeTables{
		Legacy: newFakeTables(hostSave),
		NFT:    newFakeTables(staleNFT),
	}}
	repaired := 0
	m, f, logs := newTestManager(t, h, Options{LegacyTables: h.legacyTables, Repaired: func(n int) { repaired += n }})
	ctx := context.Background()
	if err := m.Sync(ctx, spec4()); err != nil {
		t.Fatal(err)
	}
	if repaired != 0 {
		t.Errorf("install counted as %d repairs", repaired)
	}
	log := logs.String()
	for _, s := range []string{`variant=iptables-legacy`, `reason="iptables-legacy holds more rules (5 vs 2)"`,
		"both iptables variants hold rules", "installing iptables rules", "removing iptables rules"} {
		if !strings.Contains(log, s) {
			t.Errorf("log lacks %q:\n%s", s, log)
		}
	}
	if got := restores(f); len(got) != 2 || got[0].Name != "iptables-legacy-restore" || got[1].Name != "iptables-nft-restore" {
		t.Errorf("restores = %v, want install into legacy then cleanup of nft", got)
	}
	if s := h.v[NFT].save(); strings.Contains(s, "FLANNEL") || strings.Contains(s, "flanneld") {
		t.Errorf("stale nft rules left:\n%s", s)
	}
	if MakePlan(h.v[Legacy].d, Desired(spec4().Families()[0], spec4(), true)).Script != "" {
		t.Error("legacy tables not converged")
	}

	f.Reset()
	if err := m.Sync(ctx, spec4()); err != nil {
		t.Fatal(err)
	}
	var calls []string
	for _, c := range f.Calls() {
		calls = append(calls, c.String())
	}
	if want := []string{"iptables-legacy-save -t nat", "iptables-legacy-save -t filter"}; !slices.Equal(calls, want) {
		t.Errorf("converged Sync ran %q; want %q", calls, want)
	}

	// Someone deletes a rule: the next Sync repairs it and says so.
	if err := h.v[Legacy].restore("*nat\n-F WEFT-KEEPSRC\nCOMMIT\n"); err != nil {
		t.Fatal(err)
	}
	logs.Reset()
	if err := m.Sync(ctx, spec4()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "repairing iptables rules") || !strings.Contains(logs.String(), "nat/WEFT-KEEPSRC: missing rule") {
		t.Errorf("repair not logged:\n%s", logs.String())
	}
	if repaired != 3 {
		t.Errorf("3 rules flushed from WEFT-KEEPSRC counted as %d repairs", repaired)
	}
	// A sync that fails (a read cut short) forgets nothing: what the next
	// one fixes under the same desired rules is still a repair.
	h.saveErr = errors.New("signal: killed")
	if err := m.Sync(ctx, spec4()); err == nil {
		t.Fatal("Sync with a failing iptables-save succeeded")
	}
	h.saveErr = nil
	if err := h.v[Legacy].restore("*filter\n-F FLANNEL-FWD\nCOMMIT\n"); err != nil {
		t.Fatal(err)
	}
	if err := m.Sync(ctx, spec4()); err != nil {
		t.Fatal(err)
	}
	if repaired != 5 {
		t.Errorf("2 rules flushed from FLANNEL-FWD after a failed sync counted as %d repairs", repaired-3)
	}
	repaired = 3
	// A new desired set is a change, not a repair.
	moved := spec4()
	moved.Subnet = netip.MustParsePrefix("10.244.7.0/24")
	if err := m.Sync(ctx, moved); err != nil {
		t.Fatal(err)
	}
	if repaired != 3 {
		t.Errorf("a new subnet counted as %d repairs", repaired-3)
	}

	if err := m.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	for v, ft := range h.v {
		if s := ft.save(); strings.Contains(s, "FLANNEL") || strings.Contains(s, "WEFT") {
			t.Errorf("%s not clean after Cleanup:\n%s", v, s)
		}
	}
}

// TestManagerLegacyReadsOnlyExistingTables: on iptables-legacy, where
// iptables-save -t creates the table it names, weft reads only the
// tables that exist, so a forward-only spec never creates the nat table
// (whose hooks would turn on connection tracking).
func TestManagerLegacyReadsOnlyExistingTables(t *testing.T) {
	h := &fakeHost{t: t, version: "iptables-save v1.8.9", v: map[Variant]*fakeTables{Legacy: newFakeTables("")}}
	m, f, _ := newTestManager(t, h, Options{Variant: Legacy, LegacyTables: h.legacyTables})
	fwd := spec4()
	fwd.Masq, fwd.KeepSource = false, false
	for range 2 {
		if err := m.Sync(context.Background(), fwd); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range f.Calls() {
		if strings.Contains(c.Name, "legacy") && slices.Contains(c.Args, "nat") {
			t.Errorf("ran %s", c)
		}
	}
	if _, ok := h.v[Legacy].d["nat"]; ok {
		t.Error("the legacy nat table was created")
	}
	if s := h.v[Legacy].save(); !strings.Contains(s, "-A FORWARD") {
		t.Errorf("forward rules not installed:\n%s", s)
	}
}

// spec4 is spec without its IPv6 half, for the IPv4-only fake host.
func spec4() rulespec.Spec {
	s := spec
	s.IPv6Network, s.IPv6Subnet = netip.Prefix{}, netip.Prefix{}
	return s
}

// TestManagerForcedVariantAndFallback covers a forced variant and a host
// with only the unsuffixed programs.
func TestManagerForcedVariantAndFallback(t *testing.T) {
	h := &fakeHost{t: t, version: "iptables-save v1.8.9 (nf_tables)", v: map[Variant]*fakeTables{
		Legacy: newFakeTables(""), NFT: newFakeTables(""),
	}}
	m, _, logs := newTestManager(t, h, Options{Variant: Legacy})
	if v, err := m.Variant(context.Background()); v != Legacy || err != nil {
		t.Errorf("forced: %q %v", v, err)
	}
	if !strings.Contains(logs.String(), "reason=configured") {
		t.Errorf("log: %s", logs.String())
	}

	plain := &ruleexec.Fake{Handle: func(c ruleexec.Call) ([]byte, error) {
		if c.Name == "iptables-save" {
			return []byte("iptables-save v1.8.4 (nf_tables)\n"), nil
		}
		return nil, ruleexec.NotFound(c.Name)
	}}
	m = New(slog.New(slog.DiscardHandler), Options{Runner: plain})
	if v, err := m.Variant(context.Background()); v != NFT || err != nil {
		t.Errorf("plain: %q %v", v, err)
	}
	if m.tools.save[0] != "iptables-save" || m.tools.restore[1] != "ip6tables-restore" {
		t.Errorf("plain tools = %+v", *m.tools)
	}

	nothing := &ruleexec.Fake{Handle: func(c ruleexec.Call) ([]byte, error) { return nil, ruleexec.NotFound(c.Name) }}
	m = New(slog.New(slog.DiscardHandler), Options{Runner: nothing})
	if err := m.Sync(context.Background(), spec4()); err == nil || !strings.Contains(err.Error(), "no iptables found") {
		t.Errorf("no iptables: err = %v", err)
	}
}

// TestManagerRacingWriter: another program changes the rules between
// weft's write and its read-back. Sync must write again and converge, and
// give up with an error on a writer that never stops.
func TestManagerRacingWriter(t *testing.T) {
	h := &fakeHost{t: t, version: "iptables-save v1.8.9", v: map[Variant]*fakeTables{NFT: newFakeTables(hostSave)}}
	races := 1
	f := &ruleexec.Fake{Handle: func(c ruleexec.Call) ([]byte, error) {
		out, err := h.handle(c)
		if c.Name == "iptables-nft-restore" && races > 0 {
			races--
			if err := h.v[NFT].restore("*nat\n-F WEFT-KEEPSRC\nCOMMIT\n"); err != nil {
				t.Fatal(err)
			}
		}
		return out, err
	}}
	var logs bytes.Buffer
	m := New(slog.New(slog.NewTextHandler(&logs, nil)), Options{Runner: f, Variant: NFT})
	if err := m.Sync(context.Background(), spec4()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "changed while being written") {
		t.Errorf("second write not logged:\n%s", logs.String())
	}
	if MakePlan(h.v[NFT].d, Desired(spec4().Families()[0], spec4(), true)).Script != "" {
		t.Error("not converged")
	}

	races = 1000
	if err := h.v[NFT].restore("*nat\n-F WEFT-KEEPSRC\nCOMMIT\n"); err != nil {
		t.Fatal(err)
	}
	if err := m.Sync(context.Background(), spec4()); err == nil || !strings.Contains(err.Error(), "still differ after 3 writes") {
		t.Errorf("endless racing writer: err = %v", err)
	}
}
