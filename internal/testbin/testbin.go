// Package testbin gives tests the binaries they run as subprocesses: weft's
// CNI plugin under flannel's name next to the reference CNI plugins, and the
// weft binary. Each is built at most once per test process, into a
// directory shared by all tests of the process; `make test` builds them
// beforehand and points the tests at them with WEFT_CNI_BIN_DIR and
// WEFT_BIN, and then nothing is built here.
//
// Build directories are named after the test process's pid and swept by
// the next test process once that pid is gone, so no TestMain is needed
// to clean up.
package testbin

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// CNIPlugins are the executables CNIDir provides.
var CNIPlugins = []string{"flannel", "bridge", "host-local", "loopback", "portmap"}

// The reference plugins come from the version go.mod pins (tools/tools.go
// keeps them in the module graph).
const pluginsModule = "github.com/containernetworking/plugins/plugins/"

var referencePlugins = []string{
	pluginsModule + "main/bridge",
	pluginsModule + "ipam/host-local",
	pluginsModule + "main/loopback",
	pluginsModule + "meta/portmap",
}

var (
	dirOnce sync.Once
	dir     string
	dirErr  error

	cniOnce sync.Once
	cniDir  string
	cniErr  error

	weftOnce sync.Once
	weftPath string
	weftErr  error
)

// CNIDir returns a directory holding flannel (./cmd/weft-cni), bridge,
// host-local, loopback and portmap, for libcni's plugin path and CNI_PATH.
// With WEFT_CNI_BIN_DIR set it returns that directory after checking that
// all five are there.
func CNIDir(t testing.TB) string {
	t.Helper()
	cniOnce.Do(func() { cniDir, cniErr = buildCNI() })
	if cniErr != nil {
		t.Fatalf("testbin: CNI plugins: %v", cniErr)
	}
	return cniDir
}

// Weft returns the path of the weft binary (./cmd/weft), or WEFT_BIN when
// set.
func Weft(t testing.TB) string {
	t.Helper()
	weftOnce.Do(func() { weftPath, weftErr = buildWeft() })
	if weftErr != nil {
		t.Fatalf("testbin: weft: %v", weftErr)
	}
	return weftPath
}

func buildCNI() (string, error) {
	if d := os.Getenv("WEFT_CNI_BIN_DIR"); d != "" {
		var missing []string
		for _, name := range CNIPlugins {
			if !isExecutable(filepath.Join(d, name)) {
				missing = append(missing, name)
			}
		}
		if len(missing) > 0 {
			return "", fmt.Errorf("WEFT_CNI_BIN_DIR=%s lacks %s (run `make cni`, or unset it to build here)", d, strings.Join(missing, ", "))
		}
		return d, nil
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	out, err := buildDir()
	if err != nil {
		return "", err
	}
	// One go command for all five: the toolchain builds them in parallel
	// and names each binary after its package directory.
	args := append([]string{"build", "-o", out + string(filepath.Separator), "./cmd/weft-cni"}, referencePlugins...)
	if err := goCmd(root, args...); err != nil {
		return "", err
	}
	if err := os.Rename(filepath.Join(out, "weft-cni"), filepath.Join(out, "flannel")); err != nil {
		return "", fmt.Errorf("install weft-cni as flannel: %w", err)
	}
	return out, nil
}

func buildWeft() (string, error) {
	if p := os.Getenv("WEFT_BIN"); p != "" {
		if !isExecutable(p) {
			return "", fmt.Errorf("WEFT_BIN=%s is not an executable file (run `make weft`, or unset it to build here)", p)
		}
		return p, nil
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	if st, err := os.Stat(filepath.Join(root, "cmd", "weft")); err != nil || !st.IsDir() {
		return "", fmt.Errorf("%s does not exist yet: nothing to build the weft binary from", filepath.Join(root, "cmd", "weft"))
	}
	out, err := buildDir()
	if err != nil {
		return "", err
	}
	// weft-agent goes beside weft: the lab runs agents with it when it is
	// there (lab.AgentCommand), as `make build` arranges.
	if err := goCmd(root, "build", "-o", out+string(filepath.Separator), "./cmd/weft", "./cmd/weft-agent"); err != nil {
		return "", err
	}
	return filepath.Join(out, "weft"), nil
}

// ModuleRoot returns the directory of weft's go.mod, asking the go command
// (run from the test's working directory, the package directory), and
// walking up from there if it cannot say.
func ModuleRoot() (string, error) {
	if out, err := exec.Command(goBin(), "env", "GOMOD").Output(); err == nil {
		gomod := strings.TrimSpace(string(out))
		if gomod != "" && gomod != os.DevNull {
			return filepath.Dir(gomod), nil
		}
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find module root: %w", err)
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("find module root: no go.mod above %s", wd)
		}
	}
}

// buildDir creates this process's build directory, first removing those of
// test processes that have exited.
func buildDir() (string, error) {
	dirOnce.Do(func() {
		const prefix = "weft-testbin-"
		tmp := os.TempDir()
		if ents, err := os.ReadDir(tmp); err == nil {
			for _, e := range ents {
				pid, err := strconv.Atoi(strings.TrimPrefix(e.Name(), prefix))
				if !e.IsDir() || !strings.HasPrefix(e.Name(), prefix) || err != nil || pid == os.Getpid() {
					continue
				}
				if exited(pid) {
					_ = os.RemoveAll(filepath.Join(tmp, e.Name()))
				}
			}
		}
		dir = filepath.Join(tmp, prefix+strconv.Itoa(os.Getpid()))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			dirErr = fmt.Errorf("create build dir: %w", err)
		}
	})
	return dir, dirErr
}

// exited reports whether no process has the pid any more. A process of
// another user (EPERM) counts as alive: its directory is not ours to take.
func exited(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return true
	}
	return errors.Is(p.Signal(syscall.Signal(0)), os.ErrProcessDone)
}

func goCmd(root string, args ...string) error {
	cmd := exec.Command(goBin(), args...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go %s (in %s): %w\n%s", strings.Join(args, " "), root, err, out)
	}
	return nil
}

// goBin finds the go command: `go test` puts its own GOROOT/bin first on
// PATH; GOROOT is the fallback for test binaries run by hand.
func goBin() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if r := os.Getenv("GOROOT"); r != "" {
		return filepath.Join(r, "bin", "go")
	}
	return "go"
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}
