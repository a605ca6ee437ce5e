package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/weftnet/weft/internal/kernel/neightable"
	"github.com/weftnet/weft/internal/sysctl"
)

// NeighRecord is where labs record the IPv4 neighbour thresholds they
// raised, and NeighRecordV6 the IPv6 ones. The thresholds belong to the
// whole kernel, so the records do too: one file per table for the
// machine, whatever --state-dir a lab was given, and labs side by side
// (--prefix) share them.
const (
	NeighRecord   = DefaultStateRoot + "/neigh-thresholds.json"
	NeighRecordV6 = DefaultStateRoot + "/neigh-thresholds-v6.json"
)

// neighGuard raises one family's kernel neighbour thresholds for labs and
// puts them back when the last lab is gone.
//
// Labs side by side must not restore under each other, so the record
// (NeighRecord, under an flock) keeps the values from before the first
// lab and a list of owners: each lab's state directory with the entries
// it needs. A lab coming up raises the thresholds to fit the sum of all
// owners' needs (never lowering, neightable.Fit), unless they stay below
// gc_thresh2 with a quarter to spare, where the kernel collects nothing in
// a hurry and small labs leave the kernel untouched; a lab going down leaves
// them while other owners remain and restores the originals when it was
// the last. An owner whose state directory is gone was removed without
// `weft lab down` and no longer counts; one whose directory is still there
// after a crash holds the thresholds until its `weft lab down`, which is
// what makes that command the restore after a crash.
//
// When someone changed a threshold while labs held it, the last lab
// leaves it alone rather than undo the operator's change.
type neighGuard struct {
	FS     sysctl.FS         // the kernel's parameters
	Record string            // the shared record; its lock is Record + ".lock"
	Family neightable.Family // the table guarded
}

// hostNeighGuards guard the host's tables, IPv4's first.
var hostNeighGuards = []neighGuard{
	{FS: sysctl.Host, Record: NeighRecord, Family: neightable.IPv4},
	{FS: sysctl.Host, Record: NeighRecordV6, Family: neightable.IPv6},
}

// neighRecord is the content of NeighRecord.
type neighRecord struct {
	// Original are the thresholds before the first of the owners raised
	// them, Set what the labs last wrote.
	Original neightable.Thresholds
	Set      neightable.Thresholds
	// Owners maps each lab's state directory to the entries it needs.
	Owners map[string]int64
}

// Raise records owner's need and raises the family's thresholds to fit
// the needs of every lab up. It returns what it did, for people.
func (g neighGuard) Raise(owner string, need int64) (string, error) {
	var msg string
	err := g.locked(func(rec *neighRecord) error {
		cur, err := neightable.ReadThresholds(g.FS, g.Family)
		if err != nil {
			return err
		}
		// Owners that vanished leave their raise in Original and Set
		// for the labs still up to restore.
		if len(rec.Owners) == 0 {
			rec.Original, rec.Set = cur, cur
		}
		pruneOwners(rec, owner)
		rec.Owners[owner] = need
		var total int64
		for _, n := range rec.Owners {
			total += n
		}
		want := cur
		// Below gc_thresh2 the kernel collects nothing in a hurry; a lab
		// that stays there with a quarter to spare needs no change.
		if total+total/4 > cur.GC2 {
			want = neightable.Fit(cur, total)
		}
		if want == cur {
			msg = fmt.Sprintf("%s %d holds the %d neighbour entries the labs up need; left as it is",
				g.Family.Sysctl(3), cur.GC3, total)
			return nil
		}
		if err := writeThresholds(g.FS, g.Family, cur, want); err != nil {
			return err
		}
		rec.Set = want
		msg = "raised " + neighChange(g.Family, cur, want)
		return nil
	})
	return msg, err
}

// Release drops owner from the record and, when no lab is left, restores
// the thresholds from before the first one. Without a record, or without
// owner in it, there is nothing to do and the message is empty.
func (g neighGuard) Release(owner string) (string, error) {
	var msg string
	err := g.locked(func(rec *neighRecord) error {
		if _, ok := rec.Owners[owner]; !ok {
			return nil // this lab raised nothing
		}
		delete(rec.Owners, owner)
		pruneOwners(rec, "")
		if len(rec.Owners) > 0 {
			if rec.Set != rec.Original {
				msg = fmt.Sprintf("neighbour thresholds left raised for %d other lab(s) still up: %s",
					len(rec.Owners), joinKeys(rec.Owners))
			}
			return nil
		}
		if rec.Set == rec.Original {
			return nil
		}
		cur, err := neightable.ReadThresholds(g.FS, g.Family)
		if err != nil {
			return err
		}
		if cur != rec.Set {
			msg = fmt.Sprintf("neighbour thresholds not restored: changed since the lab raised them (now %d/%d/%d, the lab set %d/%d/%d)",
				cur.GC1, cur.GC2, cur.GC3, rec.Set.GC1, rec.Set.GC2, rec.Set.GC3)
			return nil
		}
		if err := writeThresholds(g.FS, g.Family, cur, rec.Original); err != nil {
			return err
		}
		msg = "restored " + neighChange(g.Family, cur, rec.Original)
		return nil
	})
	return msg, err
}

// locked runs fn on the record under an exclusive lock and writes the
// record back, or removes it when no owner is left.
func (g neighGuard) locked(fn func(*neighRecord) error) error {
	if err := os.MkdirAll(filepath.Dir(g.Record), 0o755); err != nil {
		return fmt.Errorf("neighbour thresholds record: %w", err)
	}
	lf, err := os.OpenFile(g.Record+".lock", os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("neighbour thresholds record: %w", err)
	}
	defer lf.Close()
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", lf.Name(), err)
	}
	defer syscall.Flock(int(lf.Fd()), syscall.LOCK_UN)

	rec := neighRecord{Owners: map[string]int64{}}
	b, err := os.ReadFile(g.Record)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("read %s: %w", g.Record, err)
	default:
		if err := json.Unmarshal(b, &rec); err != nil {
			return fmt.Errorf("parse %s: %w", g.Record, err)
		}
		if rec.Owners == nil {
			rec.Owners = map[string]int64{}
		}
	}
	if err := fn(&rec); err != nil {
		return err
	}
	if len(rec.Owners) == 0 {
		if err := os.Remove(g.Record); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", g.Record, err)
		}
		return nil
	}
	b, err = json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", g.Record, err)
	}
	return writeFileAtomic(g.Record, append(b, '\n'))
}

// pruneOwners forgets the labs whose state directory is gone (removed
// without `weft lab down`), except keep.
func pruneOwners(rec *neighRecord, keep string) {
	for dir := range rec.Owners {
		if dir == keep {
			continue
		}
		if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
			delete(rec.Owners, dir)
		}
	}
}

// writeThresholds moves the family's thresholds from cur to want in an
// order that keeps gc_thresh1 <= gc_thresh2 <= gc_thresh3 at every step:
// the hard limit first when raising, last when lowering.
func writeThresholds(f sysctl.FS, fam neightable.Family, cur, want neightable.Thresholds) error {
	vals := []struct {
		n        int
		cur, new int64
	}{{3, cur.GC3, want.GC3}, {2, cur.GC2, want.GC2}, {1, cur.GC1, want.GC1}}
	if want.GC3 < cur.GC3 {
		slices.Reverse(vals)
	}
	for _, v := range vals {
		if v.cur == v.new {
			continue
		}
		if err := f.SetInt(fam.Sysctl(v.n), v.new); err != nil {
			return fmt.Errorf("set the %s neighbour table's thresholds: %w", fam, err)
		}
	}
	return nil
}

func joinKeys(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	s := ""
	for i, k := range keys {
		if i > 0 {
			s += ", "
		}
		s += k
	}
	return s
}
