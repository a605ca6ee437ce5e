package main

import (
	"os/exec"
	"strings"
	"testing"
)

// Existing systemd units and supervisor programs run "flanneld", and the
// image links weft-agent (what the manifest runs) to weft: a symlink to
// weft under either name must behave as `weft agent`.
func TestInvokedAsFlanneldRunsTheAgent(t *testing.T) {
	for _, name := range []string{"/opt/flannel/flanneld", "/usr/local/bin/weft-agent"} {
		var out, errOut strings.Builder
		if code := run([]string{name, "--version"}, &out, &errOut); code != 0 {
			t.Fatalf("%s --version exited %d: %s", name, code, errOut.String())
		}
		if strings.TrimSpace(out.String()) == "" {
			t.Fatalf("%s --version printed nothing", name)
		}
		out.Reset()
		errOut.Reset()
		if code := run([]string{name, "--subnet-lease-renew-margin=0"}, &out, &errOut); code != 2 {
			t.Fatalf("%s: bad flag value: exit %d, want 2", name, code)
		}
		if !strings.Contains(errOut.String(), "--subnet-lease-renew-margin=0") {
			t.Fatalf("%s: error does not name the flag: %s", name, errOut.String())
		}
	}
}

// A build without the lab (-tags nolab, the image's) says so for `weft
// lab` and in its help, instead of "unknown command".
func TestNoLabBuildSaysTheLabIsNotHere(t *testing.T) {
	saved := labCommand
	labCommand = nil
	t.Cleanup(func() { labCommand = saved })

	var out, errOut strings.Builder
	if code := run([]string{"weft", "lab", "demo"}, &out, &errOut); code != 2 {
		t.Fatalf("weft lab demo: exit %d, want 2", code)
	}
	if !strings.Contains(errOut.String(), "not in this") || !strings.Contains(errOut.String(), "-tags nolab") {
		t.Fatalf("weft lab demo without the lab: %q", errOut.String())
	}
	out.Reset()
	if code := run([]string{"weft", "help"}, &out, &errOut); code != 0 {
		t.Fatalf("weft help: exit %d", code)
	}
	if strings.Contains(out.String(), "weft lab demo") || !strings.Contains(out.String(), "-tags nolab") {
		t.Fatalf("help of a build without the lab:\n%s", out.String())
	}
	for _, cmd := range []string{"weft status", "weft cleanup", "weft config", "weft docker-opts", "weft agent"} {
		if !strings.Contains(out.String(), cmd) {
			t.Errorf("help of a build without the lab lacks %q", cmd)
		}
	}
}

// -tags nolab leaves out every package the lab brings, which is what
// makes the image's weft the agent's size (docs/image.md).
func TestNoLabBuildLeavesTheLabOut(t *testing.T) {
	out, err := exec.Command("go", "list", "-tags", "nolab", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -tags nolab -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	left := []string{"go.etcd.io/etcd/server/"}
	for _, pkg := range []string{"lab", "bench", "faults", "embedetcd", "kubecluster"} {
		left = append(left, "github.com/weftnet/weft/internal/"+pkg+"/")
	}
	for _, d := range deps {
		for _, prefix := range left {
			if strings.HasPrefix(d+"/", prefix) {
				t.Errorf("weft -tags nolab still imports %s", d)
			}
		}
	}
	for _, want := range []string{"github.com/weftnet/weft/internal/agent", "github.com/weftnet/weft/internal/status"} {
		if !strings.Contains(" "+strings.Join(deps, " ")+" ", " "+want+" ") {
			t.Errorf("weft -tags nolab lacks %s", want)
		}
	}
}

func TestUnknownCommand(t *testing.T) {
	var out, errOut strings.Builder
	if code := run([]string{"weft", "frobnicate"}, &out, &errOut); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	if !strings.Contains(errOut.String(), `unknown command "frobnicate"`) {
		t.Fatalf("stderr: %s", errOut.String())
	}
}
