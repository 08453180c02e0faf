package plan

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
	"github.com/crossgate-io/crossgate/internal/golden"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// goldenInput is a case: the members as the federation reads them.
type goldenInput struct {
	Sources []struct {
		Key     flomeshv1alpha1.ClusterKey `json:"key"`
		Gateway flomeshv1alpha1.Target     `json:"gateway"`
		// Known is true unless said otherwise.
		Known    *bool                           `json:"known,omitempty"`
		Services []corev1.Service                `json:"services,omitempty"`
		Exports  []flomeshv1alpha1.ServiceExport `json:"exports,omitempty"`
		Imports  []flomeshv1alpha1.ServiceImport `json:"imports,omitempty"`
	} `json:"sources"`
}

func (in *goldenInput) sources() []*Source {
	var out []*Source
	for i := range in.Sources {
		g := &in.Sources[i]
		s := &Source{Key: g.Key, Gateway: g.Gateway, Known: g.Known == nil || *g.Known, Services: map[types.NamespacedName]*corev1.Service{}}
		for j := range g.Services {
			svc := &g.Services[j]
			s.Services[types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}] = svc
		}
		for j := range g.Exports {
			s.Exports = append(s.Exports, &g.Exports[j])
		}
		for j := range g.Imports {
			s.Imports = append(s.Imports, &g.Imports[j])
		}
		out = append(out, s)
	}
	return out
}

// TestGolden: testdata/<case>.in.yaml (the members) -> <case>.out.yaml (the plan). The input is
// parsed strictly, must come out of Aggregate unchanged, and every output must be produced by a
// case.
func TestGolden(t *testing.T) {
	const how = "go test ./controllers/federation/plan -update"
	ins, err := filepath.Glob("testdata/*.in.yaml")
	if err != nil || len(ins) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	want := map[string]bool{}
	for _, in := range ins {
		name := strings.TrimSuffix(filepath.Base(in), ".in.yaml")
		outPath := filepath.Join("testdata", name+".out.yaml")
		want[outPath] = true
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			var input goldenInput
			if err := yaml.UnmarshalStrict(raw, &input); err != nil {
				t.Fatalf("%s: %v", in, err)
			}
			sources := input.sources()
			var before goldenInput
			if err := yaml.UnmarshalStrict(raw, &before); err != nil {
				t.Fatal(err)
			}
			p := Aggregate(sources)
			if !reflect.DeepEqual(input, before) {
				t.Error("Aggregate changed its input")
			}
			got, err := yaml.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			again, _ := yaml.Marshal(Aggregate(input.sources()))
			if string(again) != string(got) {
				t.Error("Aggregate is not deterministic: two runs over the same input differ")
			}
			golden.Check(t, outPath, got, *update, how)
		})
	}
	outs, _ := filepath.Glob("testdata/*.out.yaml")
	golden.Stale(t, outs, want, *update, how)
}
