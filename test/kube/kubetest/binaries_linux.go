package kubetest

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/weftnet/weft/internal/kubecluster"
	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/internal/testbin"
)

// Programs are the executables Binaries provides.
var Programs = kubecluster.Programs

// DefaultCacheRoot is where build-tools.sh keeps the binaries unless
// WEFT_KUBE_CACHE says otherwise.
const DefaultCacheRoot = kubecluster.DefaultCacheRoot

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// Binaries returns the directory holding etcd, kube-apiserver and
// kube-controller-manager: $WEFT_KUBE_BIN_DIR when set, else
// <cache>/kube-<first 12 hex of sha256(test/kube/tools/go.sum)>, the
// directory build-tools.sh fills (kubecluster.CacheDir). When they are
// missing it builds them (~8 min cold) if tests must not skip (CI set, or
// WEFT_REQUIRE_ROOT=1), and skips the test with instructions otherwise.
func Binaries(t testing.TB) string {
	t.Helper()
	if d := strings.TrimSpace(os.Getenv("WEFT_KUBE_BIN_DIR")); d != "" {
		if missing := kubecluster.Missing(d); len(missing) > 0 {
			t.Fatalf("WEFT_KUBE_BIN_DIR=%s lacks %s (run test/kube/build-tools.sh, or unset it)", d, strings.Join(missing, ", "))
		}
		return d
	}
	root, err := testbin.ModuleRoot()
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	dir, err := kubecluster.CacheDir(root)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	if len(kubecluster.Missing(dir)) == 0 {
		return dir
	}
	if !nstest.Required() {
		t.Skipf("the Kubernetes control plane is not built in %s; run `%s` (about 8 minutes once), or set CI=true to build it from the test", dir, kubecluster.BuildCommand)
	}
	buildOnce.Do(func() {
		t.Logf("building the Kubernetes control plane with test/kube/build-tools.sh (about 8 minutes on 2 cores)")
		buildDir, buildErr = kubecluster.Build(context.Background(), root, nil)
	})
	if buildErr != nil {
		t.Fatalf("kubetest: %v", buildErr)
	}
	t.Logf("built the Kubernetes control plane into %s", buildDir)
	return buildDir
}
