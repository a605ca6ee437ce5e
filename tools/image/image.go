package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// weftFiles are weft's programs in the image, built from this tree. The
// Dockerfile installs the same files at the same paths, built with the
// same tags (TestDockerfileInstallsTheSameFiles).
//
// One weft binary, built without the lab (-tags nolab), is the agent,
// the operator's tool and flanneld at once: the agent alone would be
// nearly as big (the same store clients, backends and rule code), so two
// binaries would carry it all twice, 10 MB more compressed.
var weftFiles = []struct{ pkg, tags, dest string }{
	{"./cmd/weft", "nolab", "/usr/local/bin/weft"},
	{"./cmd/weft-cni", "", "/opt/weft/cni/flannel"},
}

// weftLinks: the agent's name, which the manifest runs, and flannel's
// path, for manifests that call it. weft behaves as `weft agent` when
// invoked under either name.
var weftLinks = []struct{ link, target string }{
	{"/usr/local/bin/weft-agent", "/usr/local/bin/weft"},
	{"/opt/bin/flanneld", "/usr/local/bin/weft"},
}

var (
	entrypoint = []string{"/usr/local/bin/weft-agent"}
	defaultCmd = []string{"--kube-subnet-mgr"}
	pathEnv    = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

const versionVar = "github.com/weftnet/weft/internal/version.Version"

// buildWeft compiles weft's programs static (no cgo: the image's glibc
// is not the build host's), stripped, with the version stamped as the
// Makefile's weft target does.
func buildWeft(ctx context.Context, src, version string) (tree, error) {
	tmp, err := os.MkdirTemp("", "weft-image-bin-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	// The go that built this program (make image's $(GO)), else PATH's.
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = "go"
	}
	t := tree{}
	for _, f := range weftFiles {
		out := filepath.Join(tmp, filepath.Base(f.dest))
		args := []string{"build", "-trimpath"}
		if f.tags != "" {
			args = append(args, "-tags", f.tags)
		}
		args = append(args, "-ldflags", "-s -w -X "+versionVar+"="+version, "-o", out, f.pkg)
		cmd := exec.CommandContext(ctx, goBin, args...)
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build %s: %w: %s", f.pkg, err, b)
		}
		data, err := os.ReadFile(out)
		if err != nil {
			return nil, err
		}
		if err := t.add(f.dest, &node{typ: tar.TypeReg, mode: 0o755, data: data, from: f.pkg}); err != nil {
			return nil, err
		}
	}
	for _, l := range weftLinks {
		if err := t.add(l.link, &node{typ: tar.TypeSymlink, mode: 0o777, linkname: l.target, from: "weft's links"}); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// layer compresses a tree into an OCI layer. The gzip stream carries no
// name or time, so equal trees give equal digests. Gzip, not zstd: every
// runtime and registry takes it. The default level: the best one takes
// five times as long for 0.5% less on weft's binaries.
func layer(t tree, epoch time.Time) (v1.Layer, error) {
	var buf bytes.Buffer
	if err := t.writeTar(&buf, epoch); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithCompressionLevel(gzip.DefaultCompression), tarball.WithMediaType(types.OCILayer),
		// Compress once: the digest, the size and both archives all read it.
		tarball.WithCompressedCaching)
}

// assemble stacks the Debian layer and weft's layer (weft's changes with
// every commit, Debian's only when the package list or the mirror does,
// so nodes keep the base layer across upgrades) and writes the config:
// fixed creation time, no host name, the Dockerfile's ENTRYPOINT and CMD.
func assemble(base, weft tree, epoch time.Time, version string) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	created := v1.Time{Time: epoch}
	for _, l := range []struct {
		t  tree
		by string
	}{
		{base, "weft image builder: Debian packages " + strings.Join(rootPackages, " ") + " and their dependencies"},
		{weft, "weft image builder: weft " + version},
	} {
		ly, err := layer(l.t, epoch)
		if err != nil {
			return nil, err
		}
		img, err = mutate.Append(img, mutate.Addendum{Layer: ly, History: v1.History{Created: created, CreatedBy: l.by}})
		if err != nil {
			return nil, fmt.Errorf("add a layer: %w", err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture = runtime.GOARCH
	cf.OS = "linux"
	cf.Created = created
	cf.Config = v1.Config{
		Entrypoint: entrypoint,
		Cmd:        defaultCmd,
		Env:        []string{pathEnv},
		Labels: map[string]string{
			"org.opencontainers.image.source":   "https://github.com/weftnet/weft",
			"org.opencontainers.image.version":  version,
			"org.opencontainers.image.licenses": "Apache-2.0",
		},
	}
	return mutate.ConfigFile(img, cf)
}

// writeOCIArchive writes the image as an OCI image layout in a tar, named
// for containerd (io.containerd.image.name, the full reference: `ctr
// images import`) and for skopeo (org.opencontainers.image.ref.name, the
// tag: `skopeo copy oci-archive:FILE:TAG`).
func writeOCIArchive(out string, img v1.Image, ref name.Tag, epoch time.Time) error {
	dir, err := os.MkdirTemp("", "weft-image-layout-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("write the OCI layout: %w", err)
	}
	if err := p.AppendImage(img,
		layout.WithAnnotations(map[string]string{
			"io.containerd.image.name":          ref.Name(),
			"org.opencontainers.image.ref.name": ref.TagStr(),
		}),
		layout.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH})); err != nil {
		return fmt.Errorf("write the image into the OCI layout: %w", err)
	}
	return writeFileAtomic(out, func(w io.Writer) error { return tarDir(w, dir, epoch) })
}

// tarDir archives a directory tree (the OCI layout) with sorted entries,
// root ownership and the epoch as every time.
func tarDir(w io.Writer, dir string, epoch time.Time) error {
	var paths []string
	if err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			paths = append(paths, p)
		}
		return nil
	}); err != nil {
		return err
	}
	slices.Sort(paths)
	tw := tar.NewWriter(w)
	for _, p := range paths {
		rel, _ := filepath.Rel(dir, p)
		st, err := os.Lstat(p)
		if err != nil {
			return err
		}
		h := &tar.Header{Name: filepath.ToSlash(rel), ModTime: epoch, Format: tar.FormatPAX}
		if st.IsDir() {
			h.Typeflag, h.Name, h.Mode = tar.TypeDir, h.Name+"/", 0o755
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			continue
		}
		h.Typeflag, h.Mode, h.Size = tar.TypeReg, 0o644, st.Size()
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		_, err = io.Copy(tw, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("archive %s: %w", rel, err)
		}
	}
	return tw.Close()
}

// writeFileAtomic writes out through a temporary file in its directory and
// renames it, so that a failed build never leaves a truncated archive
// under the final name.
func writeFileAtomic(out string, write func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", out, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(f.Name(), out)
}
