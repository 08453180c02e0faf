// Package golden is the one golden-file helper of crossgate's test layers (translator's
// *.out.yaml, xds/translate's testdata/<case>/<type>.yaml). It lives under the module's internal/
// rather than test/internal: Go lets only packages below test/ import test/internal, and the
// golden tests belong to the translating packages themselves.
package golden

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Check compares got with the golden file at path. With update it writes got (creating the
// directory); otherwise a missing or different file fails t with a line diff and the command
// that rewrites the goldens (how).
func Check(t testing.TB, path string, got []byte, update bool, how string) {
	t.Helper()
	if update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	exp, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run %s)", err, how)
	}
	if string(exp) != string(got) {
		t.Errorf("%s differs (run %s and review the diff):\n%s", path, how, LineDiff(string(exp), string(got)))
	}
}

// Stale fails t for every file of existing that no case produced (produced[file] false); with
// update it deletes them instead (and their directory, once empty).
func Stale(t testing.TB, existing []string, produced map[string]bool, update bool, how string) {
	t.Helper()
	for _, f := range existing {
		if produced[f] {
			continue
		}
		if update {
			_ = os.Remove(f)
			_ = os.Remove(filepath.Dir(f)) // only succeeds once empty
		} else {
			t.Errorf("%s is stale: no case produces it (run %s)", f, how)
		}
	}
}

// LineDiff shows the first differing lines of a and b with some context, enough to find the
// change ("-" a, "+" b); empty when they are equal.
func LineDiff(a, b string) string {
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
