//go:build !nolab

package main

import (
	"context"
	"errors"
	"io"
	"os/exec"

	"github.com/weftnet/weft/internal/bench"
	"github.com/weftnet/weft/internal/cmdline"
	"github.com/weftnet/weft/internal/faults"
	"github.com/weftnet/weft/internal/lab"
)

// The lab is in every build but -tags nolab's: it brings an embedded etcd
// server, a Kubernetes control plane driver and the benchmarks, which
// roughly double the binary and which no node runs.
func init() { labCommand = runLab }

func runLab(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	// The benchmarks build on the lab, so the lab cannot import them.
	lab.BenchMain = bench.Main
	lab.FaultsMain = faults.Main
	err := lab.Main(ctx, args, stdout, stderr)
	// `weft lab exec h1 -- CMD` exits with CMD's status, as
	// `ip netns exec` does.
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() > 0 {
		return exit.ExitCode()
	}
	return cmdline.Exit("weft lab", err, stderr)
}
