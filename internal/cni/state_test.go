package cni

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestSaveLoadRemoveConf(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "var", "lib", "cni", "flannel")
	conf := []byte(`{"type":"bridge"}`)
	if err := saveConf(dir, "abc123", conf); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("data dir mode: %v %v, want 0700", st.Mode(), err)
	}
	st, err := os.Stat(filepath.Join(dir, "abc123"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("saved file mode: %v %v, want 0600", st, err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("data dir holds %d entries, want only the saved config (no temp files)", len(ents))
	}
	got, err := loadConf(dir, "abc123")
	if err != nil || string(got) != string(conf) {
		t.Errorf("loadConf = %s, %v", got, err)
	}
	// Overwriting (a retried ADD) replaces the content.
	if err := saveConf(dir, "abc123", []byte(`{"type":"ipvlan"}`)); err != nil {
		t.Fatal(err)
	}
	if got, _ := loadConf(dir, "abc123"); string(got) != `{"type":"ipvlan"}` {
		t.Errorf("after overwrite: %s", got)
	}
	for range 2 {
		if err := removeConf(dir, "abc123"); err != nil {
			t.Errorf("removeConf: %v", err)
		}
	}
	if _, err := loadConf(dir, "abc123"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("loadConf after remove = %v, want ErrNotExist", err)
	}
}

func TestContainerIDChecked(t *testing.T) {
	dir := t.TempDir()
	for _, id := range []string{"", "../x", "a/b", ".bridge-cni0.lock", "."} {
		if err := saveConf(dir, id, []byte("{}")); err == nil {
			t.Errorf("saveConf accepted container ID %q", id)
		}
		if _, err := loadConf(dir, id); err == nil || errors.Is(err, fs.ErrNotExist) {
			t.Errorf("loadConf(%q) = %v, want an invalid-ID error", id, err)
		}
	}
}
