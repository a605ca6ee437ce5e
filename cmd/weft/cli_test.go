package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// buildCommands builds weft, weft-agent and weft-cni into a temporary
// directory, so that the test sees what a user sees: real exit statuses
// and the two streams as the process writes them.
func buildCommands(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		gobin = "go"
	}
	cmd := exec.Command(gobin, "build", "-o", dir+string(filepath.Separator), "./cmd/weft", "./cmd/weft-agent", "./cmd/weft-cni")
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir
}

// Every command's manners: -h prints help on stdout and exits 0; an unknown
// flag or a stray argument exits 2 with one line naming the problem and
// then the usage, once, on stderr, and nothing on stdout.
func TestCommandLineManners(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	bin := buildCommands(t)
	commands := []struct {
		argv []string
		// stray is an argument the command does not take, and strayErr
		// what its error line must say about it.
		stray, strayErr string
	}{
		{argv: []string{"weft"}, stray: "stray", strayErr: `unknown command "stray"`},
		{argv: []string{"weft", "agent"}, stray: "stray", strayErr: "stray"},
		{argv: []string{"weft-agent"}, stray: "stray", strayErr: "stray"},
		{argv: []string{"weft", "cleanup"}, stray: "stray", strayErr: "stray"},
		{argv: []string{"weft", "status"}, stray: "stray", strayErr: "stray"},
		{argv: []string{"weft", "config"}, stray: "stray", strayErr: `unknown command "stray"`},
		// put takes one config argument; the second is the stray one.
		{argv: []string{"weft", "config", "put", "{}"}, stray: "{}", strayErr: "expected one config argument, got 2"},
		{argv: []string{"weft", "config", "get"}, stray: "stray", strayErr: "stray"},
		{argv: []string{"weft", "docker-opts"}, stray: "stray", strayErr: "stray"},
		{argv: []string{"weft", "lab"}, stray: "stray", strayErr: `unknown lab command "stray"`},
		{argv: []string{"weft", "lab", "demo"}, stray: "stray", strayErr: "stray"},
		{argv: []string{"weft", "lab", "up"}, stray: "stray", strayErr: "stray"},
		{argv: []string{"weft", "lab", "down"}, stray: "stray", strayErr: "stray"},
		{argv: []string{"weft", "lab", "check"}, stray: "stray", strayErr: "stray"},
		{argv: []string{"weft", "lab", "status"}, stray: "stray", strayErr: "stray"},
		// exec's one argument lacks the command to run.
		{argv: []string{"weft", "lab", "exec"}, stray: "h1", strayErr: "needs a namespace and a command"},
		{argv: []string{"weft", "lab", "bench"}, stray: "stray", strayErr: "stray"},
		{argv: []string{"weft", "version"}, stray: "stray", strayErr: "stray"},
		{argv: []string{"weft-cni"}, stray: "stray", strayErr: "stray"},
	}
	for _, c := range commands {
		name := strings.Join(c.argv, " ")
		t.Run(name+" -h", func(t *testing.T) {
			for _, h := range []string{"-h", "--help"} {
				stdout, stderr, code := runCommand(t, bin, c.argv, h)
				if code != 0 || stderr != "" {
					t.Fatalf("%s: exit %d, stderr %q; want 0 and nothing on stderr", h, code, stderr)
				}
				if n := usageCount(stdout); n != 1 {
					t.Fatalf("%s: usage appears %d times on stdout, want once:\n%s", h, n, stdout)
				}
			}
		})
		t.Run(name+" --bogus", func(t *testing.T) {
			checkUsageError(t, bin, c.argv, "--bogus", "bogus")
		})
		t.Run(name+" "+c.stray, func(t *testing.T) {
			checkUsageError(t, bin, c.argv, c.stray, c.strayErr)
		})
	}
}

func checkUsageError(t *testing.T, bin string, argv []string, arg, want string) {
	t.Helper()
	stdout, stderr, code := runCommand(t, bin, argv, arg)
	if code != 2 {
		t.Fatalf("exit %d, want 2; stderr:\n%s", code, stderr)
	}
	if stdout != "" {
		t.Fatalf("stdout %q, want nothing", stdout)
	}
	first, _, _ := strings.Cut(stderr, "\n")
	prog := argv[0]
	if !strings.HasPrefix(first, prog) || !strings.Contains(first, want) {
		t.Fatalf("first line of stderr %q: want it to start with %q and name the problem (%q)", first, prog, want)
	}
	if n := usageCount(stderr); n != 1 {
		t.Fatalf("usage appears %d times on stderr, want once:\n%s", n, stderr)
	}
}

// usageCount counts the usage headers ("Usage:" in any case) in s.
func usageCount(s string) int {
	return strings.Count(strings.ToLower(s), "usage:")
}

func runCommand(t *testing.T, bin string, argv []string, arg string) (stdout, stderr string, code int) {
	t.Helper()
	args := append(append([]string{}, argv[1:]...), arg)
	cmd := exec.Command(filepath.Join(bin, argv[0]), args...)
	// No FLANNELD_* or CNI_* variables from the test's environment.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("run %s: %v", argv[0], err)
	}
	return o.String(), e.String(), code
}

// The version, which packagers and bug reports ask for, on stdout with
// exit 0 for each spelling.
func TestVersionSpellings(t *testing.T) {
	for _, args := range [][]string{{"weft", "version"}, {"weft", "--version"}, {"weft", "-version"}} {
		var out, errOut strings.Builder
		if code := run(args, &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "weft ") || errOut.Len() != 0 {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, code, out.String(), errOut.String())
		}
	}
}
