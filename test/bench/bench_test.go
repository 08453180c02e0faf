//go:build integration

package bench

import (
	"os"
	"testing"
	"time"

	"github.com/crossgate-io/crossgate/test/internal/sbtest"
)

// full reports whether `make bench` asked for the full-size runs.
func full() bool { return os.Getenv("CROSSGATE_BENCH") == "full" }

// report logs each line, and prints it for `make bench` at full size.
func report(t *testing.T, lines ...*Line) {
	t.Helper()
	for _, l := range lines {
		t.Log(l)
		if full() {
			os.Stdout.WriteString(l.String() + "\n")
		}
	}
}

func TestB1(t *testing.T) {
	size, samples := Small, 3
	if full() {
		size, samples = Full, 5
	}
	for _, permissive := range []bool{false, true} {
		size.Permissive = permissive
		l, m, err := RunB1(size, samples, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		report(t, l)
		if m == nil { // a timeout: reported as one
			if !full() {
				t.Errorf("B1 at the small size timed out")
			}
			continue
		}
		if len(m.Resources) == 0 {
			t.Fatal("B1 produced no resource")
		}
	}
}

func TestB2(t *testing.T) {
	size, samples := Small, 200
	if full() {
		size, samples = Full, 2000
	}
	for _, permissive := range []bool{true, false} {
		size.Permissive = permissive
		l, err := RunB2(size, samples)
		if err != nil {
			t.Fatal(err)
		}
		report(t, l)
	}
}

func TestB2e(t *testing.T) {
	size, changes, batch := Small, 5, 5
	if full() {
		size, changes, batch = Full, 200, 50
	}
	lines, err := RunB2e(size, changes, batch)
	if err != nil {
		t.Fatal(err)
	}
	report(t, lines...)
}

func TestB5(t *testing.T) {
	type run struct {
		routes int
		d      time.Duration
	}
	runs := []run{{1000, time.Minute}}
	if full() {
		runs = []run{{1000, 3 * time.Minute}, {5000, 10 * time.Minute}}
	}
	for _, r := range runs {
		l, err := RunB5(r.routes, 10, r.d)
		if err != nil {
			t.Fatal(err)
		}
		report(t, l)
	}
}

func TestB3(t *testing.T) {
	s := SmallFanOut
	if full() {
		s = FullFanOut
	}
	ours, stock, ours10, stock10, err := RunB3(s)
	if err != nil {
		t.Fatal(err)
	}
	report(t, append([]*Line{ours, stock}, append(ours10, stock10...)...)...)
	if b := ours.Params["max_bytes_per_client_per_change"].(int); b > 2048 {
		t.Errorf("a one-resource change cost %d bytes per client, want at most 2 KiB", b)
	}
	if b := ours10[0].Params["max_bytes_per_client"].(int); b > 2048 {
		t.Errorf("reconnecting after a restart with one resource changed cost %d bytes per client, want at most 2 KiB (only the changed resource)", b)
	}
}

// TestB3ClientProcess is B3's client fleet when the test binary is run as a second process.
func TestB3ClientProcess(t *testing.T) {
	spec := os.Getenv(ClientEnv)
	if spec == "" {
		t.Skip("B3's client process only")
	}
	if err := clientProcess(spec, os.Stdout, os.Stdin); err != nil {
		t.Fatal(err)
	}
}

func TestB4(t *testing.T) {
	clients, edits := 100, 10
	if full() {
		edits = 50
	}
	lines, err := RunB4(clients, edits, 0)
	if err != nil {
		t.Fatal(err)
	}
	report(t, lines...)
}

func TestB9(t *testing.T) {
	exports := 5
	if full() {
		exports = 50
	}
	lines, err := RunB9(exports)
	if err != nil {
		t.Fatal(err)
	}
	report(t, lines...)
}

func TestB6(t *testing.T) {
	slices := 1000
	if full() {
		slices = 10000
	}
	l, err := RunB6(slices)
	if err != nil {
		t.Fatal(err)
	}
	report(t, l)
}

// TestB0 is the sandbox's start: etcd and four kube-apiservers with crossgate's CRDs served
// (what TestFourClustersStart asserted as a duration before; a figure belongs here).
func TestB0(t *testing.T) {
	runs := 1
	if full() {
		runs = 3
	}
	var samples []time.Duration
	for range runs {
		s := sbtest.Start(t, "control-plane", "cluster-1", "cluster-2", "cluster-3")
		samples = append(samples, s.StartupTime())
		s.Stop()
	}
	l := &Line{Name: "B0 sandbox start (4 API servers, CRDs served)", Params: map[string]any{"runs": runs, "clusters": 4}}
	l.percentiles(samples)
	report(t, l)
}
