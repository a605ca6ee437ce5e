package main

import (
	"archive/tar"
	"bytes"
	"io"
	"strings"
	"testing"
	"time"
)

func readEntries(t *testing.T, tr tree) []*tar.Header {
	t.Helper()
	var buf bytes.Buffer
	if err := tr.writeTar(&buf, time.Unix(1700000000, 0)); err != nil {
		t.Fatal(err)
	}
	r := tar.NewReader(&buf)
	var out []*tar.Header
	for {
		h, err := r.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, h)
	}
}

// TestTreeWritesSortedRootOwnedEntries: parents first, sorted, uid/gid 0
// without names, every time the epoch, parents created as directories.
func TestTreeWritesSortedRootOwnedEntries(t *testing.T) {
	tr := tree{}
	for _, p := range []string{"/usr/sbin/b", "/etc/a", "/usr/bin/c"} {
		if err := tr.add(p, &node{typ: tar.TypeReg, mode: 0o755, data: []byte(p), from: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	for _, h := range readEntries(t, tr) {
		names = append(names, h.Name)
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" || !h.ModTime.Equal(time.Unix(1700000000, 0)) {
			t.Errorf("%s: uid %d gid %d uname %q gname %q mtime %v", h.Name, h.Uid, h.Gid, h.Uname, h.Gname, h.ModTime)
		}
	}
	if got, want := strings.Join(names, " "), "etc/ etc/a usr/ usr/bin/ usr/bin/c usr/sbin/ usr/sbin/b"; got != want {
		t.Errorf("entries %q, want %q", got, want)
	}
}

// TestTreeHardLinksPointBackwards: a package's hard link that sorts
// before the file it links to is written the other way round, so that a
// tar reader has seen the file when it meets the link.
func TestTreeHardLinksPointBackwards(t *testing.T) {
	tr := tree{}
	if err := tr.add("usr/bin/z", &node{typ: tar.TypeReg, mode: 0o755, data: []byte("prog"), from: "p"}); err != nil {
		t.Fatal(err)
	}
	if err := tr.add("usr/bin/a", &node{typ: tar.TypeLink, mode: 0o755, linkname: "usr/bin/z", from: "p"}); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, h := range readEntries(t, tr) {
		if h.Typeflag == tar.TypeLink && !seen[h.Linkname] {
			t.Errorf("%s links to %s, not written before it", h.Name, h.Linkname)
		}
		seen[h.Name] = true
		if h.Name == "usr/bin/a" && (h.Typeflag != tar.TypeReg || h.Size != 4) {
			t.Errorf("usr/bin/a: type %q size %d, want the 4-byte file", h.Typeflag, h.Size)
		}
	}
}

// TestTreeConflictNamesBothPackages: two packages putting different
// files at one path is an error naming the path and both, not a silent
// last-one-wins.
func TestTreeConflictNamesBothPackages(t *testing.T) {
	tr := tree{}
	if err := tr.add("usr/bin/x", &node{typ: tar.TypeReg, mode: 0o755, data: []byte("1"), from: "package one"}); err != nil {
		t.Fatal(err)
	}
	if err := tr.add("usr/bin/x", &node{typ: tar.TypeReg, mode: 0o755, data: []byte("1"), from: "package two"}); err != nil {
		t.Errorf("identical file from two packages: %v", err)
	}
	err := tr.add("usr/bin/x", &node{typ: tar.TypeReg, mode: 0o755, data: []byte("2"), from: "package three"})
	if err == nil || !strings.Contains(err.Error(), "/usr/bin/x") || !strings.Contains(err.Error(), "package one") || !strings.Contains(err.Error(), "package three") {
		t.Errorf("err = %v, want one naming /usr/bin/x, package one and package three", err)
	}
	err = tr.add("usr/bin/x/y", &node{typ: tar.TypeReg, from: "package four"})
	if err == nil || !strings.Contains(err.Error(), "package four") {
		t.Errorf("err = %v, want one naming package four, which needs a directory at /usr/bin/x", err)
	}
}

// TestDroppedKeepsCopyright: documentation goes, each package's copyright
// stays.
func TestDroppedKeepsCopyright(t *testing.T) {
	for p, want := range map[string]bool{
		"usr/share/doc/dash/copyright":           false,
		"usr/share/doc/dash/changelog.gz":        true,
		"usr/share/doc/dash":                     false,
		"usr/share/man/man1/dash.1.gz":           true,
		"usr/share/locale/de/LC_MESSAGES/x.mo":   true,
		"usr/sbin/xtables-nft-multi":             false,
		"usr/share/lintian/overrides/dash":       true,
		"usr/share/man":                          true,
		"usr/share/mandoc":                       false,
		"usr/lib/x86_64-linux-gnu/gconv/BIG5.so": true,
	} {
		if got := dropped(p); got != want {
			t.Errorf("dropped(%q) = %v, want %v", p, got, want)
		}
	}
}
