package kubecluster

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// Programs are the executables a control plane needs, all in one directory.
var Programs = []string{"etcd", "kube-apiserver", "kube-controller-manager"}

const (
	// DefaultCacheRoot is where build-tools.sh keeps the binaries unless
	// $WEFT_KUBE_CACHE says otherwise.
	DefaultCacheRoot = "/var/cache/weft"
	// BuildCommand builds the binaries from the repository's top
	// directory; error messages tell people to run it.
	BuildCommand = "make kube-tools"
	// modulePath identifies weft's go.mod when looking for the repository.
	modulePath = "github.com/weftnet/weft"
	// toolsSum is the file, relative to the repository, whose hash names
	// the cache directory.
	toolsSum = "test/kube/tools/go.sum"
	// buildScript builds the binaries into the cache directory.
	buildScript = "test/kube/build-tools.sh"
)

// CacheRoot is $WEFT_KUBE_CACHE, else DefaultCacheRoot.
func CacheRoot() string {
	if d := os.Getenv("WEFT_KUBE_CACHE"); d != "" {
		return d
	}
	return DefaultCacheRoot
}

// CacheDir is the directory build-tools.sh fills for the repository at
// repoRoot: <CacheRoot>/kube-<first 12 hex digits of the sha256 of
// test/kube/tools/go.sum>, so a change of the tools' versions gets a new
// directory.
func CacheDir(repoRoot string) (string, error) {
	sum, err := os.ReadFile(filepath.Join(repoRoot, toolsSum))
	if err != nil {
		return "", fmt.Errorf("read the Kubernetes tools module's go.sum: %w", err)
	}
	h := sha256.Sum256(sum)
	return filepath.Join(CacheRoot(), "kube-"+hex.EncodeToString(h[:])[:12]), nil
}

// Missing lists the Programs that dir lacks as executable files.
func Missing(dir string) []string {
	var missing []string
	for _, p := range Programs {
		st, err := os.Stat(filepath.Join(dir, p))
		if err != nil || !st.Mode().IsRegular() || st.Mode()&0o111 == 0 {
			missing = append(missing, p)
		}
	}
	return missing
}

// FindRepo walks up from each of starts to the first directory whose
// go.mod declares weft's module and which holds the tools module, and
// reports whether it found one.
func FindRepo(starts ...string) (string, bool) {
	for _, s := range starts {
		if s == "" {
			continue
		}
		abs, err := filepath.Abs(s)
		if err != nil {
			continue
		}
		for d := abs; ; d = filepath.Dir(d) {
			if isRepo(d) {
				return d, true
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	return "", false
}

func isRepo(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	first, _, _ := bytes.Cut(b, []byte("\n"))
	if strings.TrimSpace(strings.TrimPrefix(string(first), "module")) != modulePath {
		return false
	}
	_, err = os.Stat(filepath.Join(dir, toolsSum))
	return err == nil
}

// ErrNotBuilt is wrapped by Locate's error when the binaries are not there.
var ErrNotBuilt = errors.New("the Kubernetes control plane is not built")

// Locate finds the binaries for a program that cannot build them itself
// (`weft lab`): explicit if given, else $WEFT_KUBE_BIN_DIR, else the cache
// directory of the weft repository found above one of starts (the working
// directory, the weft binary's), else the most recently built complete
// kube-* directory under CacheRoot. The error wraps ErrNotBuilt and names
// BuildCommand.
func Locate(explicit string, starts ...string) (string, error) {
	check := func(dir, from string) (string, error) {
		if missing := Missing(dir); len(missing) > 0 {
			return "", fmt.Errorf("%w: %s (%s) lacks %s; run `%s` in the weft repository (about 8 minutes once), or name a directory holding %s with --kube-bin-dir",
				ErrNotBuilt, dir, from, strings.Join(missing, ", "), BuildCommand, strings.Join(Programs, ", "))
		}
		return dir, nil
	}
	if explicit != "" {
		return check(explicit, "--kube-bin-dir")
	}
	if d := os.Getenv("WEFT_KUBE_BIN_DIR"); d != "" {
		return check(d, "$WEFT_KUBE_BIN_DIR")
	}
	if repo, ok := FindRepo(starts...); ok {
		dir, err := CacheDir(repo)
		if err != nil {
			return "", err
		}
		return check(dir, "the build cache of "+repo)
	}
	if dir, ok := newestBuilt(CacheRoot()); ok {
		return dir, nil
	}
	return "", fmt.Errorf("%w: no weft repository above %s and no complete kube-* directory in %s; run `%s` in the weft repository (about 8 minutes once), or name a directory holding %s with --kube-bin-dir",
		ErrNotBuilt, strings.Join(slices.DeleteFunc(slices.Clone(starts), func(s string) bool { return s == "" }), " or "),
		CacheRoot(), BuildCommand, strings.Join(Programs, ", "))
}

// newestBuilt returns the kube-* directory under root holding every
// program whose kube-apiserver is newest.
func newestBuilt(root string) (string, bool) {
	dirs, _ := filepath.Glob(filepath.Join(root, "kube-*"))
	best, bestTime := "", int64(0)
	for _, d := range dirs {
		if len(Missing(d)) > 0 {
			continue
		}
		st, err := os.Stat(filepath.Join(d, "kube-apiserver"))
		if err != nil {
			continue
		}
		if t := st.ModTime().UnixNano(); best == "" || t > bestTime {
			best, bestTime = d, t
		}
	}
	return best, best != ""
}

// Build runs the repository's build-tools.sh (about 8 minutes cold; it
// takes a lock, so concurrent callers build once), with its progress to
// progress, and returns the directory it filled.
func Build(ctx context.Context, repoRoot string, progress io.Writer) (string, error) {
	script := filepath.Join(repoRoot, buildScript)
	cmd := exec.CommandContext(ctx, "bash", script)
	cmd.Dir = repoRoot
	var stderr bytes.Buffer
	if progress == nil {
		progress = io.Discard
	}
	cmd.Stderr = io.MultiWriter(&stderr, progress)
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s: %w\n%s", script, err, tail(stderr.String(), 60))
	}
	var last string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			last = l
		}
	}
	if last == "" {
		return "", fmt.Errorf("%s printed no directory", script)
	}
	if missing := Missing(last); len(missing) > 0 {
		return "", fmt.Errorf("%s left %s without %s", script, last, strings.Join(missing, ", "))
	}
	return last, nil
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
