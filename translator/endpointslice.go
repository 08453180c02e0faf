package translator

import (
	"bytes"
	"encoding/json"
	"strings"
	"unique"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// EndpointSlice is what the translator reads of a discovery.k8s.io/v1 EndpointSlice, and all a
// controller needs to keep of one: the Service it belongs to, its ports, and for each endpoint
// its address, whether it is ready and the Pod behind it. At 10 endpoints a slice it holds about
// a third of what the API object does (test/bench B6), and it is never copied: a new version of
// a slice is a new value, so that translations may keep pointers to the old one.
//
// In YAML and JSON (the translator's test inputs) it is written as the EndpointSlice it comes
// from.
type EndpointSlice struct {
	Namespace, Name string
	// Service is the kubernetes.io/service-name label: the Service the slice belongs to ("" for
	// none: nothing reads it then).
	Service string
	// Ports are the slice's ports that have a number; none for an FQDN slice, whose endpoints
	// are not addresses.
	Ports     []EndpointPort
	Endpoints []Endpoint
}

// EndpointPort is a port of an EndpointSlice: the name of the Service port it serves, and the
// port its endpoints listen on.
type EndpointPort struct {
	Name string
	Port int32
}

// Endpoint is one address of an EndpointSlice's endpoint (an endpoint with several addresses
// is several of these).
type Endpoint struct {
	Address string
	// Pod is the Pod behind the address (its targetRef, when that is a Pod): its name, or
	// namespace/name when it is not in the slice's namespace (see PodOf).
	Pod string
	// Ready is the endpoint's ready condition (true when the slice leaves it unset, as the API
	// says consumers should).
	Ready bool
}

// PodOf returns the namespace and name of the Pod behind e, an endpoint of a slice in namespace
// ns; name is empty when there is none.
func (e *Endpoint) PodOf(ns string) (namespace, name string) {
	if other, name, ok := strings.Cut(e.Pod, "/"); ok {
		return other, name
	}
	return ns, e.Pod
}

// CompactEndpointSlice keeps of s what the translator reads. Strings repeated across slices
// (namespaces, port names) are interned.
func CompactEndpointSlice(s *discoveryv1.EndpointSlice) *EndpointSlice {
	out := &EndpointSlice{Namespace: intern(s.Namespace), Name: s.Name, Service: s.Labels[discoveryv1.LabelServiceName]}
	if s.AddressType == discoveryv1.AddressTypeFQDN {
		return out
	}
	for _, p := range s.Ports {
		if p.Port == nil {
			continue
		}
		name := ""
		if p.Name != nil {
			name = intern(*p.Name)
		}
		out.Ports = append(out.Ports, EndpointPort{Name: name, Port: *p.Port})
	}
	n := 0
	for i := range s.Endpoints {
		n += len(s.Endpoints[i].Addresses)
	}
	out.Endpoints = make([]Endpoint, 0, n)
	for i := range s.Endpoints {
		e := &s.Endpoints[i]
		c := Endpoint{Ready: e.Conditions.Ready == nil || *e.Conditions.Ready}
		if r := e.TargetRef; r != nil && r.Kind == "Pod" {
			c.Pod = r.Name
			if r.Namespace != "" && r.Namespace != s.Namespace {
				c.Pod = r.Namespace + "/" + r.Name
			}
		}
		for _, a := range e.Addresses {
			c.Address = a
			out.Endpoints = append(out.Endpoints, c)
		}
	}
	return out
}

func intern(s string) string { return unique.Make(s).Value() }

// Object is the EndpointSlice s was made from, as far as s keeps it (one address per endpoint).
func (s *EndpointSlice) Object() *discoveryv1.EndpointSlice {
	out := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: s.Name}, AddressType: discoveryv1.AddressTypeIPv4}
	if s.Service != "" {
		out.Labels = map[string]string{discoveryv1.LabelServiceName: s.Service}
	}
	for _, p := range s.Ports {
		out.Ports = append(out.Ports, discoveryv1.EndpointPort{Name: &p.Name, Port: &p.Port})
	}
	for _, e := range s.Endpoints {
		o := discoveryv1.Endpoint{Addresses: []string{e.Address}, Conditions: discoveryv1.EndpointConditions{Ready: &e.Ready}}
		if ns, name := e.PodOf(s.Namespace); name != "" {
			o.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: name}
		}
		out.Endpoints = append(out.Endpoints, o)
	}
	return out
}

// UnmarshalJSON reads an EndpointSlice object and keeps what CompactEndpointSlice keeps.
func (s *EndpointSlice) UnmarshalJSON(b []byte) error {
	var o discoveryv1.EndpointSlice
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields() // as ParseInput: a typo in a test input is an error
	if err := d.Decode(&o); err != nil {
		return err
	}
	*s = *CompactEndpointSlice(&o)
	return nil
}

// MarshalJSON writes s as the EndpointSlice object it keeps (Object).
func (s EndpointSlice) MarshalJSON() ([]byte, error) { return json.Marshal(s.Object()) }
