package translate_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/crossgate-io/crossgate/translator/ir"
	"github.com/crossgate-io/crossgate/xds/simulate"
	"github.com/crossgate-io/crossgate/xds/translate"
)

// TestEnvoyAcceptsEveryGolden loads every golden case's resources the way their client does
// (Envoy for sidecars and gateways, grpc-go for proxyless workloads) and fails on anything the
// client would refuse (simulate.Load) or Envoy would accept but mishandle (simulate.Lint).
func TestEnvoyAcceptsEveryGolden(t *testing.T) {
	inputs, _ := filepath.Glob("../../translator/testdata/*.out.yaml")
	if len(inputs) < 30 {
		t.Fatalf("only %d IR inputs", len(inputs))
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".out.yaml")
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			var doc struct {
				IR ir.Snapshot `json:"ir"`
			}
			if err := yaml.Unmarshal(b, &doc); err != nil {
				t.Fatal(err)
			}
			out, _ := translate.Build(&doc.IR) // what Build leaves out is its golden errors.yaml
			CheckOutput(t, out)
		})
	}
}

// CheckOutput fails t on what the clients of out would refuse or Envoy would mishandle.
func CheckOutput(t *testing.T, out *translate.Output) {
	t.Helper()
	for kind, group := range map[string]map[string]*translate.Resources{"sidecar": out.Sidecars, "gateway": out.Gateways, "proxyless": out.Proxyless} {
		for id, res := range group {
			f := simulate.Envoy
			if kind == "proxyless" {
				f = simulate.GRPC
			}
			if err := simulate.Load(res, f).Err(); err != nil {
				t.Errorf("%s %s: %v", kind, id, err)
			}
			if f == simulate.Envoy {
				if err := simulate.Lint(res); err != nil {
					t.Errorf("%s %s: %v", kind, id, err)
				}
			}
		}
	}
}
