// Package parallel runs independent pieces of one computation on every core Go uses.
package parallel

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// Do runs f(0) ... f(n-1) on as many goroutines as Go runs at once (one: in order, on the
// caller's), and returns when all have returned. The calls must not depend on each other.
func Do(n int, f func(i int)) {
	workers := min(n, runtime.GOMAXPROCS(0))
	if workers <= 1 {
		for i := range n {
			f(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				f(i)
			}
		})
	}
	wg.Wait()
}
