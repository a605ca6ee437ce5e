package main

import (
	"io"
	"os"

	"github.com/weftnet/weft/internal/dockeropts"
)

// runDockerOpts is `weft docker-opts`, flannel's mk-docker-opts.sh.
func runDockerOpts(args []string, stdout, stderr io.Writer) int {
	return dockeropts.Main(args, os.Environ(), stdout, stderr)
}
