package charts

import (
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

func ownCRDs(t *testing.T) map[string]*apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	files, names, err := CRDs()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*apiextensionsv1.CustomResourceDefinition{}
	gateway := 0
	for _, n := range names {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.UnmarshalStrict(files[n], crd); err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		if crd.Spec.Group == "gateway.networking.k8s.io" {
			gateway++
			continue
		}
		out[crd.Name] = crd
	}
	if gateway == 0 {
		t.Error("the chart carries no Gateway API CRD: run make manifests")
	}
	return out
}

// TestEveryFieldIsDescribed walks the schema of each of crossgate's and SMI's CRDs: every
// property must carry a description, so that kubectl explain is useful everywhere.
func TestEveryFieldIsDescribed(t *testing.T) {
	crds := ownCRDs(t)
	if len(crds) != 8 {
		t.Errorf("got %d CRDs of our own, want 8 (5 flomesh.io, 3 SMI)", len(crds))
	}
	for name, crd := range crds {
		for _, v := range crd.Spec.Versions {
			var walk func(path string, p *apiextensionsv1.JSONSchemaProps)
			walk = func(path string, p *apiextensionsv1.JSONSchemaProps) {
				for k, child := range p.Properties {
					c := child
					// The root metadata is the standard ObjectMeta: the API server supplies its
					// schema and description.
					if c.Description == "" && path+"."+k != ".metadata" {
						t.Errorf("%s %s: field %s.%s has no description", name, v.Name, path, k)
					}
					walk(path+"."+k, &c)
				}
				if p.Items != nil && p.Items.Schema != nil {
					walk(path+"[]", p.Items.Schema)
				}
			}
			walk("", v.Schema.OpenAPIV3Schema)
		}
	}
}

func TestNamesAndSubresources(t *testing.T) {
	crds := ownCRDs(t)
	want := map[string]struct {
		short  string
		status bool
		scope  apiextensionsv1.ResourceScope
	}{
		"clusters.flomesh.io":              {"", true, apiextensionsv1.ClusterScoped},
		"serviceexports.flomesh.io":        {"sexp", true, apiextensionsv1.NamespaceScoped},
		"serviceimports.flomesh.io":        {"simp", true, apiextensionsv1.NamespaceScoped},
		"globaltrafficpolicies.flomesh.io": {"gtp", true, apiextensionsv1.NamespaceScoped},
		"meshconfigs.flomesh.io":           {"", true, apiextensionsv1.NamespaceScoped},
		// SMI kinds keep the upstream shape: no status.
		"traffictargets.access.smi-spec.io": {"", false, apiextensionsv1.NamespaceScoped},
		"httproutegroups.specs.smi-spec.io": {"", false, apiextensionsv1.NamespaceScoped},
		"tcproutes.specs.smi-spec.io":       {"", false, apiextensionsv1.NamespaceScoped},
	}
	for name, w := range want {
		crd, ok := crds[name]
		if !ok {
			t.Errorf("no CRD %s", name)
			continue
		}
		if got := strings.Join(crd.Spec.Names.ShortNames, ","); got != w.short {
			t.Errorf("%s short names %q, want %q", name, got, w.short)
		}
		if crd.Spec.Scope != w.scope {
			t.Errorf("%s scope %s, want %s", name, crd.Spec.Scope, w.scope)
		}
		for _, v := range crd.Spec.Versions {
			if got := v.Subresources != nil && v.Subresources.Status != nil; got != w.status {
				t.Errorf("%s %s: status subresource %v, want %v", name, v.Name, got, w.status)
			}
		}
	}
}
