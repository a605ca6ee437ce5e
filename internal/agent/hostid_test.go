package agent

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSettleHostID(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	gen := func() string { return "new" }
	tests := []struct {
		name      string
		raw       string
		readErr   error
		machineID string
		wantID    string
		wantWrite bool
		noteHas   string
	}{
		{"no file: generated", "", fs.ErrNotExist, "m1", "new", true, "generated"},
		{"kept under the same machine ID", `{"HostID":"old","MachineID":"m1"}`, nil, "m1", "old", false, ""},
		{"kept when the machine ID is unknown", `{"HostID":"old","MachineID":"m1"}`, nil, "", "old", false, ""},
		{"machine ID recorded when the file had none", `{"HostID":"old"}`, nil, "m1", "old", true, ""},
		{"copied from another machine: regenerated", `{"HostID":"old","MachineID":"m0"}`, nil, "m1", "new", true, "made on another machine (machine ID m0, this one is m1)"},
		{"damaged: regenerated", `{"HostID":`, nil, "m1", "new", true, "damaged"},
		{"invalid ID: regenerated", `{"HostID":"a b"}`, nil, "m1", "new", true, "no valid HostID"},
		{"unreadable: regenerated", "", errors.New("permission denied"), "m1", "new", true, "permission denied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, write, note := settleHostID([]byte(tt.raw), tt.readErr, tt.machineID, now, gen)
			if rec.HostID != tt.wantID || write != tt.wantWrite || !strings.Contains(note, tt.noteHas) || (tt.noteHas == "" && note != "") {
				t.Errorf("= %+v, %v, %q; want ID %s, write %v, note containing %q", rec, write, note, tt.wantID, tt.wantWrite, tt.noteHas)
			}
			if write && tt.machineID != "" && rec.MachineID != tt.machineID {
				t.Errorf("record %+v does not carry machine ID %s", rec, tt.machineID)
			}
		})
	}
}

// The ID survives a restart; a state directory copied to a machine with
// another machine ID gets a new one; each lab host (one machine ID, one
// state directory each) has its own.
func TestLoadHostIDPersists(t *testing.T) {
	dir := t.TempDir()
	mid := filepath.Join(dir, "machine-id")
	if err := os.WriteFile(mid, []byte("m1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	now := time.Now()
	id1, info, warn, err := loadHostID(a, mid, now)
	if err != nil || len(id1) != 32 || !strings.Contains(info, "generated") || warn != "" {
		t.Fatalf("first load: %q %q %q %v", id1, info, warn, err)
	}
	id2, info, warn, err := loadHostID(a, mid, now)
	if err != nil || id2 != id1 || info != "" || warn != "" {
		t.Fatalf("second load: %q (want %q) %q %q %v", id2, id1, info, warn, err)
	}
	other, _, _, err := loadHostID(b, mid, now)
	if err != nil || other == id1 {
		t.Fatalf("another state dir on the same machine: %q, %v (first %q)", other, err, id1)
	}
	if err := os.WriteFile(mid, []byte("m2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	id3, _, warn, err := loadHostID(a, mid, now)
	if err != nil || id3 == id1 || !strings.Contains(warn, "another machine") {
		t.Fatalf("after the machine ID changed: %q %q %v", id3, warn, err)
	}
	id4, _, warn, err := loadHostID(a, mid, now)
	if err != nil || id4 != id3 || warn != "" {
		t.Fatalf("the new ID is kept: %q (want %q) %q %v", id4, id3, warn, err)
	}
}

// The host ID file is read back from disk, where anything may have been
// written: whatever it holds, the result is a valid ID, and an ID that is
// kept is the file's.
func FuzzSettleHostID(f *testing.F) {
	f.Add([]byte(`{"HostID":"3f2a0c9e1b7d4a6f8e5c2b1a0d9f8e7c","MachineID":"m1","Created":"2026-01-02T03:04:05Z"}`), "m1")
	f.Add([]byte(`{"HostID":"old","MachineID":"m0"}`), "m1")
	f.Add([]byte(`{"HostID":"a b"}`), "")
	f.Add([]byte(`{"HostID":`), "m1")
	f.Add([]byte(`null`), "m1")
	f.Fuzz(func(t *testing.T, raw []byte, machineID string) {
		rec, _, _ := settleHostID(raw, nil, machineID, time.Unix(0, 0), func() string { return "generated" })
		if rec.HostID != "generated" {
			var file hostIDRecord
			if err := json.Unmarshal(raw, &file); err != nil || file.HostID != rec.HostID {
				t.Fatalf("kept ID %q is not the file's %q (%v)", rec.HostID, raw, err)
			}
		}
		if rec.HostID == "" || strings.ContainsAny(rec.HostID, " \"\n") {
			t.Fatalf("invalid ID %q from %q", rec.HostID, raw)
		}
	})
}
