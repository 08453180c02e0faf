//go:build integration

package integration

import (
	"context"
	"regexp"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

	"github.com/crossgate-io/crossgate/sandbox"
)

// header returns the column names of the first header line that starts with first.
func headers(out, first string) [][]string {
	var hs [][]string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, first) {
			hs = append(hs, regexp.MustCompile(`\s{2,}`).Split(strings.TrimSpace(l), -1))
		}
	}
	return hs
}

// TestPrinterColumns checks the columns users see with kubectl get, as fsm-behaviour.md lists
// them for Cluster and ServiceExport.
func TestPrinterColumns(t *testing.T) {
	ctx := context.Background()
	kubectl(t, "cluster-2", "", "create", "namespace", "columns")
	kubectl(t, "cluster-2", `
apiVersion: flomesh.io/v1alpha1
kind: ServiceExport
metadata: {name: httpbin, namespace: columns}
spec:
  rules: [{portNumber: 8080, path: /c, pathType: Prefix}]
---
apiVersion: flomesh.io/v1alpha1
kind: ServiceImport
metadata: {name: httpbin, namespace: columns}
spec:
  ports: [{port: 8080}]
---
apiVersion: flomesh.io/v1alpha1
kind: GlobalTrafficPolicy
metadata: {name: httpbin, namespace: columns}
spec: {lbType: ActiveActive}
`, "apply", "-f", "-")
	out := kubectl(t, "cluster-2", "", "get", "sexp,simp,gtp", "-A")
	hs := headers(out, "NAMESPACE")
	want := [][]string{
		{"NAMESPACE", "NAME", "VALID", "CONFLICT", "AGE"},
		{"NAMESPACE", "NAME", "TYPE", "IP", "AGE"},
		{"NAMESPACE", "NAME", "LB TYPE", "ACCEPTED", "AGE"},
	}
	if len(hs) != len(want) {
		t.Fatalf("kubectl get sexp,simp,gtp -A printed %d tables, want %d:\n%s", len(hs), len(want), out)
	}
	for i := range want {
		if strings.Join(hs[i], "|") != strings.Join(want[i], "|") {
			t.Errorf("columns %q, want %q", hs[i], want[i])
		}
	}
	if !regexp.MustCompile(`(?m)^columns\s+serviceimport.flomesh.io/httpbin\s+ClusterSetIP\s+`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^columns\s+globaltrafficpolicy.flomesh.io/httpbin\s+ActiveActive\s+`).MatchString(out) {
		t.Errorf("the rows do not show the import's type and the policy's lbType:\n%s", out)
	}

	cp := sb.Cluster("control-plane")
	kubectl(t, "control-plane", "apiVersion: flomesh.io/v1alpha1\nkind: Cluster\nmetadata: {name: columns}\nspec: {gatewayHost: 10.0.0.9, gatewayPort: 81, kubeconfig: x}\n", "apply", "-f", "-")
	out, _, err := sb.Kubectl(ctx, cp, "", "get", "clusters.flomesh.io")
	if err != nil {
		t.Fatal(err)
	}
	hs = headers(out, "NAME")
	wantCluster := []string{"NAME", "REGION", "ZONE", "GROUP", "GATEWAY HOST", "GATEWAY PORT", "MANAGED", "MANAGED AGE", "LAST PROBE", "AGE"}
	if len(hs) != 1 || strings.Join(hs[0], "|") != strings.Join(wantCluster, "|") {
		t.Errorf("kubectl get clusters.flomesh.io columns %q, want %q", hs, wantCluster)
	}
	if !regexp.MustCompile(`(?m)^columns\s+default\s+default\s+default\s+10\.0\.0\.9\s+81\s+`).MatchString(out) {
		t.Errorf("the Cluster row does not show its key parts and gateway:\n%s", out)
	}
}

// TestExplainDescribesEveryField runs kubectl explain serviceexport.spec.rules and checks that
// every field of a rule is listed with its description, as the CRD declares it.
func TestExplainDescribesEveryField(t *testing.T) {
	out := kubectl(t, "cluster-1", "", "explain", "serviceexport.spec.rules")
	crds, err := sandbox.CRDs()
	if err != nil {
		t.Fatal(err)
	}
	var rules apiextensionsv1.JSONSchemaProps
	for _, crd := range crds {
		if crd.Name == "serviceexports.flomesh.io" {
			rules = *crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"].Properties["rules"].Items.Schema
		}
	}
	if len(rules.Properties) != 3 {
		t.Fatalf("a ServiceExport rule has %d fields in the CRD, want portNumber, path and pathType", len(rules.Properties))
	}
	flat := strings.Join(strings.Fields(out), " ")
	for name, prop := range rules.Properties {
		if prop.Description == "" {
			t.Errorf("field %s has no description", name)
			continue
		}
		if !regexp.MustCompile(`(?m)^\s+` + name + `\s+<`).MatchString(out) {
			t.Errorf("kubectl explain does not list field %s:\n%s", name, out)
		}
		if desc := strings.Join(strings.Fields(prop.Description), " "); !strings.Contains(flat, desc) {
			t.Errorf("kubectl explain does not give the description of %s (%q):\n%s", name, desc, out)
		}
	}
}
