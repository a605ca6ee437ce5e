// Command weft-image builds weft's container image without a Docker
// daemon or a registry (make image; docs/image.md): weft's programs built
// static from the source tree, on a root file system unpacked from
// Debian's packages (through the host's apt, cached), assembled with
// go-containerregistry into an OCI archive and a docker-archive, both
// reproducible: one commit, one digest.
//
//	weft-image build [-src DIR] [-out DIR] [-version V] ...
//	weft-image unpack -oci FILE -dir DIR
//	weft-image testpod -src DIR -out FILE   the real-node test's pod image
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: weft-image build|unpack|testpod [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "build":
		err = buildCmd(log, os.Args[2:])
	case "unpack":
		err = unpackCmd(os.Args[2:])
	case "testpod":
		err = testpodCmd(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q: want build, unpack or testpod", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "weft-image:", err)
		os.Exit(1)
	}
}

// buildOptions are build's inputs; everything else is fixed by the tree.
type buildOptions struct {
	Src, Out        string // weft's source tree; where the archives go
	Version, Repo   string // the tag is the version
	DebsCache       string
	RefreshDebs     bool
	Epoch           time.Time // every time in the image
	NoDockerArchive bool
}

// buildResult says what a build wrote.
type buildResult struct {
	Ref            string // repository:version
	Digest         string // the image manifest's digest
	OCIArchive     string
	DockerArchive  string
	Manifest       string  // the rendered kube-weft.yml
	LayerSizes     []int64 // compressed, base first
	CompressedSize int64
}

func buildCmd(log *slog.Logger, args []string) error {
	fs := flag.NewFlagSet("build", flag.ContinueOnError)
	var o buildOptions
	fs.StringVar(&o.Src, "src", "../..", "weft's source tree")
	fs.StringVar(&o.Out, "out", "", "output directory (default SRC/bin)")
	fs.StringVar(&o.Version, "version", "", "image tag and weft's version (default: git describe --tags --always --dirty)")
	fs.StringVar(&o.Repo, "repo", "ghcr.io/weftnet/weft", "image repository")
	fs.StringVar(&o.DebsCache, "debs-cache", "/var/cache/weft/debs", "where downloaded Debian packages are kept, by release and package list")
	fs.BoolVar(&o.RefreshDebs, "refresh-debs", false, "resolve and download the Debian packages again (security updates) instead of using the cache")
	fs.BoolVar(&o.NoDockerArchive, "no-docker-archive", false, "write only the OCI archive")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if o.Src, err = filepath.Abs(o.Src); err != nil {
		return err
	}
	if o.Out == "" {
		o.Out = filepath.Join(o.Src, "bin")
	}
	if o.Version == "" {
		out, err := run(context.Background(), o.Src, "git", "describe", "--tags", "--always", "--dirty")
		if err != nil {
			return fmt.Errorf("find the version (or pass -version): %w", err)
		}
		o.Version = strings.TrimSpace(string(out))
	}
	if o.Epoch, err = sourceDateEpoch(o.Src); err != nil {
		return err
	}
	start := time.Now()
	res, err := build(context.Background(), log, o)
	if err != nil {
		return err
	}
	log.Info("built the weft image", "ref", res.Ref, "digest", res.Digest,
		"compressed_bytes", res.CompressedSize, "layers", res.LayerSizes,
		"oci_archive", res.OCIArchive, "docker_archive", res.DockerArchive, "manifest", res.Manifest,
		"took", time.Since(start).Round(time.Millisecond))
	return nil
}

// sourceDateEpoch is SOURCE_DATE_EPOCH when set, else the time of the
// source tree's HEAD commit: the same for every build of one commit.
func sourceDateEpoch(src string) (time.Time, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		out, err := run(context.Background(), src, "git", "log", "-1", "--format=%ct")
		if err != nil {
			return time.Time{}, fmt.Errorf("find the commit time for the image's file times (or set SOURCE_DATE_EPOCH): %w", err)
		}
		s = strings.TrimSpace(string(out))
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: not seconds since 1970: %w", s, err)
	}
	return time.Unix(n, 0).UTC(), nil
}

func build(ctx context.Context, log *slog.Logger, o buildOptions) (*buildResult, error) {
	ref, err := name.NewTag(o.Repo + ":" + o.Version)
	if err != nil {
		return nil, fmt.Errorf("image reference from -repo %q and -version %q: %w", o.Repo, o.Version, err)
	}
	if o.Version == "latest" {
		return nil, fmt.Errorf("-version latest: the tag is weft's version, so that a manifest names one build")
	}
	manifestSrc := filepath.Join(o.Src, "deploy", "kube-weft.yml")
	src, err := os.ReadFile(manifestSrc)
	if err != nil {
		return nil, err
	}
	rendered, err := renderManifest(src, manifestSrc, ref.Name())
	if err != nil {
		return nil, err
	}
	dir, debs, err := fetchDebs(ctx, log, o.DebsCache, o.RefreshDebs)
	if err != nil {
		return nil, err
	}
	base, err := baseTree(ctx, dir, debs)
	if err != nil {
		return nil, err
	}
	weft, err := buildWeft(ctx, o.Src, o.Version)
	if err != nil {
		return nil, err
	}
	img, err := assemble(base, weft, o.Epoch, o.Version)
	if err != nil {
		return nil, err
	}
	digest, err := img.Digest()
	if err != nil {
		return nil, err
	}
	res := &buildResult{
		Ref:        ref.Name(),
		Digest:     digest.String(),
		OCIArchive: filepath.Join(o.Out, "weft-image.oci.tar"),
		Manifest:   filepath.Join(o.Out, "kube-weft.yml"),
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	for _, l := range layers {
		n, err := l.Size()
		if err != nil {
			return nil, err
		}
		res.LayerSizes = append(res.LayerSizes, n)
		res.CompressedSize += n
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}
	if err := writeOCIArchive(res.OCIArchive, img, ref, o.Epoch); err != nil {
		return nil, err
	}
	if !o.NoDockerArchive {
		res.DockerArchive = filepath.Join(o.Out, "weft-image.docker.tar")
		if err := writeFileAtomic(res.DockerArchive, func(w io.Writer) error { return tarball.Write(ref, img, w) }); err != nil {
			return nil, err
		}
	}
	if err := writeFileAtomic(res.Manifest, func(w io.Writer) error { _, err := w.Write(rendered); return err }); err != nil {
		return nil, err
	}
	return res, nil
}

func unpackCmd(args []string) error {
	fs := flag.NewFlagSet("unpack", flag.ContinueOnError)
	archive := fs.String("oci", "", "OCI archive (bin/weft-image.oci.tar)")
	dir := fs.String("dir", "", "directory to unpack the image's file system into")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *archive == "" || *dir == "" {
		return fmt.Errorf("unpack needs -oci and -dir")
	}
	tmp, err := os.MkdirTemp("", "weft-image-unpack-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	img, _, err := readOCIArchive(*archive, tmp)
	if err != nil {
		return err
	}
	return unpackImage(img, *dir)
}
