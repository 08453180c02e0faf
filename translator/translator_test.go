package translator

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/crossgate-io/crossgate/internal/golden"
)

var update = flag.Bool("update", false, "rewrite the golden *.out.yaml files and delete stale ones")

// TestGolden translates every testdata/*.in.yaml and compares the Result with *.out.yaml.
func TestGolden(t *testing.T) {
	ins, err := filepath.Glob("testdata/*.in.yaml")
	if err != nil || len(ins) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	want := map[string]bool{}
	for _, inPath := range ins {
		outPath := strings.TrimSuffix(inPath, ".in.yaml") + ".out.yaml"
		want[outPath] = true
		t.Run(strings.TrimSuffix(filepath.Base(inPath), ".in.yaml"), func(t *testing.T) {
			raw, err := os.ReadFile(inPath)
			if err != nil {
				t.Fatal(err)
			}
			in, err := ParseInput(raw)
			if err != nil {
				t.Fatalf("%s: %v", inPath, err)
			}
			before, _ := yaml.Marshal(in)
			res := Translate(in)
			if err := invariants(res); err != nil {
				t.Fatal(err)
			}
			got, err := yaml.Marshal(res)
			if err != nil {
				t.Fatal(err)
			}
			if after, _ := yaml.Marshal(in); string(after) != string(before) {
				t.Fatal("Translate modified its input")
			}
			golden.Check(t, outPath, got, *update, "go test ./translator -update")
		})
	}
	outs, _ := filepath.Glob("testdata/*.out.yaml")
	golden.Stale(t, outs, want, *update, "go test ./translator -update")
}
