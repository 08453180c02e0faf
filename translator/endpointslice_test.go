package translator

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kptr "k8s.io/utils/ptr"
)

func TestCompactEndpointSlice(t *testing.T) {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "blue", Name: "b-x", Labels: map[string]string{discoveryv1.LabelServiceName: "b"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: kptr.To("http"), Port: kptr.To(int32(8080))}, {Name: kptr.To("none")}, {Port: kptr.To(int32(9090))}},
		Endpoints: []discoveryv1.Endpoint{
			// unset readiness is ready; two addresses are two endpoints
			{Addresses: []string{"10.0.0.1", "10.0.0.2"}, TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "blue", Name: "p1"}, Zone: kptr.To("z1")},
			{Addresses: []string{"10.0.0.3"}, Conditions: discoveryv1.EndpointConditions{Ready: kptr.To(false)}, TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "red", Name: "p2"}},
			{Addresses: []string{"10.0.0.4"}, Conditions: discoveryv1.EndpointConditions{Ready: kptr.To(true)}, TargetRef: &corev1.ObjectReference{Kind: "Node", Name: "n1"}},
		},
	}
	got := CompactEndpointSlice(s)
	want := &EndpointSlice{
		Namespace: "blue", Name: "b-x", Service: "b",
		Ports: []EndpointPort{{Name: "http", Port: 8080}, {Name: "", Port: 9090}},
		Endpoints: []Endpoint{
			{Address: "10.0.0.1", Pod: "p1", Ready: true},
			{Address: "10.0.0.2", Pod: "p1", Ready: true},
			{Address: "10.0.0.3", Pod: "red/p2"},
			{Address: "10.0.0.4", Ready: true},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("CompactEndpointSlice:\n got %+v\nwant %+v", got, want)
	}
	// The object it writes back compacts to the same.
	if again := CompactEndpointSlice(got.Object()); !reflect.DeepEqual(again, want) {
		t.Errorf("CompactEndpointSlice(Object()):\n got %+v\nwant %+v", again, want)
	}
	// An FQDN slice's endpoints are names, never addresses: nothing of them is kept.
	s.AddressType = discoveryv1.AddressTypeFQDN
	if got := CompactEndpointSlice(s); len(got.Ports) != 0 || len(got.Endpoints) != 0 || got.Service != "b" {
		t.Errorf("an FQDN slice kept %+v", got)
	}
	// Test inputs are checked for typos.
	if _, err := ParseInput([]byte("endpointSlices:\n- metadata: {name: x}\n  endpoint: []\n")); err == nil {
		t.Error("an unknown field of an EndpointSlice in an input was accepted")
	}
}
