package main

import (
	"strings"
	"testing"
)

// Existing systemd units and supervisor programs run "flanneld"; a symlink
// to weft under that name must behave as `weft agent`.
func TestInvokedAsFlanneldRunsTheAgent(t *testing.T) {
	var out, errOut strings.Builder
	if code := run([]string{"/opt/flannel/flanneld", "--version"}, &out, &errOut); code != 0 {
		t.Fatalf("flanneld --version exited %d: %s", code, errOut.String())
	}
	if strings.TrimSpace(out.String()) == "" {
		t.Fatal("flanneld --version printed nothing")
	}
	out.Reset()
	errOut.Reset()
	if code := run([]string{"flanneld", "--subnet-lease-renew-margin=0"}, &out, &errOut); code != 2 {
		t.Fatalf("bad flag value: exit %d, want 2", code)
	}
	if !strings.Contains(errOut.String(), "--subnet-lease-renew-margin=0") {
		t.Fatalf("error does not name the flag: %s", errOut.String())
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
