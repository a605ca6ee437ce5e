package kubetest

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/internal/testbin"
)

// Programs are the executables Binaries provides.
var Programs = []string{"etcd", "kube-apiserver", "kube-controller-manager"}

// DefaultCacheRoot is where build-tools.sh keeps the binaries unless
// WEFT_KUBE_CACHE says otherwise.
const DefaultCacheRoot = "/var/cache/weft"

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// Binaries returns the directory holding etcd, kube-apiserver and
// kube-controller-manager: $WEFT_KUBE_BIN_DIR when set, else
// <cache>/kube-<first 12 hex of sha256(test/kube/tools/go.sum)>, the
// directory build-tools.sh fills. When they are missing it builds them
// (~8 min cold) if tests must not skip (CI set, or WEFT_REQUIRE_ROOT=1),
// and skips the test with instructions otherwise.
func Binaries(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("WEFT_KUBE_BIN_DIR"); d != "" {
		if missing := missingIn(d); len(missing) > 0 {
			t.Fatalf("WEFT_KUBE_BIN_DIR=%s lacks %s (run test/kube/build-tools.sh, or unset it)", d, strings.Join(missing, ", "))
		}
		return d
	}
	root, err := testbin.ModuleRoot()
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	dir, err := cacheDir(root)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	if len(missingIn(dir)) == 0 {
		return dir
	}
	if !nstest.Required() {
		t.Skipf("the Kubernetes control plane is not built in %s; run `test/kube/build-tools.sh` (about 8 minutes once), or set CI=true to build it from the test", dir)
	}
	buildOnce.Do(func() { buildDir, buildErr = build(t, root) })
	if buildErr != nil {
		t.Fatalf("kubetest: %v", buildErr)
	}
	if missing := missingIn(buildDir); len(missing) > 0 {
		t.Fatalf("kubetest: build-tools.sh left %s without %s", buildDir, strings.Join(missing, ", "))
	}
	return buildDir
}

// cacheDir computes the directory build-tools.sh uses.
func cacheDir(root string) (string, error) {
	sum, err := os.ReadFile(filepath.Join(root, "test", "kube", "tools", "go.sum"))
	if err != nil {
		return "", fmt.Errorf("read the tools module's go.sum: %w", err)
	}
	h := sha256.Sum256(sum)
	cache := os.Getenv("WEFT_KUBE_CACHE")
	if cache == "" {
		cache = DefaultCacheRoot
	}
	return filepath.Join(cache, "kube-"+hex.EncodeToString(h[:])[:12]), nil
}

// build runs build-tools.sh, which takes a lock so that test packages
// running in parallel build once, and prints the directory last.
func build(t testing.TB, root string) (string, error) {
	script := filepath.Join(root, "test", "kube", "build-tools.sh")
	t.Logf("building the Kubernetes control plane with %s (about 8 minutes on 2 cores)", script)
	cmd := exec.Command("bash", script)
	cmd.Dir = root
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s: %w\n%s", script, err, tail(stderr.String(), 60))
	}
	var last string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			last = l
		}
	}
	t.Logf("built the Kubernetes control plane into %s", last)
	return last, nil
}

func missingIn(dir string) []string {
	var missing []string
	for _, p := range Programs {
		st, err := os.Stat(filepath.Join(dir, p))
		if err != nil || !st.Mode().IsRegular() || st.Mode()&0o111 == 0 {
			missing = append(missing, p)
		}
	}
	return missing
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
