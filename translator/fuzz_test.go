package translator

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzTranslate feeds mutated golden inputs to Translate: it must not panic, and its Result
// must keep the invariants. Run longer with go test ./translator -fuzz FuzzTranslate.
func FuzzTranslate(f *testing.F) {
	ins, _ := filepath.Glob("testdata/*.in.yaml")
	for _, p := range ins {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		in, err := ParseInput(b)
		if err != nil {
			return
		}
		if err := invariants(Translate(in)); err != nil {
			t.Fatal(err)
		}
	})
}
