package translate_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"sigs.k8s.io/yaml"

	"github.com/crossgate-io/crossgate/translator/ir"
	"github.com/crossgate-io/crossgate/xds/resources"
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
			if err := simulate.Check(out); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestConnectionManagers: a gateway faces clients outside the mesh, so it takes the peer's address
// (use_remote_address: x-envoy-* request headers are honoured only from internal clients) and
// normalises paths before routing; sidecars proxy WebSocket upgrades and, inbound, normalise
// paths before RBAC.
func TestConnectionManagers(t *testing.T) {
	b, err := os.ReadFile("../../translator/testdata/gateway-export-routes.out.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		IR ir.Snapshot `json:"ir"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	out, _ := translate.Build(&doc.IR)
	hcms := func(res *resources.Resources, listener string) []*hcmv3.HttpConnectionManager {
		var ms []*hcmv3.HttpConnectionManager
		for part := range res.Parts() {
			for _, l := range part.Listeners {
				if l.Name != listener {
					continue
				}
				for _, fc := range l.FilterChains {
					for _, f := range fc.Filters {
						m := &hcmv3.HttpConnectionManager{}
						if f.GetTypedConfig().UnmarshalTo(m) == nil && f.Name == "envoy.filters.network.http_connection_manager" {
							ms = append(ms, m)
						}
					}
				}
			}
		}
		if len(ms) == 0 {
			t.Fatalf("no connection manager on %s", listener)
		}
		return ms
	}
	for _, m := range hcms(out.Gateways["crossgate-system/crossgate-gateway"], "http-80") {
		if !m.GetUseRemoteAddress().GetValue() || !m.GetNormalizePath().GetValue() || !m.GetMergeSlashes() {
			t.Errorf("gateway: use_remote_address %v normalize_path %v merge_slashes %v", m.GetUseRemoteAddress(), m.GetNormalizePath(), m.GetMergeSlashes())
		}
	}
	for _, m := range hcms(out.Sidecars["httpbin/httpbin"], "inbound") {
		if m.GetUseRemoteAddress().GetValue() || !m.GetNormalizePath().GetValue() || len(m.GetUpgradeConfigs()) == 0 {
			t.Errorf("inbound: use_remote_address %v normalize_path %v upgrades %v", m.GetUseRemoteAddress(), m.GetNormalizePath(), m.GetUpgradeConfigs())
		}
	}
}
