package main

import (
	"archive/tar"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// testpodRef names the real-node test's pod image: a reserved domain, so
// no runtime could ever find it in a registry; the nodes import it.
const testpodRef = "weft.invalid/testpod:1"

// testpodCmd builds the real-node test's pod image (make test-cluster):
// test/kube/testpod alone, one layer, /testpod pause as its entrypoint,
// so it is both containerd's sandbox (pause) image and, with `echo`, the
// test workload. Same tree, layer and archive code as the weft image.
func testpodCmd(args []string) error {
	fs := flag.NewFlagSet("testpod", flag.ContinueOnError)
	src := fs.String("src", "../..", "weft's source tree")
	out := fs.String("out", "", "the OCI archive to write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return fmt.Errorf("testpod: -out FILE is required")
	}
	epoch, err := sourceDateEpoch(*src)
	if err != nil {
		return err
	}
	ref, err := name.NewTag(testpodRef)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "weft-testpod-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "testpod")
	cmd := exec.CommandContext(context.Background(), "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./test/kube/testpod")
	cmd.Dir = *src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build ./test/kube/testpod: %w: %s", err, b)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	t := tree{}
	if err := t.add("/testpod", &node{typ: tar.TypeReg, mode: 0o755, data: data, from: "./test/kube/testpod"}); err != nil {
		return err
	}
	ly, err := layer(t, epoch)
	if err != nil {
		return err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	if img, err = mutate.Append(img, mutate.Addendum{Layer: ly}); err != nil {
		return fmt.Errorf("add the testpod layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.Architecture = runtime.GOARCH
	cf.OS = "linux"
	cf.Created = v1.Time{Time: epoch}
	cf.Config = v1.Config{Entrypoint: []string{"/testpod", "pause"}}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		return err
	}
	return writeOCIArchive(*out, img, ref, epoch)
}
