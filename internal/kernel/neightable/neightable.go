// Package neightable knows the kernel's neighbour tables (ARP for IPv4,
// NDISC for IPv6): how full they are, how often they overflowed, and the
// garbage-collection thresholds that bound them.
//
// There is one table per family for the whole kernel, shared by every
// network namespace, and its thresholds can be changed only from the
// initial namespace. When the table holds gc_thresh3 entries the kernel
// refuses new ones ("neighbor table overflow!") and the packets waiting on
// them are dropped, which a network agent must say out loud because
// nothing else will.
package neightable

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/weftnet/weft/internal/sysctl"
)

// Family selects a neighbour table.
type Family int

const (
	IPv4 Family = iota // arp_cache, net.ipv4.neigh.default.*
	IPv6               // ndisc_cache, net.ipv6.neigh.default.*
)

func (f Family) String() string {
	if f == IPv6 {
		return "IPv6"
	}
	return "IPv4"
}

// StatName is the table's file name under /proc/net/stat.
func (f Family) StatName() string {
	if f == IPv6 {
		return "ndisc_cache"
	}
	return "arp_cache"
}

// Sysctl is the dotted name of one of the table's gc thresholds (1, 2 or 3).
func (f Family) Sysctl(n int) string {
	v := "ipv4"
	if f == IPv6 {
		v = "ipv6"
	}
	return fmt.Sprintf("net.%s.neigh.default.gc_thresh%d", v, n)
}

// Thresholds are the table's garbage-collection thresholds: below GC1 the
// collector leaves entries alone, above GC2 it collects aggressively
// (after 5 s), and at GC3 the table is full.
type Thresholds struct {
	GC1, GC2, GC3 int64
}

// ReadThresholds reads the family's three thresholds from fs.
func ReadThresholds(fs sysctl.FS, f Family) (Thresholds, error) {
	var t Thresholds
	for i, p := range []*int64{&t.GC1, &t.GC2, &t.GC3} {
		v, err := fs.GetInt(f.Sysctl(i + 1))
		if err != nil {
			return Thresholds{}, fmt.Errorf("read the %s neighbour table's thresholds: %w", f, err)
		}
		*p = v
	}
	return t, nil
}

// Stats are the table's size and counters, summed over CPUs.
type Stats struct {
	Entries      uint64 // entries in the table now (the same on every CPU's line)
	ForcedGCRuns uint64 // collections forced because the table passed gc_thresh2/3
	TableFulls   uint64 // times an entry was refused because the table was full
}

// DefaultStatDir is where the kernel publishes the tables' statistics.
const DefaultStatDir = "/proc/net/stat"

// ReadStats reads the family's statistics from dir ("" means
// DefaultStatDir).
func ReadStats(dir string, f Family) (Stats, error) {
	if dir == "" {
		dir = DefaultStatDir
	}
	path := filepath.Join(dir, f.StatName())
	file, err := os.Open(path)
	if err != nil {
		return Stats{}, fmt.Errorf("read the %s neighbour table's statistics: %w", f, err)
	}
	defer file.Close()
	s, err := ParseStats(file)
	if err != nil {
		return Stats{}, fmt.Errorf("read the %s neighbour table's statistics from %s: %w", f, path, err)
	}
	return s, nil
}

// ParseStats parses the format of /proc/net/stat/arp_cache: a header line
// naming the columns, then one line per CPU of hexadecimal counters. The
// columns are found by name, since their number has grown over the
// kernel's history; entries and table_fulls are required.
func ParseStats(r io.Reader) (Stats, error) {
	sc := bufio.NewScanner(r)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return Stats{}, err
		}
		return Stats{}, errors.New("empty: no header line")
	}
	header := strings.Fields(sc.Text())
	col := map[string]int{}
	for i, name := range header {
		col[name] = i
	}
	iEntries, ok1 := col["entries"]
	iFulls, ok2 := col["table_fulls"]
	iForced, ok3 := col["forced_gc_runs"]
	if !ok1 || !ok2 {
		return Stats{}, fmt.Errorf("header %q lacks the entries or table_fulls column", sc.Text())
	}
	var s Stats
	line := 1
	for sc.Scan() {
		line++
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		// Against the header's fields, not the distinct names: a name
		// given twice would leave a column index past the line's end
		// (found by make fuzz).
		if len(fields) != len(header) {
			return Stats{}, fmt.Errorf("line %d has %d columns, the header %d", line, len(fields), len(header))
		}
		num := func(i int) (uint64, error) {
			v, err := strconv.ParseUint(fields[i], 16, 64)
			if err != nil {
				return 0, fmt.Errorf("line %d column %d: %w", line, i+1, err)
			}
			return v, nil
		}
		e, err := num(iEntries)
		if err != nil {
			return Stats{}, err
		}
		s.Entries = e
		tf, err := num(iFulls)
		if err != nil {
			return Stats{}, err
		}
		s.TableFulls += tf
		if ok3 {
			fg, err := num(iForced)
			if err != nil {
				return Stats{}, err
			}
			s.ForcedGCRuns += fg
		}
	}
	if err := sc.Err(); err != nil {
		return Stats{}, err
	}
	if line == 1 {
		return Stats{}, errors.New("no per-CPU lines after the header")
	}
	return s, nil
}

// Fit returns thresholds that hold need entries with room to spare and
// never lowers one of cur: GC2 at least need plus a quarter, rounded up to
// a multiple of 1024, GC3 at least twice GC2, and GC1 at least need (so the
// entries a host needs are not collected while the table is calm). The
// result equals cur when cur already fits.
func Fit(cur Thresholds, need int64) Thresholds {
	if need < 0 {
		need = 0
	}
	gc2 := roundUp(need+need/4, 1024)
	out := Thresholds{
		GC1: max(cur.GC1, need),
		GC2: max(cur.GC2, gc2),
	}
	out.GC3 = max(cur.GC3, 2*out.GC2)
	if out.GC1 > out.GC2 {
		out.GC1 = max(cur.GC1, out.GC2)
	}
	return out
}

func roundUp(v, m int64) int64 {
	if v <= 0 {
		return 0
	}
	return (v + m - 1) / m * m
}
