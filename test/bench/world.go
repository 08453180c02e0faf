// Package bench holds the benchmarks of shared/reference/performance.md that run on one
// machine without API servers (B1, B2). Each prints one JSON line. `make bench` runs them at full
// size; the tests run a small world on every `make test`, so the harness cannot rot.
package bench

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
	accessv1alpha3 "github.com/crossgate-io/crossgate/api/smi/access/v1alpha3"
	specsv1alpha4 "github.com/crossgate-io/crossgate/api/smi/specs/v1alpha4"
	"github.com/crossgate-io/crossgate/translator"
	"github.com/crossgate-io/crossgate/wellknown"
)

// Size is the shape of a synthetic world.
type Size struct {
	Services        int // each with one port
	EndpointsPerSvc int // local endpoints of each service
	Clusters        int // clusters of the set, the local one included; each exports every service
	HTTPRoutes      int
	TrafficTargets  int
	Namespaces      int
	AccountsPerNS   int // ServiceAccounts per namespace: the identities
	Permissive      bool
}

// Full is the world of B1 and B2: 10k services × 10 endpoints × 4 clusters, 1k HTTPRoutes, 1k
// TrafficTargets, 100 namespaces with 10 identities each.
var Full = Size{Services: 10000, EndpointsPerSvc: 10, Clusters: 4, HTTPRoutes: 1000, TrafficTargets: 1000, Namespaces: 100, AccountsPerNS: 10}

// Small is the same shape at a size every test run can afford.
var Small = Size{Services: 200, EndpointsPerSvc: 3, Clusters: 4, HTTPRoutes: 20, TrafficTargets: 20, Namespaces: 10, AccountsPerNS: 3}

func ptr[T any](v T) *T { return &v }

func clusterKey(i int) string { return fmt.Sprintf("default/default/default/cluster-%d", i) }

// World builds the Input of cluster-0 in a world of the given size. A third of the services
// have an ActiveActive policy, a third FailOver, the rest none.
func World(s Size) *translator.Input {
	in := &translator.Input{Cluster: clusterKey(0)}
	in.MeshConfig = &flomeshv1alpha1.MeshConfig{ObjectMeta: metav1.ObjectMeta{Name: "mesh", Namespace: "crossgate-system"}}
	in.MeshConfig.Spec.Traffic.EnablePermissiveTrafficPolicyMode = ptr(s.Permissive)
	nsName := func(i int) string { return fmt.Sprintf("ns-%d", i%s.Namespaces) }
	saName := func(i int) string { return fmt.Sprintf("sa-%d", i%s.AccountsPerNS) }
	for n := range s.Namespaces {
		in.Namespaces = append(in.Namespaces, corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name:   nsName(n),
			Labels: map[string]string{wellknown.MeshNamespaceLabel: wellknown.MeshNamespaceValue},
		}})
		for a := range s.AccountsPerNS {
			in.ServiceAccounts = append(in.ServiceAccounts, corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: nsName(n), Name: saName(a)}})
		}
		in.HTTPRouteGroups = append(in.HTTPRouteGroups, specsv1alpha4.HTTPRouteGroup{
			ObjectMeta: metav1.ObjectMeta{Namespace: nsName(n), Name: "all"},
			Spec:       specsv1alpha4.HTTPRouteGroupSpec{Matches: []specsv1alpha4.HTTPMatch{{Name: "all", PathRegex: "/.*", Methods: []specsv1alpha4.HTTPMethod{"GET", "POST"}}}},
		})
	}
	for i := range s.Services {
		ns, name := nsName(i), fmt.Sprintf("svc-%d", i)
		in.Services = append(in.Services, corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: corev1.ServiceSpec{
				ClusterIP: fmt.Sprintf("10.96.%d.%d", (i+1)>>8, (i+1)&255), ClusterIPs: []string{fmt.Sprintf("10.96.%d.%d", (i+1)>>8, (i+1)&255)},
				Ports:    []corev1.ServicePort{{Name: "http", Port: 8080, Protocol: corev1.ProtocolTCP}},
				Selector: map[string]string{"app": name},
			},
		})
		slice := discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080))}},
		}
		for e := range s.EndpointsPerSvc {
			pod := fmt.Sprintf("%s-%d", name, e)
			n := i*s.EndpointsPerSvc + e + 1
			ip := fmt.Sprintf("10.%d.%d.%d", 1+n>>16, n>>8&255, n&255)
			in.Pods = append(in.Pods, corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: pod}, Spec: corev1.PodSpec{ServiceAccountName: saName(i)}})
			slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
				Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)},
				TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: pod},
			})
		}
		in.EndpointSlices = append(in.EndpointSlices, *translator.CompactEndpointSlice(&slice))
		imp := flomeshv1alpha1.ServiceImport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		imp.Spec.ServiceAccountName = saName(i)
		port := flomeshv1alpha1.ServicePort{Port: 8080, Protocol: "TCP"}
		for c := 1; c < s.Clusters; c++ {
			port.Endpoints = append(port.Endpoints, flomeshv1alpha1.Endpoint{
				ClusterKey: clusterKey(c),
				Target:     flomeshv1alpha1.Target{Host: fmt.Sprintf("192.0.2.%d", c), IP: fmt.Sprintf("192.0.2.%d", c), Port: int32(80 + c)},
			})
		}
		imp.Spec.Ports = []flomeshv1alpha1.ServicePort{port}
		in.ServiceImports = append(in.ServiceImports, imp)
		switch i % 3 {
		case 0:
			in.GlobalTrafficPolicies = append(in.GlobalTrafficPolicies, flomeshv1alpha1.GlobalTrafficPolicy{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: flomeshv1alpha1.GlobalTrafficPolicySpec{LbType: flomeshv1alpha1.ActiveActive},
			})
		case 1:
			in.GlobalTrafficPolicies = append(in.GlobalTrafficPolicies, flomeshv1alpha1.GlobalTrafficPolicy{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: flomeshv1alpha1.GlobalTrafficPolicySpec{
					LbType:  flomeshv1alpha1.FailOver,
					Targets: []flomeshv1alpha1.TrafficTarget{{ClusterKey: flomeshv1alpha1.ClusterKey(clusterKey(1))}},
				},
			})
		}
	}
	in.GatewayClasses = []gatewayv1.GatewayClass{{ObjectMeta: metav1.ObjectMeta{Name: "crossgate"}, Spec: gatewayv1.GatewayClassSpec{ControllerName: translator.ControllerName}}}
	in.Gateways = []gatewayv1.Gateway{{
		ObjectMeta: metav1.ObjectMeta{Namespace: "crossgate-system", Name: "crossgate-gateway"},
		Spec:       gatewayv1.GatewaySpec{GatewayClassName: "crossgate", Listeners: translator.GatewayListeners(80)},
	}}
	gwNS := gatewayv1.Namespace("crossgate-system")
	for r := range s.HTTPRoutes {
		i := r % s.Services
		ns, name := nsName(i), fmt.Sprintf("svc-%d", i)
		in.HTTPRoutes = append(in.HTTPRoutes, gatewayv1.HTTPRoute{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("route-%d", r)},
			Spec: gatewayv1.HTTPRouteSpec{
				CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: "crossgate-gateway", Namespace: &gwNS}}},
				Hostnames:       []gatewayv1.Hostname{gatewayv1.Hostname(name + "." + ns), gatewayv1.Hostname(name + "." + ns + ".svc.cluster.local")},
				Rules: []gatewayv1.HTTPRouteRule{{
					Matches:     []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{Type: ptr(gatewayv1.PathMatchPathPrefix), Value: ptr("/cluster-0/" + name)}}},
					BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName(name), Port: ptr(gatewayv1.PortNumber(8080))}}}},
				}},
			},
		})
	}
	for j := range s.TrafficTargets {
		in.TrafficTargets = append(in.TrafficTargets, accessv1alpha3.TrafficTarget{
			ObjectMeta: metav1.ObjectMeta{Namespace: nsName(j), Name: fmt.Sprintf("tt-%d", j)},
			Spec: accessv1alpha3.TrafficTargetSpec{
				Destination: accessv1alpha3.IdentityBindingSubject{Kind: "ServiceAccount", Name: saName(j), Namespace: nsName(j)},
				Sources:     []accessv1alpha3.IdentityBindingSubject{{Kind: "ServiceAccount", Name: saName(j + 1), Namespace: nsName(j + 1)}},
				Rules:       []accessv1alpha3.TrafficTargetRule{{Kind: "HTTPRouteGroup", Name: "all", Matches: []string{"all"}}},
			},
		})
	}
	return in
}
