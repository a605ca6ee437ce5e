package bench

import (
	"math"
	"slices"
)

// Median is the middle value of xs (the mean of the two middle values for
// an even count); NaN for no values. xs is not modified.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Percentile is the nearest-rank p-th percentile of xs (0 < p <= 100): the
// smallest value such that at least p % of the values are at most it. It is
// always one of the measured values, so p99 of 50 samples is the maximum,
// which is what a p99 over few samples honestly is. NaN for no values.
func Percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	rank = min(max(rank, 1), len(s))
	return s[rank-1]
}

// Dist summarises a set of samples.
type Dist struct {
	N   int     `json:"n"`
	Min float64 `json:"min"`
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// Summarize computes the distribution of xs; the zero Dist for no values.
func Summarize(xs []float64) Dist {
	if len(xs) == 0 {
		return Dist{}
	}
	return Dist{
		N:   len(xs),
		Min: slices.Min(xs),
		P50: Percentile(xs, 50),
		P90: Percentile(xs, 90),
		P99: Percentile(xs, 99),
		Max: slices.Max(xs),
	}
}

// Ratio is a/b, or NaN when either is not a positive number (a backend that
// moved nothing has no meaningful ratio, and JSON cannot hold Inf).
func Ratio(a, b float64) float64 {
	if !(a > 0) || !(b > 0) || math.IsInf(a, 0) || math.IsInf(b, 0) {
		return math.NaN()
	}
	return a / b
}
