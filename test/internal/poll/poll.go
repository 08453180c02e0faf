// Package poll is the tests' one way to wait for a condition.
package poll

import (
	"testing"
	"time"
)

// Interval is how often Eventually checks.
const Interval = 20 * time.Millisecond

// Eventually calls cond every Interval until it returns nil, then logs how long that took and
// returns it; when within has passed first, it fails the test with what and cond's last error.
// within is a margin that must hold on a loaded machine, not a measurement: timings belong in
// `make bench`.
func Eventually(t testing.TB, within time.Duration, what string, cond func() error) time.Duration {
	t.Helper()
	start := time.Now()
	var err error
	for time.Since(start) < within {
		if err = cond(); err == nil {
			took := time.Since(start)
			t.Logf("%s after %v", what, took.Round(time.Millisecond))
			return took
		}
		time.Sleep(Interval)
	}
	t.Fatalf("%s: not within %v: %v", what, within, err)
	return 0
}
