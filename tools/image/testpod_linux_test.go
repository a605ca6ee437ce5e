package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The real-node test's pod image: reproducible, named for ctr import, one
// file, and /testpod pause as its entrypoint (what containerd runs as the
// sandbox).
func TestTestpodImage(t *testing.T) {
	top, err := gitTop()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var archives []string
	for _, name := range []string{"a.oci.tar", "b.oci.tar"} {
		out := filepath.Join(dir, name)
		if err := testpodCmd([]string{"-src", top, "-out", out}); err != nil {
			t.Fatalf("testpod: %v", err)
		}
		archives = append(archives, out)
	}
	if x, y := fileSHA256(t, archives[0]), fileSHA256(t, archives[1]); x != y {
		t.Errorf("two builds differ: sha256 %s and %s", x, y)
	}
	img, desc, err := readOCIArchive(archives[0], t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if got := desc.Annotations["io.containerd.image.name"]; got != testpodRef {
		t.Errorf("io.containerd.image.name = %q, want %q", got, testpodRef)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cf.Config.Entrypoint, " "); got != "/testpod pause" {
		t.Errorf("entrypoint %q, want /testpod pause", got)
	}
	root := t.TempDir()
	if err := unpackImage(img, root); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(root, "testpod")); err != nil || st.Mode().Perm()&0o111 == 0 {
		t.Errorf("/testpod in the image: %v (mode %v)", err, st)
	}
}
