package translator

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"sigs.k8s.io/yaml"

	"github.com/crossgate-io/crossgate/internal/golden"
	"github.com/crossgate-io/crossgate/wellknown"
)

// mutate changes one EndpointSlice of in at random and returns the new version (or the deleted
// one) as SetEndpointSlice takes it. in is changed the same way, for a full translation.
func mutate(r *rand.Rand, in *Input, step int) (*discoveryv1.EndpointSlice, bool) {
	if len(in.EndpointSlices) == 0 {
		return nil, false
	}
	i := r.IntN(len(in.EndpointSlices))
	s := in.EndpointSlices[i].DeepCopy()
	switch r.IntN(5) {
	case 0: // an endpoint moves to another address
		if len(s.Endpoints) > 0 {
			s.Endpoints[0].Addresses = []string{fmt.Sprintf("10.250.%d.%d", step/250, step%250+1)}
		}
	case 1: // an endpoint stops being ready
		if len(s.Endpoints) > 0 {
			f := false
			s.Endpoints[len(s.Endpoints)-1].Conditions.Ready = &f
		}
	case 2: // the slice is deleted
		in.EndpointSlices = slices.Delete(in.EndpointSlices, i, i+1)
		return s, true
	case 3: // a second slice appears for the same service
		s.Name = fmt.Sprintf("%s-extra-%d", s.Name, step)
		for j := range s.Endpoints {
			s.Endpoints[j].Addresses = []string{fmt.Sprintf("10.251.%d.%d", step/250, j+1)}
		}
		in.EndpointSlices = append(in.EndpointSlices, *s)
		return s, false
	case 4: // the slice is relabelled to another service
		if len(in.Services) > 0 {
			other := in.Services[r.IntN(len(in.Services))]
			if other.Namespace == s.Namespace {
				s.Labels = map[string]string{discoveryv1.LabelServiceName: other.Name}
			}
		}
	}
	in.EndpointSlices[i] = *s
	return s, false
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

// TestIncrementalReportsOnlyTheService checks that a change reports the changed service's port
// and nothing else.
func TestIncrementalReportsOnlyTheService(t *testing.T) {
	b, _ := os.ReadFile("testdata/gateway-hostnames.in.yaml")
	in, _ := ParseInput(b)
	x := NewIncremental(in)
	s := in.EndpointSlices[0].DeepCopy() // httpbin/httpbin
	s.Endpoints[0].Addresses = []string{"10.1.9.9"}
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
			s = in.EndpointSlices[i].DeepCopy()
		}
	}
	s.Endpoints[0].Addresses = []string{"10.2.9.9"}
	if ch := x.SetEndpointSlice(s, false); len(ch.Inbound) != 0 || len(ch.Outbound) != 1 {
		t.Errorf("changes %+v, want one outbound change and no inbound change", ch)
	}
}
