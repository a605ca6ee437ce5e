package agent

import (
	"math"
	"runtime/debug"
	"strconv"
)

// DefaultMemoryLimit is the agent's soft memory limit (runtime/debug
// SetMemoryLimit) unless GOMEMLIMIT sets one. The wireguard backend's
// wireguard-go keeps every packet in flight in a 64 KiB buffer of its own
// pools, which it does not bound (a build-time constant), so a TCP window's
// worth of 1.4 KB packets pins some 45 times its size and the heap grew to
// 400-700 MiB under one iperf3 stream (docs/benchmarks.md). Near the limit
// the runtime collects more often and hands freed pages back sooner; it is
// soft, so a live heap above it is never refused, only collected harder.
// The other backends stay far below it (30-50 MiB at 5000 peers).
const DefaultMemoryLimit = 256 << 20

// setMemoryLimit applies DefaultMemoryLimit unless the environment's
// GOMEMLIMIT (env, "" when unset) already set a limit, including "off";
// it returns the limit in force (math.MaxInt64 for none).
func setMemoryLimit(env string) int64 {
	if env != "" {
		return debug.SetMemoryLimit(-1)
	}
	debug.SetMemoryLimit(DefaultMemoryLimit)
	return DefaultMemoryLimit
}

// memoryLimitAttr is the limit for the start log line.
func memoryLimitAttr(limit int64) string {
	if limit == math.MaxInt64 {
		return "none"
	}
	return strconv.FormatInt(limit>>20, 10) + " MiB"
}
