package main

import (
	"context"
	"io"
	"os"

	"github.com/weftnet/weft/internal/configcmd"
)

// runConfig is `weft config put|get`.
func runConfig(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return configcmd.Main(ctx, args, configcmd.Env{
		Getenv: os.Getenv,
		Stdin:  os.Stdin,
		Stdout: stdout,
		Stderr: stderr,
	})
}
