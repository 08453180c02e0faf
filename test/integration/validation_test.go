//go:build integration

package integration

import (
	"context"
	"strings"
	"testing"
)

// TestInvalidObjectsAreRejected applies objects that break each rule and expects the API server
// to refuse them with a message that names the field and says what is allowed.
func TestInvalidObjectsAreRejected(t *testing.T) {
	const gtp = "apiVersion: flomesh.io/v1alpha1\nkind: GlobalTrafficPolicy\nmetadata: {name: bad, namespace: default}\n"
	const sexp = "apiVersion: flomesh.io/v1alpha1\nkind: ServiceExport\nmetadata: {name: bad, namespace: default}\n"
	const cluster = "apiVersion: flomesh.io/v1alpha1\nkind: Cluster\nmetadata: {name: bad}\n"
	const mesh = "apiVersion: flomesh.io/v1alpha1\nkind: MeshConfig\nmetadata: {name: bad, namespace: default}\n"
	const tt = "apiVersion: access.smi-spec.io/v1alpha3\nkind: TrafficTarget\nmetadata: {name: bad, namespace: default}\n"
	const hrg = "apiVersion: specs.smi-spec.io/v1alpha4\nkind: HTTPRouteGroup\nmetadata: {name: bad, namespace: default}\n"
	const kc = "  kubeconfig: x\n"
	const ok1 = "  - {clusterKey: default/default/default/cluster-1}\n"
	const rule = "  rules:\n  - {portNumber: 8080, path: /a, pathType: Prefix}\n"

	cases := []struct {
		name, manifest string
		want           []string // every one must appear in kubectl's error
	}{
		{
			"FailOver without targets", gtp + "spec: {lbType: FailOver}\n",
			[]string{"spec.targets", "FailOver needs at least one target"},
		},
		{
			"Locality with two targets", gtp + "spec:\n  lbType: Locality\n  targets:\n" + ok1 + "  - {clusterKey: default/default/default/cluster-3}\n",
			[]string{"spec.targets", "Locality accepts at most one target"},
		},
		{
			"negative weight", gtp + "spec:\n  lbType: ActiveActive\n  targets:\n  - {clusterKey: default/default/default/cluster-1, weight: -1}\n",
			[]string{"spec.targets[0].weight", "greater than or equal to 0"},
		},
		{
			"clusterKey not region/zone/group/name", gtp + "spec:\n  lbType: ActiveActive\n  targets:\n  - {clusterKey: cluster-1}\n",
			[]string{"spec.targets[0].clusterKey", "must be a cluster key region/zone/group/name"},
		},
		{
			"ActiveActive with every weight 0", gtp + "spec:\n  lbType: ActiveActive\n  targets:\n  - {clusterKey: default/default/default/cluster-1, weight: 0}\n  - {clusterKey: default/default/default/cluster-3, weight: 0}\n",
			[]string{"spec.targets", "ActiveActive with every target's weight 0 sends nothing"},
		},
		{
			"unknown lbType", gtp + "spec: {lbType: Random}\n",
			[]string{"spec.lbType", `supported values: "Locality", "FailOver", "ActiveActive"`},
		},
		{
			"the same target twice", gtp + "spec:\n  lbType: ActiveActive\n  targets:\n" + ok1 + ok1,
			[]string{"spec.targets", "each clusterKey may appear only once"},
		},
		{
			"pathType Regex", sexp + "spec:\n  rules:\n  - {portNumber: 8080, path: /a, pathType: Regex}\n",
			[]string{"spec.rules[0].pathType", `supported values: "Exact", "Prefix"`},
		},
		{
			"rule without pathType", sexp + "spec:\n  rules:\n  - {portNumber: 8080, path: /a}\n",
			[]string{"spec.rules[0].pathType", "Required value"},
		},
		{
			"path without leading slash", sexp + "spec:\n  rules:\n  - {portNumber: 8080, path: cluster-1/httpbin, pathType: Prefix}\n",
			[]string{"spec.rules[0].path", "must start with '/'"},
		},
		{
			"path with a query", sexp + "spec:\n  rules:\n  - {portNumber: 8080, path: '/a?b=c', pathType: Exact}\n",
			[]string{"spec.rules[0].path", "must not contain '?', '#' or whitespace"},
		},
		{
			"port 0", sexp + "spec:\n  rules:\n  - {portNumber: 0, path: /a, pathType: Prefix}\n",
			[]string{"spec.rules[0].portNumber", "greater than or equal to 1"},
		},
		{
			"export without rules", sexp + "spec: {serviceAccountName: httpbin}\n",
			[]string{"spec.rules", "Required value"},
		},
		{
			"unknown loadBalancer", sexp + "spec:\n  loadBalancer: Random\n" + rule,
			[]string{"spec.loadBalancer", `supported values: "RoundRobinLoadBalancer", "HashingLoadBalancer", "LeastWorkLoadBalancer"`},
		},
		{
			"targetClusters entry not a cluster key", sexp + "spec:\n  targetClusters: [cluster-1]\n" + rule,
			[]string{"spec.targetClusters[0]", "must be a cluster key region/zone/group/name"},
		},
		{
			"serviceAccountName not a name", sexp + "spec:\n  serviceAccountName: Bad_Name\n" + rule,
			[]string{"spec.serviceAccountName", `must be "*" (any identity) or the name of a ServiceAccount`},
		},
		{
			"the same rule twice", sexp + "spec:\n" + rule + "  - {portNumber: 8080, path: /a, pathType: Exact}\n",
			[]string{"spec.rules", "each pair of portNumber and path may appear only once"},
		},
		{
			"gatewayPort 70000", cluster + "spec:\n  gatewayHost: 127.0.0.1\n  gatewayPort: 70000\n" + kc,
			[]string{"spec.gatewayPort", "less than or equal to 65535"},
		},
		{
			"Cluster without gatewayHost", cluster + "spec:\n  gatewayPort: 81\n" + kc,
			[]string{"spec.gatewayHost", "Required value"},
		},
		{
			"gatewayHost not a host", cluster + "spec:\n  gatewayHost: 'not a host!'\n" + kc,
			[]string{"spec.gatewayHost", "must be a DNS host name or an IP address"},
		},
		{
			"both kubeconfig and kubeconfigSecretRef", cluster + "spec:\n  gatewayHost: h\n" + kc + "  kubeconfigSecretRef: {namespace: a, name: b}\n",
			[]string{"spec.kubeconfigSecretRef", "set either kubeconfig or kubeconfigSecretRef, not both"},
		},
		{
			"no way to reach the member", cluster + "spec:\n  gatewayHost: h\n",
			[]string{"spec.kubeconfigSecretRef", "one of kubeconfig or kubeconfigSecretRef is required"},
		},
		{
			"region with capitals", cluster + "spec:\n  gatewayHost: h\n  region: US_East\n" + kc,
			[]string{"spec.region", "must be a DNS label"},
		},
		{
			"Cluster name that cannot be a key part", "apiVersion: flomesh.io/v1alpha1\nkind: Cluster\nmetadata: {name: cluster.one}\nspec:\n  gatewayHost: h\n" + kc,
			[]string{"metadata.name must be a DNS label"},
		},
		{
			"permissive mode not a boolean", mesh + "spec:\n  traffic: {enablePermissiveTrafficPolicyMode: maybe}\n",
			[]string{"spec.traffic.enablePermissiveTrafficPolicyMode", "boolean"},
		},
		{
			"certificate lifetime too short", mesh + "spec:\n  certificate: {validityDuration: 1m}\n",
			[]string{"spec.certificate.validityDuration", "must be between 10m and 720h"},
		},
		{
			"TrafficTarget to a Pod", tt + "spec:\n  destination: {kind: Pod, name: a}\n",
			[]string{"spec.destination.kind", `supported values: "ServiceAccount"`},
		},
		{
			"TrafficTarget rule of unknown kind", tt + "spec:\n  destination: {kind: ServiceAccount, name: a}\n  rules:\n  - {kind: Ingress, name: r}\n",
			[]string{"spec.rules[0].kind", `supported values: "HTTPRouteGroup", "TCPRoute"`},
		},
		{
			"HTTPRouteGroup with an unknown method", hrg + "spec:\n  matches:\n  - {name: all, methods: [FETCH]}\n",
			[]string{"spec.matches[0].methods[0]", "Unsupported value"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, err := sb.Kubectl(context.Background(), sb.Cluster("cluster-2"), tc.manifest, "apply", "-f", "-")
			if err == nil {
				t.Fatalf("accepted:\n%s", tc.manifest)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("the error does not say %q:\n%s", w, stderr)
				}
			}
		})
	}
}
