package main

import (
	"context"
	"io"
	"os"
	"slices"

	"github.com/weftnet/weft/internal/agent"
	"github.com/weftnet/weft/internal/configcmd"
)

// runConfig is `weft config put|get`.
func runConfig(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var backends []string
	for name := range agent.Backends() {
		backends = append(backends, name)
	}
	slices.Sort(backends)
	return configcmd.Main(ctx, args, configcmd.Env{
		Getenv:   os.Getenv,
		Stdin:    os.Stdin,
		Stdout:   stdout,
		Stderr:   stderr,
		Backends: backends,
	})
}
