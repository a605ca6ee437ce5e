package neightable

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/sysctl"
	"github.com/weftnet/weft/internal/sysctl/sysctltest"
)

// The testdata files were captured from /proc/net/stat on a 6.18 kernel
// with two CPUs.
func TestReadStatsCaptured(t *testing.T) {
	s, err := ReadStats("testdata", IPv4)
	if err != nil {
		t.Fatal(err)
	}
	if s.Entries != 0xc {
		t.Errorf("Entries = %d, want 12", s.Entries)
	}
	if s.TableFulls != 0 {
		t.Errorf("TableFulls = %d, want 0", s.TableFulls)
	}
	if _, err := ReadStats("testdata", IPv6); err != nil {
		t.Fatal(err)
	}
}

func TestParseStatsSumsCPUs(t *testing.T) {
	in := "entries  forced_gc_runs table_fulls\n" +
		"00000400 00000002 00000010\n" +
		"00000400 00000001 00000005\n"
	s, err := ParseStats(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := Stats{Entries: 1024, ForcedGCRuns: 3, TableFulls: 21}
	if s != want {
		t.Fatalf("ParseStats = %+v, want %+v", s, want)
	}
}

func TestParseStatsBadInput(t *testing.T) {
	for name, in := range map[string]string{
		"empty":       "",
		"no columns":  "allocs destroys\n00000001 00000002\n",
		"header only": "entries table_fulls\n",
		"short line":  "entries table_fulls\n00000001\n",
		"not hex":     "entries table_fulls\n0000000g 00000000\n",
	} {
		if _, err := ParseStats(strings.NewReader(in)); err == nil {
			t.Errorf("%s: ParseStats accepted %q", name, in)
		}
	}
}

func FuzzParseStats(f *testing.F) {
	b, err := os.ReadFile(filepath.Join("testdata", "arp_cache"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(b))
	f.Add("entries table_fulls\n00000001 00000002\n")
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseStats(strings.NewReader(in))
		if err != nil && s != (Stats{}) {
			t.Fatalf("error %v with non-zero stats %+v", err, s)
		}
	})
}

func TestReadThresholds(t *testing.T) {
	root := t.TempDir()
	fs := sysctl.FS{Root: root}
	for i, v := range []string{"128", "512", "1024"} {
		sysctltest.Set(t, fs, IPv4.Sysctl(i+1), v)
	}
	got, err := ReadThresholds(fs, IPv4)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Thresholds{128, 512, 1024}); got != want {
		t.Fatalf("ReadThresholds = %+v, want %+v", got, want)
	}
	if _, err := ReadThresholds(fs, IPv6); err == nil || !strings.Contains(err.Error(), "gc_thresh1") {
		t.Fatalf("missing IPv6 thresholds: %v, want an error naming the sysctl", err)
	}
}

func TestFit(t *testing.T) {
	stock := Thresholds{128, 512, 1024}
	for _, tc := range []struct {
		need int64
		want Thresholds
	}{
		{0, stock},
		{100, Thresholds{128, 1024, 2048}},
		{9900, Thresholds{9900, 13312, 26624}},
		{40000, Thresholds{40000, 50176, 100352}},
	} {
		got := Fit(stock, tc.need)
		if got != tc.want {
			t.Errorf("Fit(stock, %d) = %+v, want %+v", tc.need, got, tc.want)
		}
		if got.GC2 < tc.need || got.GC3 < got.GC2 || got.GC1 > got.GC2 {
			t.Errorf("Fit(stock, %d) = %+v breaks GC1 <= GC2, need <= GC2 <= GC3", tc.need, got)
		}
	}
	high := Thresholds{100000, 200000, 400000}
	if got := Fit(high, 500); got != high {
		t.Errorf("Fit lowered thresholds: %+v", got)
	}
}
