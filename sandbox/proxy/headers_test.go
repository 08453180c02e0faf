package proxy

import (
	"net/http"
	"reflect"
	"testing"

	"github.com/crossgate-io/crossgate/xds/simulate"
)

// The stand-in changes real headers as the model changes its map: removals first, then each
// addition appended (a value more) or replacing the values, or only where absent or present.
func TestApplyHeaders(t *testing.T) {
	h := http.Header{"X-Add": {"first"}, "X-Set": {"a", "b"}, "X-Remove": {"gone"}, "X-Only": {"kept"}}
	applyHeaders(h, simulate.HeaderOps{
		Remove: []string{"x-remove"},
		Add: []simulate.HeaderAdd{
			{Name: "x-add", Value: "second", Append: true},
			{Name: "x-set", Value: "set"},
			{Name: "x-only", Value: "not added", IfAbsent: true},
			{Name: "x-new", Value: "not set", IfPresent: true},
		},
	})
	want := http.Header{"X-Add": {"first", "second"}, "X-Set": {"set"}, "X-Only": {"kept"}}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("headers %v, want %v", h, want)
	}
}
