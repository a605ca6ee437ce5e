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
	Out  io.Writer // progress
	Log  *slog.Logger
}
