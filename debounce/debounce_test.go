package debounce

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestDebouncer(t *testing.T) {
	var mu sync.Mutex
	var calls []time.Time
	var running atomic.Int32
	d := New(20*time.Millisecond, 100*time.Millisecond, func() {
		if running.Add(1) > 1 {
			t.Error("fn ran concurrently")
		}
		mu.Lock()
		calls = append(calls, time.Now())
		mu.Unlock()
		running.Add(-1)
	})
	defer d.Stop()

	// One change is published after the quiet period.
	start := time.Now()
	d.Trigger()
	time.Sleep(80 * time.Millisecond)
	mu.Lock()
	if len(calls) != 1 || calls[0].Sub(start) < 20*time.Millisecond || calls[0].Sub(start) > 60*time.Millisecond {
		t.Errorf("one trigger: %d calls %v, want one after about 20ms", len(calls), calls)
	}
	calls = nil
	mu.Unlock()

	// A steady stream (every 5ms for 330ms) still publishes every 100ms at most, then once more
	// after it ends.
	start = time.Now()
	for time.Since(start) < 330*time.Millisecond {
		d.Trigger()
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(60 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(calls) < 3 || len(calls) > 6 {
		t.Fatalf("a 330ms stream gave %d publications, want 3 to 6 (every 100ms, then once at the end)", len(calls))
	}
	for i := 1; i < len(calls)-1; i++ {
		if gap := calls[i].Sub(calls[i-1]); gap > 160*time.Millisecond {
			t.Errorf("publications %d and %d are %s apart, more than the maximum delay", i-1, i, gap)
		}
	}
}

func TestDebouncerStopPublishesPending(t *testing.T) {
	var n atomic.Int32
	d := New(time.Hour, time.Hour, func() { n.Add(1) })
	d.Trigger()
	d.Stop()
	if n.Load() != 1 {
		t.Errorf("Stop with a pending change published %d times, want 1", n.Load())
	}
}
