package lab

import (
	"context"
	"io"
)

// BenchMain runs `weft lab bench ARGS...`. The benchmarks (package bench)
// are built on this package's exported API, so this package cannot import
// them; the weft command sets BenchMain to bench.Main. Nil means this
// build has no benchmarks.
var BenchMain func(ctx context.Context, args []string, stdout, stderr io.Writer) error
