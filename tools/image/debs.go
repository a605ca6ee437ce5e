package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
)

// rootPackages are what the image's programs run: a shell and cp/mv for
// the DaemonSet's init containers (deploy/kube-weft.yml), iptables and
// nft for the agent's rules. apt adds what they depend on.
var rootPackages = []string{"dash", "coreutils", "iptables", "nftables"}

// notAtRuntime are dependencies that only maintainer scripts use, which
// this build never runs (it does their work itself, see rootfs.go). apt is
// told they are installed already, so neither they nor what they alone
// pull in (tar, compression libraries) land in the image.
var notAtRuntime = map[string]string{
	"dpkg":        "dash's maintainer scripts divert /bin/sh with dpkg-divert",
	"debianutils": "dash's maintainer scripts register the shell with add-shell",
}

// deb is one downloaded Debian package.
type deb struct {
	Name, Version, File string
}

// debsKey names the cache directory: the Debian release and architecture
// the packages come from and the package lists above. The same key gives
// the same .debs (the first build's), so later builds are reproducible
// and need no mirror.
func debsKey(release, arch string) string {
	h := sha256.New()
	fmt.Fprintf(h, "release=%s\narch=%s\nroots=%s\n", release, arch, strings.Join(rootPackages, ","))
	skip := make([]string, 0, len(notAtRuntime))
	for p := range notAtRuntime {
		skip = append(skip, p)
	}
	slices.Sort(skip)
	fmt.Fprintf(h, "skip=%s\n", strings.Join(skip, ","))
	return fmt.Sprintf("%s-%s-%s", release, arch, hex.EncodeToString(h.Sum(nil))[:12])
}

// debianRelease is the codename of the release apt installs from: the
// host's (its sources name the host's suite).
func debianRelease() (string, error) {
	b, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return "", fmt.Errorf("find the Debian release: %w", err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "VERSION_CODENAME="); ok && v != "" {
			return strings.Trim(v, `"`), nil
		}
	}
	return "", fmt.Errorf("find the Debian release: /etc/os-release has no VERSION_CODENAME (the image is built from a Debian host's apt)")
}

func run(ctx context.Context, dir string, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// fetchDebs returns the image's packages from the cache under root,
// resolving and downloading them through apt first when the cache lacks
// them (or refresh is set, to pick up the mirror's updates).
func fetchDebs(ctx context.Context, log *slog.Logger, root string, refresh bool) (dir string, debs []deb, err error) {
	release, err := debianRelease()
	if err != nil {
		return "", nil, err
	}
	out, err := run(ctx, "", "dpkg", "--print-architecture")
	if err != nil {
		return "", nil, err
	}
	arch := strings.TrimSpace(string(out))
	if arch != runtime.GOARCH {
		return "", nil, fmt.Errorf("this host's packages are for %s, weft's programs would be built for %s: build the image on a host whose dpkg architecture is Go's", arch, runtime.GOARCH)
	}
	dir = filepath.Join(root, debsKey(release, arch))
	lockFile := filepath.Join(dir, "packages.lock")
	if !refresh {
		if debs, err := readLock(dir, lockFile); err == nil {
			return dir, debs, nil
		}
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", nil, fmt.Errorf("create the .deb cache: %w", err)
	}
	// Parallel builds (the reproducibility test) share the cache: the
	// first downloads, the others wait and then read its lock file.
	lk, err := os.OpenFile(filepath.Join(root, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", nil, fmt.Errorf("lock the .deb cache: %w", err)
	}
	defer lk.Close()
	if err := syscall.Flock(int(lk.Fd()), syscall.LOCK_EX); err != nil {
		return "", nil, fmt.Errorf("lock the .deb cache: %w", err)
	}
	if !refresh {
		if debs, err := readLock(dir, lockFile); err == nil {
			return dir, debs, nil
		}
	}

	tmp, err := os.MkdirTemp(root, ".download-")
	if err != nil {
		return "", nil, fmt.Errorf("create a download directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	debs, err = resolve(ctx, tmp)
	if err != nil {
		return "", nil, err
	}
	log.Info("downloading Debian packages", "release", release, "arch", arch, "packages", len(debs), "cache", dir)
	args := []string{"-q", "-o", "APT::Sandbox::User=root", "download"}
	for _, d := range debs {
		args = append(args, d.Name+"="+d.Version)
	}
	if _, err := run(ctx, tmp, "apt-get", args...); err != nil {
		return "", nil, fmt.Errorf("download the image's packages: %w", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", nil, fmt.Errorf("clear %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, err
	}
	var lock strings.Builder
	for _, d := range debs {
		if err := os.Rename(filepath.Join(tmp, d.File), filepath.Join(dir, d.File)); err != nil {
			return "", nil, fmt.Errorf("apt-get download left no %s: %w", d.File, err)
		}
		fmt.Fprintf(&lock, "%s %s %s\n", d.Name, d.Version, d.File)
	}
	// The lock file is written last: its presence means the cache entry is
	// complete.
	if err := os.WriteFile(lockFile, []byte(lock.String()), 0o644); err != nil {
		return "", nil, fmt.Errorf("write %s: %w", lockFile, err)
	}
	return dir, debs, nil
}

// readLock reads a complete cache entry: "name version file" lines, every
// file present.
func readLock(dir, lockFile string) ([]deb, error) {
	b, err := os.ReadFile(lockFile)
	if err != nil {
		return nil, err
	}
	var debs []deb
	for i, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || strings.Contains(f[2], "/") || !strings.HasSuffix(f[2], ".deb") {
			return nil, fmt.Errorf("%s:%d: %q is not \"name version file.deb\"", lockFile, i+1, line)
		}
		if _, err := os.Stat(filepath.Join(dir, f[2])); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", lockFile, i+1, err)
		}
		debs = append(debs, deb{Name: f[0], Version: f[1], File: f[2]})
	}
	return debs, nil
}

// resolve asks apt which packages installing rootPackages on an empty
// system takes, without recommends and with notAtRuntime marked as
// installed. It reads apt's --print-uris lines:
//
//	'http://.../libc6_2.36-9%2bdeb12u14_amd64.deb' libc6_2.36-9+deb12u14_amd64.deb 2759320 MD5Sum:...
//
// whose second field is name_version_arch.deb, the epoch's colon escaped
// as %3a.
func resolve(ctx context.Context, tmp string) ([]deb, error) {
	var status strings.Builder
	for _, p := range slices.Sorted(func(yield func(string) bool) {
		for p := range notAtRuntime {
			if !yield(p) {
				return
			}
		}
	}) {
		// A version above any real one satisfies every versioned
		// dependency on it.
		fmt.Fprintf(&status, "Package: %s\nStatus: install ok installed\nPriority: required\nVersion: 99999\nArchitecture: all\n\n", p)
	}
	statusFile := filepath.Join(tmp, "status")
	if err := os.WriteFile(statusFile, []byte(status.String()), 0o644); err != nil {
		return nil, err
	}
	args := []string{"-qq", "-y", "--print-uris",
		"-o", "Dir::State::status=" + statusFile,
		"-o", "Debug::NoLocking=1",
		"-o", "APT::Install-Recommends=false",
		"install"}
	out, err := run(ctx, tmp, "apt-get", append(args, rootPackages...)...)
	if err != nil {
		return nil, fmt.Errorf("resolve the image's packages (run apt-get update if apt has no package lists): %w", err)
	}
	debs, err := parsePrintURIs(out)
	if err != nil {
		return nil, err
	}
	if len(debs) == 0 {
		return nil, fmt.Errorf("resolve the image's packages: apt-get --print-uris named no package")
	}
	return debs, nil
}

func parsePrintURIs(out []byte) ([]deb, error) {
	var debs []deb
	sc := bufio.NewScanner(bytes.NewReader(out))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if !strings.HasPrefix(line, "'") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 || !strings.HasSuffix(f[1], ".deb") {
			return nil, fmt.Errorf("apt-get --print-uris line %d: %q is not 'uri' file.deb size hash", n, line)
		}
		parts := strings.Split(strings.TrimSuffix(f[1], ".deb"), "_")
		if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" || strings.Contains(f[1], "/") {
			return nil, fmt.Errorf("apt-get --print-uris line %d: %q is not name_version_arch.deb", n, f[1])
		}
		version, err := url.PathUnescape(parts[1])
		if err != nil {
			return nil, fmt.Errorf("apt-get --print-uris line %d: version %q: %w", n, parts[1], err)
		}
		debs = append(debs, deb{Name: parts[0], Version: version, File: f[1]})
	}
	slices.SortFunc(debs, func(a, b deb) int { return strings.Compare(a.Name, b.Name) })
	return debs, nil
}
