package lab

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/kernel/neightable"
	"github.com/weftnet/weft/internal/sysctl"
	"github.com/weftnet/weft/internal/sysctl/sysctltest"
)

// fakeNeighGuard is a guard over a fake /proc/sys holding the stock
// thresholds and a record in a temporary directory.
func fakeNeighGuard(t *testing.T) neighGuard {
	t.Helper()
	root := t.TempDir()
	fs := sysctl.FS{Root: filepath.Join(root, "sys")}
	for i, v := range []string{"128", "512", "1024"} {
		sysctltest.Set(t, fs, neightable.IPv4.Sysctl(i+1), v)
	}
	return neighGuard{FS: fs, Record: filepath.Join(root, "run", "neigh-thresholds.json")}
}

func thresholds(t *testing.T, g neighGuard) neightable.Thresholds {
	t.Helper()
	th, err := neightable.ReadThresholds(g.FS, neightable.IPv4)
	if err != nil {
		t.Fatal(err)
	}
	return th
}

// labDir stands for a lab's state directory, which exists while the lab
// does.
func labDir(t *testing.T) string {
	t.Helper()
	return t.TempDir()
}

var stock = neightable.Thresholds{GC1: 128, GC2: 512, GC3: 1024}

func TestNeighGuardRaisesAndRestores(t *testing.T) {
	g := fakeNeighGuard(t)
	a := labDir(t)
	msg, err := g.Raise(a, 2000)
	if err != nil {
		t.Fatal(err)
	}
	want := neightable.Fit(stock, 2000)
	if got := thresholds(t, g); got != want {
		t.Fatalf("after Raise: %+v, want %+v", got, want)
	}
	if !strings.Contains(msg, "raised net.ipv4.neigh.default.gc_thresh3 1024 → 6144") {
		t.Errorf("Raise said %q", msg)
	}
	msg, err = g.Release(a)
	if err != nil {
		t.Fatal(err)
	}
	if got := thresholds(t, g); got != stock {
		t.Fatalf("after Release: %+v, want the stock %+v", got, stock)
	}
	if !strings.Contains(msg, "restored net.ipv4.neigh.default.gc_thresh3 6144 → 1024") {
		t.Errorf("Release said %q", msg)
	}
	if _, err := os.Stat(g.Record); !os.IsNotExist(err) {
		t.Errorf("record left behind: %v", err)
	}
}

// A small lab fits the stock table: nothing is written, nothing restored.
func TestNeighGuardLeavesAFittingTableAlone(t *testing.T) {
	g := fakeNeighGuard(t)
	a := labDir(t)
	msg, err := g.Raise(a, 100)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(msg, "left as it is") || thresholds(t, g) != stock {
		t.Errorf("Raise(100) said %q and left %+v", msg, thresholds(t, g))
	}
	if msg, err := g.Release(a); err != nil || msg != "" {
		t.Errorf("Release = %q, %v; want nothing to say", msg, err)
	}
}

// Two labs side by side: the second raises to fit both, the first one
// down leaves the values for the second, the last one down restores the
// values from before the first.
func TestNeighGuardLabsSideBySide(t *testing.T) {
	g := fakeNeighGuard(t)
	a, b := labDir(t), labDir(t)
	if _, err := g.Raise(a, 2000); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Raise(b, 3000); err != nil {
		t.Fatal(err)
	}
	both := neightable.Fit(stock, 5000)
	if got := thresholds(t, g); got != both {
		t.Fatalf("with both labs: %+v, want %+v", got, both)
	}
	msg, err := g.Release(a)
	if err != nil {
		t.Fatal(err)
	}
	if got := thresholds(t, g); got != both {
		t.Errorf("first lab down restored under the second: %+v", got)
	}
	if !strings.Contains(msg, "left raised for 1 other lab") {
		t.Errorf("Release(a) said %q", msg)
	}
	if _, err := g.Release(b); err != nil {
		t.Fatal(err)
	}
	if got := thresholds(t, g); got != stock {
		t.Errorf("last lab down: %+v, want the stock %+v", got, stock)
	}
}

// The crash path: the process that raised the thresholds died without
// tearing down, so the record and the lab's state directory remain; a new
// guard (the next `weft lab down`, another process) restores them.
func TestNeighGuardRestoresAfterCrash(t *testing.T) {
	g := fakeNeighGuard(t)
	a := labDir(t)
	if _, err := g.Raise(a, 2000); err != nil {
		t.Fatal(err)
	}
	// Another lab coming and going meanwhile must not restore: the
	// crashed lab is still there (its state directory is).
	b := labDir(t)
	if _, err := g.Raise(b, 10); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Release(b); err != nil {
		t.Fatal(err)
	}
	if got := thresholds(t, g); got == stock {
		t.Fatal("a lab going down restored under the crashed one")
	}

	later := neighGuard{FS: g.FS, Record: g.Record}
	msg, err := later.Release(a)
	if err != nil {
		t.Fatal(err)
	}
	if got := thresholds(t, g); got != stock {
		t.Errorf("lab down after the crash: %+v, want the stock %+v (said %q)", got, stock, msg)
	}
}

// A lab whose state directory was removed without `weft lab down` no
// longer holds the thresholds: the next lab's teardown restores them.
func TestNeighGuardForgetsVanishedLabs(t *testing.T) {
	g := fakeNeighGuard(t)
	gone := filepath.Join(t.TempDir(), "gone")
	if err := os.Mkdir(gone, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Raise(gone, 2000); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(gone); err != nil {
		t.Fatal(err)
	}
	a := labDir(t)
	if _, err := g.Raise(a, 100); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Release(a); err != nil {
		t.Fatal(err)
	}
	if got := thresholds(t, g); got != stock {
		t.Errorf("after the last live lab: %+v, want the stock %+v", got, stock)
	}
}

// An operator who changed a threshold while labs held it keeps the change.
func TestNeighGuardKeepsTheOperatorsChange(t *testing.T) {
	g := fakeNeighGuard(t)
	a := labDir(t)
	if _, err := g.Raise(a, 2000); err != nil {
		t.Fatal(err)
	}
	if err := g.FS.SetInt(neightable.IPv4.Sysctl(3), 99999); err != nil {
		t.Fatal(err)
	}
	msg, err := g.Release(a)
	if err != nil {
		t.Fatal(err)
	}
	if got := thresholds(t, g); got.GC3 != 99999 {
		t.Errorf("gc_thresh3 = %d, want the operator's 99999", got.GC3)
	}
	if !strings.Contains(msg, "not restored") {
		t.Errorf("Release said %q", msg)
	}
}

func TestNeighGuardMissingSysctls(t *testing.T) {
	g := neighGuard{FS: sysctl.FS{Root: t.TempDir()}, Record: filepath.Join(t.TempDir(), "r.json")}
	if _, err := g.Raise(labDir(t), 2000); err == nil || !strings.Contains(err.Error(), "gc_thresh1") {
		t.Errorf("Raise without the sysctls = %v, want an error naming the sysctl", err)
	}
	if _, err := os.Stat(g.Record); !os.IsNotExist(err) {
		t.Errorf("a failed raise left a record: %v", err)
	}
}

// The IPv6 table has its own guard and record: raising it for a dual-stack
// lab writes net.ipv6's thresholds and leaves IPv4's alone, and lab down
// restores them.
func TestNeighGuardIPv6TableApart(t *testing.T) {
	root := t.TempDir()
	fs := sysctl.FS{Root: filepath.Join(root, "sys")}
	for i, v := range []string{"128", "512", "1024"} {
		sysctltest.Set(t, fs, neightable.IPv4.Sysctl(i+1), v)
		sysctltest.Set(t, fs, neightable.IPv6.Sysctl(i+1), v)
	}
	g := neighGuard{FS: fs, Record: filepath.Join(root, "run", "neigh-thresholds-v6.json"), Family: neightable.IPv6}
	a := labDir(t)
	msg, err := g.Raise(a, 2000)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(msg, "raised net.ipv6.neigh.default.gc_thresh3 1024 → 6144") {
		t.Errorf("Raise said %q", msg)
	}
	if v4, _ := neightable.ReadThresholds(fs, neightable.IPv4); v4 != stock {
		t.Errorf("the IPv4 table changed: %+v", v4)
	}
	if v6, _ := neightable.ReadThresholds(fs, neightable.IPv6); v6 != neightable.Fit(stock, 2000) {
		t.Errorf("IPv6 thresholds %+v, want %+v", v6, neightable.Fit(stock, 2000))
	}
	if msg, err := g.Release(a); err != nil || !strings.Contains(msg, "restored net.ipv6.neigh.default.gc_thresh3 6144 → 1024") {
		t.Errorf("Release: %q, %v", msg, err)
	}
	if v6, _ := neightable.ReadThresholds(fs, neightable.IPv6); v6 != stock {
		t.Errorf("IPv6 thresholds after release %+v", v6)
	}
}

func TestLabNeighGuardsFollowTheFamilies(t *testing.T) {
	for fam, want := range map[string][]neightable.Family{
		FamilyIPv4: {neightable.IPv4},
		FamilyDual: {neightable.IPv4, neightable.IPv6},
		FamilyIPv6: {neightable.IPv6},
	} {
		var got []neightable.Family
		for _, g := range labNeighGuards(Spec{IPFamily: fam}) {
			got = append(got, g.Family)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: guards for %v, want %v", fam, got, want)
		}
	}
}
