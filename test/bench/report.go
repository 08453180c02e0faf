package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Line is one benchmark's JSON line (shared/reference/performance.md).
type Line struct {
	Name         string            `json:"name"`
	Params       map[string]any    `json:"params"`
	P50          float64           `json:"p50"`
	P90          float64           `json:"p90"`
	P99          float64           `json:"p99"`
	Max          float64           `json:"max"`
	CoreS        float64           `json:"core_s"`
	HeapInuseMiB float64           `json:"heap_inuse_mib"`
	RSSMiB       float64           `json:"rss_mib"`
	Env          map[string]string `json:"env"`
}

// percentiles fills p50..max, in milliseconds, from samples.
func (l *Line) percentiles(samples []time.Duration) {
	s := slices.Clone(samples)
	slices.Sort(s)
	at := func(q float64) float64 {
		i := int(q*float64(len(s)-1) + 0.5)
		return float64(s[i].Nanoseconds()) / 1e6
	}
	l.P50, l.P90, l.P99, l.Max = at(0.5), at(0.9), at(0.99), at(1)
}

func (l *Line) String() string {
	l.Env = env()
	b, _ := json.Marshal(l)
	return string(b)
}

func env() map[string]string {
	return map[string]string{
		"GOMAXPROCS": fmt.Sprint(runtime.GOMAXPROCS(0)),
		"cpu":        cpuModel(),
		"go":         runtime.Version(),
		"tags":       buildTags,
	}
}

// buildTags is set by files with build constraints (for example vtprotobuf).
var buildTags = ""

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

// cpuSeconds is the process's user+system CPU time so far.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// heapInuseMiB is the live heap after a full collection.
func heapInuseMiB() float64 { return heapBytes() / (1 << 20) }

// rssMiB is the process's resident set now.
func rssMiB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			var kb float64
			fmt.Sscanf(strings.TrimSpace(v), "%f", &kb)
			return kb / 1024
		}
	}
	return 0
}
