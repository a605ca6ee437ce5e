package bench

import (
	"math"
	"testing"
)

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{5, 5, 1, 9, 7}, 5},
	} {
		in := append([]float64(nil), c.in...)
		if got := Median(c.in); got != c.want {
			t.Errorf("Median(%v) = %v, want %v", c.in, got, c.want)
		}
		for i := range in {
			if in[i] != c.in[i] {
				t.Fatalf("Median reordered its input: %v, was %v", c.in, in)
			}
		}
	}
	if !math.IsNaN(Median(nil)) {
		t.Error("Median of nothing is not NaN")
	}
}

func TestPercentileNearestRank(t *testing.T) {
	xs := make([]float64, 100)
	for i := range xs {
		xs[i] = float64(100 - i) // 100..1, unsorted
	}
	for _, c := range []struct{ p, want float64 }{{50, 50}, {90, 90}, {99, 99}, {100, 100}, {1, 1}, {0.1, 1}} {
		if got := Percentile(xs, c.p); got != c.want {
			t.Errorf("p%v of 1..100 = %v, want %v", c.p, got, c.want)
		}
	}
	// p99 of 50 samples is the largest: nearest rank never interpolates.
	few := make([]float64, 50)
	for i := range few {
		few[i] = float64(i)
	}
	if got := Percentile(few, 99); got != 49 {
		t.Errorf("p99 of 0..49 = %v, want 49", got)
	}
	if got := Percentile([]float64{7}, 50); got != 7 {
		t.Errorf("p50 of one sample = %v", got)
	}
	if !math.IsNaN(Percentile(nil, 50)) {
		t.Error("Percentile of nothing is not NaN")
	}
}

func TestSummarize(t *testing.T) {
	d := Summarize([]float64{4, 1, 3, 2, 10})
	want := Dist{N: 5, Min: 1, P50: 3, P90: 10, P99: 10, Max: 10}
	if d != want {
		t.Errorf("Summarize = %+v, want %+v", d, want)
	}
	if (Summarize(nil) != Dist{}) {
		t.Error("Summarize of nothing is not the zero Dist")
	}
}

func TestRatio(t *testing.T) {
	if got := Ratio(9.8, 10); math.Abs(got-0.98) > 1e-12 {
		t.Errorf("Ratio(9.8, 10) = %v", got)
	}
	for _, c := range [][2]float64{{0, 1}, {1, 0}, {-1, 2}, {math.NaN(), 1}, {math.Inf(1), 1}} {
		if !math.IsNaN(Ratio(c[0], c[1])) {
			t.Errorf("Ratio(%v, %v) = %v, want NaN", c[0], c[1], Ratio(c[0], c[1]))
		}
	}
}

func TestMedianOfSkipsMissing(t *testing.T) {
	if got := MedianOf([]Num{NaN, 2, 4, NaN}); got != 3 {
		t.Errorf("MedianOf = %v, want 3", got)
	}
	if MedianOf([]Num{NaN}).OK() {
		t.Error("MedianOf only missing values is not missing")
	}
}
