// Package debounce coalesces bursts of changes into one run of a function: the one debounce of
// crossgate, used by the member's translate-and-publish loop and the federation's aggregation.
package debounce

import (
	"sync"
	"time"
)

// Debouncer coalesces bursts of changes: after Trigger, fn runs once no further Trigger has come
// for the quiet period, or once maxDelay has passed since the first Trigger of the burst,
// whichever is first, so a steady stream of changes still publishes at least every maxDelay.
// fn never runs concurrently with itself.
type Debouncer struct {
	quiet, maxDelay time.Duration
	fn              func()
	trigger         chan struct{}
	stop            chan struct{}
	done            chan struct{}
	once            sync.Once
}

// New starts a debouncer; Stop ends it.
func New(quiet, maxDelay time.Duration, fn func()) *Debouncer {
	d := &Debouncer{quiet: quiet, maxDelay: maxDelay, fn: fn, trigger: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go d.loop()
	return d
}

// Trigger records a change. It never blocks.
func (d *Debouncer) Trigger() {
	select {
	case d.trigger <- struct{}{}:
	default: // a trigger is already pending
	}
}

// Stop ends the debouncer; a pending change is published first.
func (d *Debouncer) Stop() {
	d.once.Do(func() { close(d.stop) })
	<-d.done
}

func (d *Debouncer) loop() {
	defer close(d.done)
	var quiet, deadline <-chan time.Time
	pending := false
	fire := func() {
		pending, quiet, deadline = false, nil, nil
		d.fn()
	}
	for {
		select {
		case <-d.trigger:
			if !pending {
				pending = true
				deadline = time.After(d.maxDelay)
			}
			quiet = time.After(d.quiet)
		case <-quiet:
			fire()
		case <-deadline:
			fire()
		case <-d.stop:
			select {
			case <-d.trigger: // a trigger that raced with Stop
				pending = true
			default:
			}
			if pending {
				fire()
			}
			return
		}
	}
}
