package testbin

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestModuleRoot(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil || !strings.HasPrefix(string(b), "module github.com/weftnet/weft\n") {
		t.Errorf("ModuleRoot() = %s: go.mod %q, %v", root, b, err)
	}
}

// TestCNIDir builds the plugins and checks that "flannel" is weft's plugin
// and answers the CNI VERSION command with every spec version.
func TestCNIDir(t *testing.T) {
	dir := CNIDir(t)
	for _, name := range CNIPlugins {
		if !isExecutable(filepath.Join(dir, name)) {
			t.Errorf("%s missing from %s", name, dir)
		}
	}
	if again := CNIDir(t); again != dir {
		t.Errorf("second CNIDir = %s, want the same %s", again, dir)
	}

	about, _ := exec.Command(filepath.Join(dir, "flannel")).CombinedOutput()
	if !strings.Contains(string(about), "weft CNI plugin (flannel-compatible)") {
		t.Errorf("flannel is not weft's plugin; it says %q", about)
	}
	cmd := exec.Command(filepath.Join(dir, "flannel"))
	cmd.Env = append(os.Environ(), "CNI_COMMAND=VERSION")
	cmd.Stdin = strings.NewReader(`{"cniVersion":"1.1.0"}`)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("flannel VERSION: %v", err)
	}
	var v struct {
		Supported []string `json:"supportedVersions"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("flannel VERSION output %q: %v", out, err)
	}
	if got := strings.Join(v.Supported, ","); got != "0.1.0,0.2.0,0.3.0,0.3.1,0.4.0,1.0.0,1.1.0" {
		t.Errorf("supported versions %s", got)
	}
}

func TestCNIDirFromEnvChecksContents(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"flannel", "bridge"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("WEFT_CNI_BIN_DIR", dir)
	_, err := buildCNI()
	if err == nil || !strings.Contains(err.Error(), "lacks host-local, loopback, portmap") {
		t.Errorf("buildCNI with an incomplete WEFT_CNI_BIN_DIR = %v", err)
	}
	for _, name := range []string{"host-local", "loopback", "portmap"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := buildCNI(); err != nil || got != dir {
		t.Errorf("buildCNI = %s, %v; want %s", got, err, dir)
	}
}

func TestWeftFromEnvChecksFile(t *testing.T) {
	t.Setenv("WEFT_BIN", filepath.Join(t.TempDir(), "nope"))
	if _, err := buildWeft(); err == nil || !strings.Contains(err.Error(), "WEFT_BIN") {
		t.Errorf("buildWeft with a missing WEFT_BIN = %v", err)
	}
}
