package bench

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"time"

	"github.com/weftnet/weft/internal/backend/backends"
)

// Sections, in the order a run takes them.
const (
	SectionDataPath = "datapath"
	SectionJoin     = "join"
	SectionScale    = "scale"
	SectionChurn    = "churn"
	SectionRestart  = "restart"
	SectionRules    = "rules-resync"
)

// AllSections is every section, in run order.
var AllSections = []string{SectionDataPath, SectionJoin, SectionScale, SectionChurn, SectionRestart, SectionRules, SectionUDPFast}

// AllBackends are the backends the benchmarks run: every one of this
// build's. The data path also always runs the baseline, and by-hand VXLAN
// whenever vxlan is among them.
var AllBackends = backends.Names()

// Options configure one run; zero fields take the defaults of
// DefaultOptions.
type Options struct {
	Sections []string // subset of AllSections
	Backends []string // subset of AllBackends

	Rounds    int           // data path: rounds over all backends
	Transfer  time.Duration // data path: each iperf3 transfer
	PingCount int           // data path: pings per RTT sample, 10 ms apart
	// IPv6 adds the data path's IPv6 rows: baseline-v6 (IPv6 routes typed
	// by hand), host-gw-v6, vxlan-v6 and wireguard-v6, each in a dual-stack lab and
	// measured between the pods' IPv6 addresses.
	IPv6 bool

	Joins int // join: joins (and leaves) per backend

	Leases      []int         // scale: synthetic lease counts, ascending
	ScaleStarts int           // scale: agent starts per count and backend (medians are judged)
	ChurnLeases int           // churn: the standing set; default the largest of Leases
	ChurnRate   float64       // churn: adds per second, and as many deletes
	ChurnTime   time.Duration // churn: how long

	// Prefix starts the names of the labs the run builds (<prefix>base,
	// <prefix>hgw, ...); at most 7 characters.
	Prefix     string
	StateRoot  string // parent of the labs' state directories
	WeftBinary string // runs etcd and the agents; default this executable
	CNIBinDir  string // default as the lab's
	// LogDir, when set, receives a copy of every agent's log
	// (<lab prefix>-<host>.log) before its lab is torn down.
	LogDir string
	Out    io.Writer    // progress lines; nil discards
	Log    *slog.Logger // diagnostics; nil discards
}

// DefaultOptions are what `weft lab bench` runs without flags: about 15
// minutes on a 2-core machine.
func DefaultOptions() Options {
	return Options{
		Sections:    AllSections,
		Backends:    AllBackends,
		Rounds:      3,
		Transfer:    5 * time.Second,
		PingCount:   500,
		Joins:       50,
		Leases:      []int{1000, 5000},
		ScaleStarts: 3,
		ChurnRate:   100,
		ChurnTime:   30 * time.Second,
		Prefix:      "wb",
		StateRoot:   "/run/weft-lab",
	}
}

var prefixSyntax = regexp.MustCompile(`^[a-z][a-z0-9]{0,6}$`)

// resolve fills defaults and checks the options.
func (o Options) resolve() (Options, error) {
	d := DefaultOptions()
	if len(o.Sections) == 0 {
		o.Sections = d.Sections
	}
	if len(o.Backends) == 0 {
		o.Backends = d.Backends
	}
	if o.Rounds == 0 {
		o.Rounds = d.Rounds
	}
	if o.Transfer == 0 {
		o.Transfer = d.Transfer
	}
	if o.PingCount == 0 {
		o.PingCount = d.PingCount
	}
	if o.Joins == 0 {
		o.Joins = d.Joins
	}
	if len(o.Leases) == 0 {
		o.Leases = d.Leases
	}
	if o.ChurnRate == 0 {
		o.ChurnRate = d.ChurnRate
	}
	if o.ScaleStarts == 0 {
		o.ScaleStarts = d.ScaleStarts
	}
	if o.ChurnTime == 0 {
		o.ChurnTime = d.ChurnTime
	}
	if o.Prefix == "" {
		o.Prefix = d.Prefix
	}
	if o.StateRoot == "" {
		o.StateRoot = d.StateRoot
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	var errs []error
	for _, s := range o.Sections {
		if !slices.Contains(AllSections, s) {
			errs = append(errs, fmt.Errorf("unknown section %q (want some of %v)", s, AllSections))
		}
	}
	for _, b := range o.Backends {
		if !slices.Contains(AllBackends, b) {
			errs = append(errs, fmt.Errorf("unknown backend %q (want some of %v)", b, AllBackends))
		}
	}
	if o.Rounds < 1 || o.PingCount < 1 || o.Joins < 1 {
		errs = append(errs, errors.New("rounds, pings and joins must be at least 1"))
	}
	if o.Transfer < time.Second {
		errs = append(errs, fmt.Errorf("transfer time %v: iperf3 needs at least 1s", o.Transfer))
	}
	if !slices.IsSorted(o.Leases) || o.Leases[0] < 1 || o.Leases[len(o.Leases)-1] > maxSynthetic {
		errs = append(errs, fmt.Errorf("lease counts %v: want ascending counts from 1 to %d", o.Leases, maxSynthetic))
	}
	if o.ScaleStarts < 1 || o.ScaleStarts > 20 {
		errs = append(errs, fmt.Errorf("scale starts %d: want 1 to 20", o.ScaleStarts))
	}
	if o.ChurnLeases == 0 {
		o.ChurnLeases = o.Leases[len(o.Leases)-1]
	}
	if o.ChurnLeases < 1 || o.ChurnLeases > maxSynthetic {
		errs = append(errs, fmt.Errorf("churn leases %d: want 1 to %d", o.ChurnLeases, maxSynthetic))
	}
	if o.ChurnRate <= 0 || o.ChurnRate > 1000 || o.ChurnTime <= 0 {
		errs = append(errs, fmt.Errorf("churn %v/s for %v: want a rate up to 1000/s and a positive time", o.ChurnRate, o.ChurnTime))
	} else if adds := int(o.ChurnRate*o.ChurnTime.Seconds()) + 1; o.ChurnLeases+adds > maxSubnets {
		errs = append(errs, fmt.Errorf("churn of %d adds on %d leases: more than the scale lab's %d subnets", adds, o.ChurnLeases, maxSubnets))
	}
	if !prefixSyntax.MatchString(o.Prefix) {
		errs = append(errs, fmt.Errorf("prefix %q: want a lower-case letter then up to 6 letters or digits (lab names append up to 5)", o.Prefix))
	}
	return o, errors.Join(errs...)
}

// has reports whether the run includes section s.
func (o Options) has(s string) bool { return slices.Contains(o.Sections, s) }

// hasBackend reports whether the run includes backend b.
func (o Options) hasBackend(b string) bool { return slices.Contains(o.Backends, b) }

// maxSynthetic bounds the standing set of synthetic leases; maxSubnets
// bounds every synthetic lease of a scale lab, churn included: its network
// 100.64.0.0/10 holds 16383 leasable /24s (one is the agent's), and the
// synthetic hosts' public IPs come from 10.64.0.0/16.
const (
	maxSynthetic = 10000
	maxSubnets   = 16000
)
