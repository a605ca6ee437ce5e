package agent

import (
	"math"
	"runtime/debug"
	"testing"
)

// Without GOMEMLIMIT the agent sets its default soft limit; with it, the
// runtime's reading of the variable stands.
func TestSetMemoryLimit(t *testing.T) {
	was := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(was) })

	if got := setMemoryLimit(""); got != DefaultMemoryLimit || debug.SetMemoryLimit(-1) != DefaultMemoryLimit {
		t.Fatalf("no GOMEMLIMIT: limit %d (runtime %d), want %d", got, debug.SetMemoryLimit(-1), DefaultMemoryLimit)
	}
	debug.SetMemoryLimit(math.MaxInt64) // as GOMEMLIMIT=off leaves it
	if got := setMemoryLimit("off"); got != math.MaxInt64 || debug.SetMemoryLimit(-1) != math.MaxInt64 {
		t.Fatalf("GOMEMLIMIT=off: limit %d, want none", got)
	}
	if memoryLimitAttr(math.MaxInt64) != "none" || memoryLimitAttr(DefaultMemoryLimit) != "256 MiB" {
		t.Fatalf("memoryLimitAttr: %q, %q", memoryLimitAttr(math.MaxInt64), memoryLimitAttr(DefaultMemoryLimit))
	}
}
