package faults

import (
	"io"
	"log/slog"
	"time"
)

// Options configure a run of the suite.
type Options struct {
	Prefix     string // start of the labs' prefixes
	StateRoot  string
	WeftBinary string
	CNIBinDir  string
	// EtcdBlock is how long the etcd-blocked row keeps etcd unreachable.
	EtcdBlock time.Duration
	// Only selects rows whose ID contains one of these; empty: all.
	Only []string
	// Gaps are the rows whose failure does not fail the suite, by ID,
	// with the reason (see KnownGaps).
	Gaps map[string]string
	// RepairGoal, when longer than a row's goal, replaces it: the CI
	// test holds rows to "repaired" rather than to how fast on a shared
	// machine, while make faults measures against the real goal.
	RepairGoal time.Duration
	Out        io.Writer // progress
	Log        *slog.Logger
}
