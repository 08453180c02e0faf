package translator

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
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
			if *update {
				if err := os.WriteFile(outPath, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			exp, err := os.ReadFile(outPath)
			if err != nil {
				t.Fatalf("%v (run go test ./translator -update)", err)
			}
			if string(exp) != string(got) {
				t.Errorf("%s differs from the translation (run go test ./translator -update and review the diff):\n%s", outPath, lineDiff(string(exp), string(got)))
			}
		})
	}
	outs, _ := filepath.Glob("testdata/*.out.yaml")
	for _, o := range outs {
		if want[o] {
			continue
		}
		if *update {
			_ = os.Remove(o)
		} else {
			t.Errorf("%s has no input: stale (run go test ./translator -update)", o)
		}
	}
}

// lineDiff shows the first differing lines, enough to find the change.
func lineDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < max(len(al), len(bl)); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			lo, hi := max(0, i-3), min(i+6, max(len(al), len(bl)))
			var sb strings.Builder
			for j := lo; j < hi; j++ {
				if j < len(al) {
					sb.WriteString("- " + al[j] + "\n")
				}
				if j < len(bl) {
					sb.WriteString("+ " + bl[j] + "\n")
				}
			}
			return sb.String()
		}
	}
	return ""
}
