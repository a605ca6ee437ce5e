package lab

import (
	"context"
	"io"
)

// FaultsMain runs `weft lab faults ARGS...`, the fault suite (package
// faults), which like the benchmarks is built on this package; the weft
// command sets it. Nil means this build has no fault suite.
var FaultsMain func(ctx context.Context, args []string, stdout, stderr io.Writer) error
