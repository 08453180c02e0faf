package translator

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/crossgate-io/crossgate/internal/golden"
	"github.com/crossgate-io/crossgate/wellknown"
)

// mutate changes one EndpointSlice of in at random and returns the new version (or the deleted
// one) as SetEndpointSlice takes it. in is changed the same way, for a full translation.
func mutate(r *rand.Rand, in *Input, step int) (*EndpointSlice, bool) {
	if len(in.EndpointSlices) == 0 {
		return nil, false
	}
	in.EndpointSlices = slices.Clone(in.EndpointSlices) // the Incremental holds pointers into the old array: never change it
	i := r.IntN(len(in.EndpointSlices))
	s := in.EndpointSlices[i]
	s.Endpoints, s.Ports = slices.Clone(s.Endpoints), slices.Clone(s.Ports)
	switch r.IntN(6) {
	case 0: // an endpoint moves to another address
		if len(s.Endpoints) > 0 {
			s.Endpoints[0].Address = fmt.Sprintf("10.250.%d.%d", step/250, step%250+1)
		}
	case 1: // an endpoint stops being ready
		if len(s.Endpoints) > 0 {
			s.Endpoints[len(s.Endpoints)-1].Ready = false
		}
	case 2: // the slice is deleted
		in.EndpointSlices = slices.Delete(in.EndpointSlices, i, i+1)
		return &s, true
	case 3: // a second slice appears for the same service
		s.Name = fmt.Sprintf("%s-extra-%d", s.Name, step)
		for j := range s.Endpoints {
			s.Endpoints[j].Address = fmt.Sprintf("10.251.%d.%d", step/250, j+1)
		}
		in.EndpointSlices = append(in.EndpointSlices, s)
		return &s, false
	case 5: // the slice's port resolves to another container port, maybe one another port of
		// the service (or another service) uses already: two slices of one service may resolve a
		// named targetPort differently
		var seen []int32
		for _, o := range in.EndpointSlices {
			for _, p := range o.Ports {
				seen = append(seen, p.Port)
			}
		}
		if len(s.Ports) > 0 && len(seen) > 0 {
			s.Ports[0].Port = seen[r.IntN(len(seen))]
		}
	case 4: // the slice is relabelled to another service
		if len(in.Services) > 0 {
			other := in.Services[r.IntN(len(in.Services))]
			if other.Namespace == s.Namespace {
				s.Service = other.Name
			}
		}
	}
	in.EndpointSlices[i] = s
	return &s, false
}

// mutatePod changes one Pod of in at random (deletes it, toggles its proxyless annotation, or
// brings back a deleted one) and returns the new version (or the deleted one) as SetPod takes it.
func mutatePod(r *rand.Rand, in *Input, gone *[]corev1.Pod) (*corev1.Pod, bool) {
	in.Pods = slices.Clone(in.Pods) // the Incremental holds pointers into the old array: never change it
	if len(*gone) > 0 && r.IntN(2) == 0 {
		p := (*gone)[0]
		*gone = (*gone)[1:]
		in.Pods = append(in.Pods, p)
		return &p, false
	}
	if len(in.Pods) == 0 {
		return nil, false
	}
	i := r.IntN(len(in.Pods))
	p := in.Pods[i].DeepCopy()
	if r.IntN(2) == 0 {
		in.Pods = slices.Delete(in.Pods, i, i+1)
		*gone = append(*gone, *p)
		return p, true
	}
	if p.Annotations[wellknown.ProxylessAnnotation] == "true" {
		delete(p.Annotations, wellknown.ProxylessAnnotation)
	} else {
		p.Annotations = map[string]string{wellknown.ProxylessAnnotation: "true"}
	}
	in.Pods[i] = *p
	return p, false
}

// TestIncrementalEqualsFull applies random endpoint changes (slices and pods) through
// Incremental and checks after each that its Result is exactly the full translation of the
// changed input. A pod change Incremental refuses (SetPod's ok false) is translated in full, as
// the controller does.
func TestIncrementalEqualsFull(t *testing.T) {
	ins, _ := filepath.Glob("testdata/*.in.yaml")
	podsApplied := 0
	defer func() {
		if podsApplied == 0 {
			t.Error("no pod change was applied incrementally: SetPod is not exercised")
		}
		t.Logf("%d pod changes applied incrementally", podsApplied)
	}()
	for _, p := range ins {
		t.Run(filepath.Base(p), func(t *testing.T) {
			b, _ := os.ReadFile(p)
			in, err := ParseInput(b)
			if err != nil {
				t.Fatal(err)
			}
			x := NewIncremental(in)
			r := rand.New(rand.NewPCG(1, uint64(len(p))))
			var gone []corev1.Pod
			for step := range 16 {
				var what string
				if step%3 == 2 {
					pod, deleted := mutatePod(r, in, &gone)
					if pod == nil {
						continue
					}
					what = fmt.Sprintf("pod %s deleted=%v", pod.Name, deleted)
					if _, ok := x.SetPod(pod, deleted); ok {
						podsApplied++
					} else {
						x = NewIncremental(in)
						what += " (refused: full)"
					}
				} else {
					s, deleted := mutate(r, in, step)
					if s == nil {
						return
					}
					what = fmt.Sprintf("slice %s deleted=%v", s.Name, deleted)
					x.SetEndpointSlice(s, deleted)
				}
				want, _ := yaml.Marshal(Translate(in))
				got, _ := yaml.Marshal(x.Result())
				if string(got) != string(want) {
					t.Fatalf("step %d (%s): incremental result differs from the full translation:\n%s", step, what, golden.LineDiff(string(want), string(got)))
				}
			}
		})
	}
}

// moved is a new version of s whose first endpoint has address a.
func moved(s EndpointSlice, a string) *EndpointSlice {
	s.Endpoints = slices.Clone(s.Endpoints)
	s.Endpoints[0].Address = a
	return &s
}

// TestIncrementalReportsOnlyTheService checks that a change reports the changed service's port
// and nothing else.
func TestIncrementalReportsOnlyTheService(t *testing.T) {
	b, _ := os.ReadFile("testdata/gateway-hostnames.in.yaml")
	in, _ := ParseInput(b)
	x := NewIncremental(in)
	s := moved(in.EndpointSlices[0], "10.1.9.9") // httpbin/httpbin
	ch := x.SetEndpointSlice(s, false)
	if len(ch.Outbound) != 1 || ch.Outbound[0].Service.Key() != "httpbin/httpbin:8080" || ch.Outbound[0].Identities != nil {
		t.Errorf("outbound changes %+v, want httpbin/httpbin:8080 for every identity", ch.Outbound)
	}
	if len(ch.Backends) != 1 || ch.Backends[0].Gateway != "crossgate-system/crossgate-gateway" || ch.Backends[0].Backend.Endpoints[0].Address != "10.1.9.9" {
		t.Errorf("backend changes %+v, want the gateway's httpbin backend with the new address", ch.Backends)
	}
	// That pod is a proxyless gRPC server: its server listener is named after its address.
	if len(ch.Inbound) != 1 || ch.Inbound[0].String() != "httpbin/httpbin" {
		t.Errorf("inbound changes %v, want httpbin/httpbin (its proxyless address moved)", ch.Inbound)
	}
	// An endpoint of a sidecar pod moving changes no inbound configuration.
	b, _ = os.ReadFile("testdata/walkthrough-4-activeactive.in.yaml")
	in, _ = ParseInput(b)
	x = NewIncremental(in)
	for i := range in.EndpointSlices {
		if in.EndpointSlices[i].Name == "httpbin-abcde" {
			s = moved(in.EndpointSlices[i], "10.2.9.9")
		}
	}
	if ch := x.SetEndpointSlice(s, false); len(ch.Inbound) != 0 || len(ch.Outbound) != 1 {
		t.Errorf("changes %+v, want one outbound change and no inbound change", ch)
	}
}

// TestIncrementalInboundPorts: endpoint changes that leave each service port's first endpoint
// and the set of (identity, container port) pairs as they were, but change an identity's inbound
// ports. Incremental must see them.
func TestIncrementalInboundPorts(t *testing.T) {
	const head = `
cluster: default/default/default/cluster-1
meshConfig:
  metadata: {name: fsm-mesh-config, namespace: fsm-system}
  spec: {traffic: {enablePermissiveTrafficPolicyMode: true}}
namespaces:
- metadata: {name: blue, labels: {crossgate.io/inject: enabled}}
serviceAccounts:
- metadata: {name: one, namespace: blue}
- metadata: {name: two, namespace: blue}
services:
- metadata: {name: b, namespace: blue}
  spec:
    clusterIP: 10.96.0.30
    ports:
    - {name: http, port: 8080, protocol: TCP}
    - {name: grpc, port: 8081, protocol: TCP, appProtocol: grpc}
pods:
- metadata: {name: p1, namespace: blue}
  spec: {serviceAccountName: one, containers: [{name: app, image: app}]}
- metadata: {name: p2, namespace: blue}
  spec: {serviceAccountName: two, containers: [{name: app, image: app}]}
endpointSlices:
`
	const p1 = `  - {addresses: [10.1.0.1], conditions: {ready: true}, targetRef: {kind: Pod, namespace: blue, name: p1}}
`
	const p2 = `  - {addresses: [10.1.0.2], conditions: {ready: true}, targetRef: {kind: Pod, namespace: blue, name: p2}}
`
	slice := func(name, port string, container int, eps ...string) string {
		s := fmt.Sprintf("- metadata: {name: %s, namespace: blue, labels: {kubernetes.io/service-name: b}}\n  addressType: IPv4\n  ports: [{name: %s, port: %d}]\n  endpoints:\n", name, port, container)
		for _, e := range eps {
			s += e
		}
		return s
	}
	for _, tc := range []struct {
		name   string
		slices string
		want   int // identities whose inbound ports change when the first slice goes
	}{
		// Both identities serve both service ports on 8081; the http one goes: 8081 no longer
		// serves b:8080 (its Services change, and its protocol).
		{"a service port leaves a shared container port", slice("b-x", "http", 8081, p1, p2) + slice("b-y", "grpc", 8081, p1, p2), 2},
		// One identity serves b:8080 on two container ports (two slices resolved a named
		// targetPort differently); the second goes: the first endpoint is unchanged, port 8081
		// is no longer served.
		{"a container port of one service port goes", slice("b-y", "http", 8081, p1) + slice("b-x", "http", 8080, p1), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			input, err := ParseInput([]byte(head + tc.slices))
			if err != nil {
				t.Fatal(err)
			}
			x := NewIncremental(input)
			gone := input.EndpointSlices[0]
			input.EndpointSlices = input.EndpointSlices[1:]
			ch := x.SetEndpointSlice(&gone, true)
			want, _ := yaml.Marshal(Translate(input))
			got, _ := yaml.Marshal(x.Result())
			if string(got) != string(want) {
				t.Fatalf("incremental result differs from the full translation:\n%s", golden.LineDiff(string(want), string(got)))
			}
			if len(ch.Inbound) != tc.want {
				t.Errorf("inbound changes %v, want %d identities", ch.Inbound, tc.want)
			}
		})
	}
}
