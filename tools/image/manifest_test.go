package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestRenderManifestNamesTheBuiltImage: every container of
// deploy/kube-weft.yml (the agent and both init containers) runs the image
// make image built, under its version tag, and nothing else in the file
// changes.
func TestRenderManifestNamesTheBuiltImage(t *testing.T) {
	top, err := gitTop()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(top, "deploy", "kube-weft.yml")
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	const ref = "ghcr.io/weftnet/weft:v1.2.3-4-gabcdef0"
	out, err := renderManifest(src, file, ref)
	if err != nil {
		t.Fatal(err)
	}
	images := regexp.MustCompile(`(?m)^\s*-?\s*image:\s*(\S+)\s*$`).FindAllStringSubmatch(string(out), -1)
	if len(images) != 3 {
		t.Fatalf("rendered manifest has %d image: lines, want 3 (two init containers and the agent)", len(images))
	}
	for _, m := range images {
		if m[1] != ref {
			t.Errorf("rendered manifest names image %s, want %s", m[1], ref)
		}
	}
	if strings.Contains(string(out), "VERSION") || strings.Contains(string(out), ":latest") {
		t.Errorf("rendered manifest still names the placeholder or a latest tag")
	}
	if got, want := strings.ReplaceAll(string(out), ref, imagePlaceholder), string(src); got != want {
		t.Errorf("rendering changed more than the image lines")
	}
}

// TestRenderManifestRefusesAnotherImage: a manifest whose image line names
// anything but the placeholder (a stale tag, latest) is an error naming
// the file and line, not a silently half-rendered manifest.
func TestRenderManifestRefusesAnotherImage(t *testing.T) {
	src := []byte("spec:\n  containers:\n  - name: a\n    image: " + imagePlaceholder + "\n  - name: b\n    image: ghcr.io/weftnet/weft:latest\n")
	_, err := renderManifest(src, "m.yml", "ghcr.io/weftnet/weft:v1")
	if err == nil || !strings.Contains(err.Error(), "m.yml:6") || !strings.Contains(err.Error(), "ghcr.io/weftnet/weft:latest") {
		t.Fatalf("err = %v, want one naming m.yml:6 and the latest image", err)
	}
	if _, err := renderManifest([]byte("kind: ConfigMap\n"), "m.yml", "x:v1"); err == nil || !strings.Contains(err.Error(), "no image") {
		t.Fatalf("err = %v, want one saying m.yml has no image line", err)
	}
}
