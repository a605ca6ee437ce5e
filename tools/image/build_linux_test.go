package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// testVersion is the tag the tests build: fixed, so that a dirty tree
// (git describe's -dirty) does not change between the two builds.
const testVersion = "v0.0.0-imagetest"

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("WEFT_REQUIRE_ROOT") == "1" {
			t.Fatal("needs root (WEFT_REQUIRE_ROOT=1)")
		}
		t.Skip("needs root")
	}
}

func testBuild(t *testing.T, out string) *buildResult {
	t.Helper()
	top, err := gitTop()
	if err != nil {
		t.Fatal(err)
	}
	epoch, err := sourceDateEpoch(top)
	if err != nil {
		t.Fatal(err)
	}
	cache := os.Getenv("WEFT_DEBS_CACHE")
	if cache == "" {
		cache = "/var/cache/weft/debs"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	res, err := build(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), buildOptions{
		Src: top, Out: out, Version: testVersion, Repo: "ghcr.io/weftnet/weft",
		DebsCache: cache, Epoch: epoch,
	})
	if err != nil {
		t.Fatalf("build the image: %v", err)
	}
	t.Logf("built %s %s in %v: %d bytes compressed (layers %v)", res.Ref, res.Digest, time.Since(start).Round(time.Millisecond), res.CompressedSize, res.LayerSizes)
	return res
}

// first is the build both tests use; the reproducibility test adds a
// second.
var (
	firstOnce sync.Once
	firstRes  *buildResult
	firstDir  string
)

func firstBuild(t *testing.T) *buildResult {
	t.Helper()
	firstOnce.Do(func() {
		dir, err := os.MkdirTemp("", "weft-image-test-")
		if err != nil {
			t.Fatal(err)
		}
		firstDir = dir
		firstRes = testBuild(t, dir)
	})
	if firstRes == nil {
		t.Fatal("the first image build failed (see the test that ran it)")
	}
	return firstRes
}

func TestMain(m *testing.M) {
	code := m.Run()
	if firstDir != "" {
		os.RemoveAll(firstDir)
	}
	os.Exit(code)
}

func fileSHA256(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestBuildIsReproducible builds the image twice from one tree into two
// directories: the manifest digest and both archives' bytes are the same,
// the archives name the version tag (never latest), and the rendered
// manifest names that image.
func TestBuildIsReproducible(t *testing.T) {
	requireRoot(t) // the .deb cache under /var/cache
	a := firstBuild(t)
	b := testBuild(t, t.TempDir())
	if a.Digest != b.Digest {
		t.Errorf("two builds of one tree: digests %s and %s", a.Digest, b.Digest)
	}
	for _, f := range [][2]string{{a.OCIArchive, b.OCIArchive}, {a.DockerArchive, b.DockerArchive}} {
		if x, y := fileSHA256(t, f[0]), fileSHA256(t, f[1]); x != y {
			t.Errorf("%s and %s differ: sha256 %s and %s", f[0], f[1], x, y)
		}
	}

	wantRef := "ghcr.io/weftnet/weft:" + testVersion
	if a.Ref != wantRef {
		t.Errorf("ref %s, want %s", a.Ref, wantRef)
	}
	img, desc, err := readOCIArchive(a.OCIArchive, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := img.Digest(); d.String() != a.Digest || desc.Digest.String() != a.Digest {
		t.Errorf("the OCI archive holds %s (index: %s), the build reported %s", d, desc.Digest, a.Digest)
	}
	if got := desc.Annotations["io.containerd.image.name"]; got != wantRef {
		t.Errorf("io.containerd.image.name = %q, want %q", got, wantRef)
	}
	if got := desc.Annotations["org.opencontainers.image.ref.name"]; got != testVersion {
		t.Errorf("org.opencontainers.image.ref.name = %q, want %q", got, testVersion)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(cf.Config.Entrypoint, " "), "/usr/local/bin/weft-agent") || cf.Config.Hostname != "" {
		t.Errorf("config: entrypoint %q hostname %q", cf.Config.Entrypoint, cf.Config.Hostname)
	}

	tags := dockerArchiveTags(t, a.DockerArchive)
	if len(tags) != 1 || tags[0] != wantRef {
		t.Errorf("docker-archive RepoTags %v, want [%s]", tags, wantRef)
	}
	m, err := os.ReadFile(a.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(m), "image: "+wantRef+"\n"); n != 3 {
		t.Errorf("the rendered %s names %s %d times, want 3", a.Manifest, wantRef, n)
	}
}

func dockerArchiveTags(t *testing.T, archive string) []string {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s: no manifest.json: %v", archive, err)
		}
		if h.Name != "manifest.json" {
			continue
		}
		var m []struct{ RepoTags []string }
		if err := json.NewDecoder(tr).Decode(&m); err != nil {
			t.Fatalf("%s manifest.json: %v", archive, err)
		}
		if len(m) != 1 {
			t.Fatalf("%s: %d images, want 1", archive, len(m))
		}
		return m[0].RepoTags
	}
}

// TestImageRunsInChroot unpacks the image with go-containerregistry and
// runs its programs chrooted into it, each in a new network namespace of
// its own, so that the dynamic ones (iptables, nft, the init containers'
// shell and cp) prove their libraries and xtables modules resolve inside
// the image, and weft's static ones start.
func TestImageRunsInChroot(t *testing.T) {
	requireRoot(t)
	res := firstBuild(t)
	img, _, err := readOCIArchive(res.OCIArchive, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if err := unpackImage(img, root); err != nil {
		t.Fatalf("unpack the image: %v", err)
	}
	inImage := func(t *testing.T, argv ...string) string {
		t.Helper()
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = []string{pathEnv}
		cmd.Dir = "/"
		cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root, Cloneflags: syscall.CLONE_NEWNET}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("%q in the image: %v: %s", argv, err, out.String())
		}
		return out.String()
	}
	for _, c := range []struct {
		name string
		argv []string
		want string
	}{
		// weft-agent and flanneld are links to weft, which runs the agent
		// under those names.
		{"weft-agent", []string{"/usr/local/bin/weft-agent", "--version"}, testVersion},
		{"flanneld", []string{"/opt/bin/flanneld", "--version"}, testVersion},
		{"weft", []string{"/usr/local/bin/weft", "version"}, testVersion},
		{"weft status", []string{"/usr/local/bin/weft", "status", "-h"}, "--check"},
		// The image's weft is built without the lab, and says so.
		{"no lab", []string{"/bin/sh", "-c", "/usr/local/bin/weft lab demo 2>&1; echo exit $?"}, "-tags nolab, as in the container image); use a full build\n(make build) on a machine of your own.\nexit 2"},
		// iptables is the nf_tables variant, as on Debian hosts.
		{"iptables", []string{"iptables", "--version"}, "(nf_tables)"},
		{"ip6tables-save", []string{"ip6tables-save", "--version"}, "(nf_tables)"},
		{"iptables-legacy", []string{"iptables-legacy", "--version"}, "(legacy)"},
		{"nft", []string{"nft", "--version"}, "nftables v"},
		// The rules the agent writes, with the xtables modules they load
		// (comment, MASQUERADE), in this command's own network namespace.
		{"rules", []string{"/bin/sh", "-c", "iptables -t nat -A POSTROUTING -s 10.244.0.0/16 -m comment --comment 'weft image test' -j MASQUERADE --random-fully && iptables-save -t nat && nft list ruleset"}, "weft image test"},
		// deploy/kube-weft.yml's install-cni-plugin init container.
		{"install-cni-plugin", []string{"/bin/sh", "-c", "mkdir -p /tmp/cni && cp -f /opt/weft/cni/flannel /tmp/cni/.flannel.tmp && mv -f /tmp/cni/.flannel.tmp /tmp/cni/flannel && ls -l /tmp/cni/flannel"}, "/tmp/cni/flannel"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if out := inImage(t, c.argv...); !strings.Contains(out, c.want) {
				t.Errorf("%q in the image printed %q, want %q in it", c.argv, out, c.want)
			}
		})
	}
	// The plugin the init container installs is the one make image built,
	// static: it runs on any host's runtime whatever the host's libc.
	for _, f := range weftFiles {
		e, err := elf.Open(filepath.Join(root, f.dest))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range e.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s has a program interpreter: not a static binary", f.dest)
			}
		}
		e.Close()
	}
}

// TestArchivesReadBySkopeo: a second, independent reader (Debian's
// skopeo, the containers/image library that CRI-O and podman use) finds
// in the OCI archive, under the version tag, the image with the digest the
// build reported, and in the docker-archive the same layers (which it
// names by their uncompressed digests, the config's diff IDs) under the
// full reference.
func TestArchivesReadBySkopeo(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("skopeo"); err != nil {
		t.Fatal("needs skopeo (apt-get install skopeo)")
	}
	res := firstBuild(t)
	inspect := func(ref string) (out struct {
		Digest string
		Layers []string
	}) {
		t.Helper()
		b, err := exec.Command("skopeo", "inspect", ref).CombinedOutput()
		if err != nil {
			t.Fatalf("skopeo inspect %s: %v: %s", ref, err, b)
		}
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("skopeo inspect %s: %v", ref, err)
		}
		return out
	}
	oci := inspect("oci-archive:" + res.OCIArchive + ":" + testVersion)
	if oci.Digest != res.Digest {
		t.Errorf("skopeo sees %s in the OCI archive, the build reported %s", oci.Digest, res.Digest)
	}
	img, _, err := readOCIArchive(res.OCIArchive, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	var diffIDs []string
	for _, d := range cf.RootFS.DiffIDs {
		diffIDs = append(diffIDs, d.String())
	}
	docker := inspect("docker-archive:" + res.DockerArchive + ":" + res.Ref)
	if strings.Join(docker.Layers, " ") != strings.Join(diffIDs, " ") || len(diffIDs) != 2 {
		t.Errorf("layers: docker-archive %v, the image's diff IDs %v, want the same two", docker.Layers, diffIDs)
	}
}
