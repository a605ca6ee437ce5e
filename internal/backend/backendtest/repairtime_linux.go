package backendtest

import (
	"slices"
	"testing"
	"time"
)

// RepairTimes measures how long a running backend takes to repair one
// kernel entry that was made wrong: tries times, breakIt makes the entry
// wrong (through netlink, from the test's process, so that no command's
// start-up is measured), and the time until events reports it back as
// planned is taken, from just before breakIt. events is a kernel
// subscription the test made before; wrong says whether an event shows
// the entry as breakIt left it, planned whether it shows it as the plan
// has it. A try fails the test when the entry is not back within 2 s.
func RepairTimes[E any](t testing.TB, tries int, events <-chan E, breakIt func() error, wrong, planned func(E) bool) []time.Duration {
	t.Helper()
	var took []time.Duration
	for i := range tries {
		start := time.Now()
		if err := breakIt(); err != nil {
			t.Fatalf("try %d: break the entry: %v", i, err)
		}
		deadline := time.After(2 * time.Second)
		// The entry's own events come in order: first the wrong entry,
		// then the repaired one. Waiting for both keeps a late echo of the
		// previous try's repair from ending this one.
		seenWrong := false
		for done := false; !done; {
			select {
			case e, ok := <-events:
				if !ok {
					t.Fatalf("try %d: the subscription ended", i)
				}
				switch {
				case !seenWrong:
					seenWrong = wrong(e)
				case planned(e):
					took = append(took, time.Since(start))
					done = true
				}
			case <-deadline:
				t.Fatalf("try %d: not repaired within 2s (the wrong entry seen: %v)", i, seenWrong)
			}
		}
	}
	return took
}

// Median is the median of ds (the upper one of an even count); 0 for none.
func Median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
