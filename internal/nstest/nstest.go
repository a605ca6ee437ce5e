// Package nstest holds helpers for tests that need root and network
// namespaces: a root gate that refuses to skip under CI, namespaces that
// clean themselves up, and waiting on a condition with a deadline instead of
// sleeping.
package nstest

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/netns"
)

// Required reports whether tests must not skip for lack of root: under CI
// (CI set) or when WEFT_REQUIRE_ROOT=1.
func Required() bool {
	return os.Getenv("CI") != "" || os.Getenv("WEFT_REQUIRE_ROOT") == "1"
}

// RequireRoot skips the test when not running as root, except under CI,
// where it fails: integration tests must never be skipped silently there.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if Required() {
		t.Fatal("this test needs root (network namespaces); CI/WEFT_REQUIRE_ROOT forbids skipping it")
	}
	t.Skip("needs root for network namespaces; run `sudo make test`")
}

// SerialEnv names the variable under which the tests that change
// host-wide kernel settings run: `make test` runs them in a step of their
// own, after the parallel run, so that no other test's namespaces share
// the kernel with them while they do.
const SerialEnv = "WEFT_SERIAL_TESTS"

// Serial marks a test that changes host-wide state (a sysctl every
// namespace shares). It runs only in the serial step (SerialEnv=1), and is
// skipped, saying where it runs, in the parallel one.
func Serial(t testing.TB) {
	t.Helper()
	if os.Getenv(SerialEnv) != "1" {
		t.Skipf("changes host-wide kernel settings: runs in make test's serial step (%s=1)", SerialEnv)
	}
}

// RequireTools skips the test when one of the programs is not on PATH,
// except under CI, where it fails: CI installs them all (.ci/run).
func RequireTools(t testing.TB, programs ...string) {
	t.Helper()
	for _, p := range programs {
		if _, err := exec.LookPath(p); err != nil {
			if Required() {
				t.Fatalf("%s not installed, and CI/WEFT_REQUIRE_ROOT forbids skipping (.ci/run installs it)", p)
			}
			t.Skipf("%s not installed", p)
		}
	}
}

// UniqueName returns prefix plus a short random suffix, kept under the
// 15-byte interface-name limit when prefix is short.
func UniqueName(prefix string) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// NewNS creates a uniquely named network namespace ("wt<prefix><hex>") that
// is deleted when the test ends, pass or fail.
func NewNS(t testing.TB, prefix string) string {
	t.Helper()
	name := UniqueName("wt" + prefix)
	if err := netns.Create(name); err != nil {
		t.Fatalf("create netns: %v", err)
	}
	t.Cleanup(func() {
		if err := netns.Delete(name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return name
}

// Exec runs a command inside the namespace (ip netns exec) and returns its
// combined output, failing the test on error.
func Exec(t testing.TB, ns string, args ...string) string {
	t.Helper()
	out, err := ExecErr(ns, args...)
	if err != nil {
		t.Fatalf("ip netns exec %s %s: %v\n%s", ns, strings.Join(args, " "), err, out)
	}
	return out
}

// ExecErr is Exec that returns the error instead of failing.
func ExecErr(ns string, args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Eventually polls cond every 20 ms until it returns nil or timeout passes,
// then fails the test with cond's last error.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
