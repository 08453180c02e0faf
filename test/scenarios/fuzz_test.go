package scenarios

import (
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/crossgate-io/crossgate/translator"
	"github.com/crossgate-io/crossgate/xds/resources"
	"github.com/crossgate-io/crossgate/xds/translate"
)

// FuzzPipeline feeds mutated golden inputs through Translate and Build: nothing may panic, every
// resource Build returns must validate and marshal, its clients must accept it (simulate.Load)
// and Envoy must not mishandle it (simulate.Lint). Run longer with
// go test ./test/scenarios -fuzz FuzzPipeline -fuzzminimizetime 5s.
func FuzzPipeline(f *testing.F) {
	ins, _ := filepath.Glob(filepath.Join("..", "..", "translator", "testdata", "*.in.yaml"))
	if len(ins) == 0 {
		f.Fatal("no seeds")
	}
	for _, p := range ins {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		in, err := translator.ParseInput(b)
		if err != nil {
			return
		}
		res := translator.Translate(in)
		out, _ := translate.Build(&res.IR) // errors name dropped pieces; what is returned must be valid
		checkOutput(t, "fuzzed input", out)
		for _, group := range []map[string]*resources.Resources{out.Sidecars, out.Proxyless, out.Gateways} {
			for proxy, whole := range group {
				for r := range whole.Parts() {
					var msgs []interface {
						proto.Message
						ValidateAll() error
					}
					for _, m := range r.Listeners {
						msgs = append(msgs, m)
					}
					for _, m := range r.Routes {
						msgs = append(msgs, m)
					}
					for _, m := range r.Clusters {
						msgs = append(msgs, m)
					}
					for _, m := range r.Endpoints {
						msgs = append(msgs, m)
					}
					for _, m := range msgs {
						if err := m.ValidateAll(); err != nil {
							t.Fatalf("%s: invalid resource returned: %v", proxy, err)
						}
						if _, err := proto.Marshal(m); err != nil {
							t.Fatalf("%s: %v", proxy, err)
						}
					}
				}
			}
		}
	})
}
