// Package sysctltest builds fake /proc trees for tests, so that no test
// changes a kernel setting the whole machine shares.
package sysctltest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/sysctl"
)

// WriteFile writes value, ending in one newline as the kernel's files do,
// to rel below root, creating the directories on the way. The file is
// written aside and renamed, so that a reader polling the tree never sees
// half of it.
func WriteFile(t testing.TB, root, rel, value string) {
	t.Helper()
	path := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strings.TrimRight(value, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// Tree writes files (path below the root → content) into a new temporary
// directory and returns it.
func Tree(t testing.TB, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for rel, v := range files {
		WriteFile(t, root, rel, v)
	}
	return root
}

// Set writes the named parameter's value into the fake tree fs is rooted
// at, creating it if need be (sysctl.FS.Set never creates one).
func Set(t testing.TB, fs sysctl.FS, name, value string) {
	t.Helper()
	root := fs.Root
	if root == "" {
		t.Fatal("sysctltest.Set on the host's /proc/sys")
	}
	rel, err := filepath.Rel(root, fs.Path(name))
	if err != nil {
		t.Fatal(err)
	}
	WriteFile(t, root, rel, value)
}
