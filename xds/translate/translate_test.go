package translate

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/crossgate-io/crossgate/internal/golden"
	"github.com/crossgate-io/crossgate/translator/ir"
	"github.com/crossgate-io/crossgate/xds/resources"
)

var update = flag.Bool("update", false, "rewrite the golden files and delete stale ones")

// The inputs are the IR sections of the translator's golden outputs: the IR is the contract
// between the two stages, so each translator case is also an xDS case.
const irGlob = "../../translator/testdata/*.out.yaml"

func loadIR(t testing.TB, path string) *ir.Snapshot {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		IR ir.Snapshot `json:"ir"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &doc.IR
}

// goldenFiles renders an resources.Output as one YAML document per resource type, each a map from proxy
// ("sidecar ns/sa", "proxyless ns/sa", "gateway ns/name") to its resources.
func goldenFiles(t testing.TB, out *resources.Output, buildErr error) map[string][]byte {
	t.Helper()
	kinds := map[string]map[string][]json.RawMessage{"listeners": {}, "routes": {}, "clusters": {}, "endpoints": {}}
	add := func(proxy string, r *resources.Resources) {
		enc := func(kind string, msgs []proto.Message) {
			for _, m := range msgs {
				b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
				if err != nil {
					t.Fatal(err)
				}
				kinds[kind][proxy] = append(kinds[kind][proxy], b)
			}
		}
		flat := &resources.Resources{}
		for part := range r.Parts() {
			flat.Listeners = append(flat.Listeners, part.Listeners...)
			flat.Routes = append(flat.Routes, part.Routes...)
			flat.Clusters = append(flat.Clusters, part.Clusters...)
			flat.Endpoints = append(flat.Endpoints, part.Endpoints...)
		}
		(&builder{res: *flat}).finish()
		enc("listeners", toMessages(flat.Listeners))
		enc("routes", toMessages(flat.Routes))
		enc("clusters", toMessages(flat.Clusters))
		enc("endpoints", toMessages(flat.Endpoints))
	}
	for id, r := range out.Sidecars {
		add("sidecar "+id, r)
	}
	for id, r := range out.Proxyless {
		add("proxyless "+id, r)
	}
	for id, r := range out.Gateways {
		add("gateway "+id, r)
	}
	files := map[string][]byte{}
	for kind, byProxy := range kinds {
		j, err := json.Marshal(byProxy)
		if err != nil {
			t.Fatal(err)
		}
		y, err := yaml.JSONToYAML(j)
		if err != nil {
			t.Fatal(err)
		}
		files[kind+".yaml"] = y
	}
	if buildErr != nil {
		errs := strings.Split(buildErr.Error(), "\n")
		slices.Sort(errs)
		files["errors.yaml"], _ = yaml.Marshal(errs)
	}
	return files
}

func toMessages[T proto.Message](in []T) []proto.Message {
	out := make([]proto.Message, len(in))
	for i, m := range in {
		out[i] = m
	}
	return out
}

// TestGolden builds every case and compares testdata/<case>/<kind>.yaml.
func TestGolden(t *testing.T) {
	inputs, _ := filepath.Glob(irGlob)
	if len(inputs) < 30 {
		t.Fatalf("only %d IR inputs in %s", len(inputs), irGlob)
	}
	want := map[string]bool{}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".out.yaml")
		dir := filepath.Join("testdata", name)
		t.Run(name, func(t *testing.T) {
			out, err := Build(loadIR(t, in))
			files := goldenFiles(t, out, err)
			for f, got := range files {
				path := filepath.Join(dir, f)
				want[path] = true
				golden.Check(t, path, got, *update, "go test ./xds/translate -update")
			}
		})
	}
	existing, _ := filepath.Glob("testdata/*/*.yaml")
	golden.Stale(t, existing, want, *update, "go test ./xds/translate -update")
}
