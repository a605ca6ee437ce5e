package kubecluster

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeRepo makes a directory that looks like the weft repository to
// FindRepo, with the given tools go.sum.
func fakeRepo(t *testing.T, sum string) string {
	t.Helper()
	repo := t.TempDir()
	if err := os.WriteFile(filepath.Join(repo, "go.mod"), []byte("module "+modulePath+"\n\ngo 1.26\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(repo, "test", "kube", "tools"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repo, toolsSum), []byte(sum), 0o644); err != nil {
		t.Fatal(err)
	}
	return repo
}

func fillBin(t *testing.T, dir string, progs ...string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range progs {
		if err := os.WriteFile(filepath.Join(dir, p), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCacheDirMatchesBuildTools(t *testing.T) {
	t.Setenv("WEFT_KUBE_CACHE", "/cache")
	// sha256("x\n") = 73cb3858a687a849..., of which build-tools.sh
	// (sha256sum | cut -c1-12) keeps 12 digits.
	repo := fakeRepo(t, "x\n")
	got, err := CacheDir(repo)
	if err != nil {
		t.Fatal(err)
	}
	if want := "/cache/kube-73cb3858a687"; got != want {
		t.Errorf("CacheDir = %s, want %s", got, want)
	}
}

func TestLocate(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("WEFT_KUBE_CACHE", cache)
	t.Setenv("WEFT_KUBE_BIN_DIR", "")
	repo := fakeRepo(t, "sum\n")
	dir, err := CacheDir(repo)
	if err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(repo, "internal", "lab")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}

	// Not built: the error names what is missing and the command.
	fillBin(t, dir, "etcd")
	_, err = Locate("", sub)
	if !errors.Is(err, ErrNotBuilt) || !strings.Contains(err.Error(), "`make kube-tools`") ||
		!strings.Contains(err.Error(), "kube-apiserver, kube-controller-manager") || !strings.Contains(err.Error(), dir) {
		t.Errorf("Locate with a half-built cache = %v", err)
	}

	// Built: found from a directory inside the repository.
	fillBin(t, dir, Programs...)
	if got, err := Locate("", sub); err != nil || got != dir {
		t.Errorf("Locate from inside the repo = %q, %v; want %s", got, err, dir)
	}

	// An explicit directory wins and is checked.
	other := t.TempDir()
	if _, err := Locate(other, sub); !errors.Is(err, ErrNotBuilt) || !strings.Contains(err.Error(), "--kube-bin-dir") {
		t.Errorf("Locate with an empty --kube-bin-dir = %v", err)
	}
	fillBin(t, other, Programs...)
	if got, err := Locate(other, sub); err != nil || got != other {
		t.Errorf("Locate(%s) = %q, %v", other, got, err)
	}
	t.Setenv("WEFT_KUBE_BIN_DIR", other)
	if got, err := Locate("", sub); err != nil || got != other {
		t.Errorf("Locate with WEFT_KUBE_BIN_DIR = %q, %v", got, err)
	}
	t.Setenv("WEFT_KUBE_BIN_DIR", "")

	// Outside any repository: the newest complete build in the cache.
	if got, err := Locate("", t.TempDir()); err != nil || got != dir {
		t.Errorf("Locate outside the repo = %q, %v; want the cached %s", got, err, dir)
	}
	t.Setenv("WEFT_KUBE_CACHE", t.TempDir())
	if _, err := Locate("", t.TempDir()); !errors.Is(err, ErrNotBuilt) || !strings.Contains(err.Error(), "`make kube-tools`") {
		t.Errorf("Locate with nothing built anywhere = %v", err)
	}
}

func TestFindRepoIgnoresOtherModules(t *testing.T) {
	d := t.TempDir()
	if err := os.WriteFile(filepath.Join(d, "go.mod"), []byte("module example.com/other\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, ok := FindRepo(d); ok {
		t.Errorf("FindRepo found %s in another module", got)
	}
}
