package translator

import (
	"cmp"
	"crypto/tls"
	"fmt"
	"iter"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
	"github.com/crossgate-io/crossgate/translator/ir"
	"github.com/crossgate-io/crossgate/wellknown"
)

// ourClasses are the GatewayClasses handled by crossgate's controller, by name.
func (t *translation) ourClasses() map[string]*gatewayv1.GatewayClass {
	out := map[string]*gatewayv1.GatewayClass{}
	for i := range t.in.GatewayClasses {
		if c := &t.in.GatewayClasses[i]; c.Spec.ControllerName == ControllerName {
			out[c.Name] = c
		}
	}
	return out
}

// ourGateways are the Gateways of our classes, sorted by namespace/name.
func (t *translation) ourGateways() []*gatewayv1.Gateway {
	classes := t.ourClasses()
	var out []*gatewayv1.Gateway
	for i := range t.in.Gateways {
		if g := &t.in.Gateways[i]; classes[string(g.Spec.GatewayClassName)] != nil {
			out = append(out, g)
		}
	}
	slices.SortFunc(out, func(a, b *gatewayv1.Gateway) int {
		return cmpNsName(nsName{a.Namespace, a.Name}, nsName{b.Namespace, b.Name})
	})
	return out
}

func (t *translation) ourGatewayIdentities() []ir.Identity {
	var out []ir.Identity
	for _, g := range t.ourGateways() {
		if t.trusted(g) && InvalidParameters(g) == "" { // a rejected Gateway has no proxy
			out = append(out, GatewayIdentity(g.Namespace, g.Name))
		}
	}
	return out
}

// trusted reports whether a Gateway of our class is one the operator declared (TrustedGateway).
func (t *translation) trusted(g *gatewayv1.Gateway) bool {
	export := t.in.ExportGateway
	if export == "" && t.in.MeshConfig != nil && t.in.MeshConfig.Spec.Gateway.Name != "" {
		export = cmp.Or(t.in.MeshConfig.Spec.Gateway.Namespace, wellknown.SystemNamespace) + "/" + t.in.MeshConfig.Spec.Gateway.Name
	}
	return TrustedGateway(g.Namespace, g.Name, t.in.ControllerNamespace, export)
}

// listenerState is a listener being checked and the routes attached to it.
type listenerState struct {
	spec       *gatewayv1.Listener
	accepted   bool // protocol (and TLS mode) supported
	conflicted string
	kindsOK    bool
	kinds      []gatewayv1.RouteGroupKind
	attached   int32
	// routes by effective hostname (an HTTP listener).
	routes map[string][]sortableRoute
	// passthrough are the TLSRoutes attached (a TLS listener in Passthrough mode).
	passthrough []attachedTLSRoute
	// certificates an HTTPS listener presents; certReason and certMessage say why they are not
	// resolved, when they are not.
	certificates            []ir.Certificate
	certReason, certMessage string
	// reserved: the listener's port is one the proxy listens on itself (ir.Reserved).
	reserved bool
}

func (l *listenerState) usable() bool {
	return l.attachable() && l.certReason == ""
}

// attachable reports whether routes attach to the listener (and count in its attachedRoutes):
// a usable one, or one whose only problem is its certificates, which is not served but whose
// routes are attached all the same (attachment depends on allowedRoutes and parentRefs only,
// ListenerStatus.AttachedRoutes in gateway_types.go).
func (l *listenerState) attachable() bool {
	return l.accepted && l.conflicted == "" && len(l.kinds) > 0
}

// allows reports whether routes of kind (gateway.networking.k8s.io) may attach to the listener.
func (l *listenerState) allows(kind gatewayv1.Kind) bool {
	for _, k := range l.kinds {
		if k.Kind == kind {
			return true
		}
	}
	return false
}

// routeKind is the route kind a listener of this protocol serves, "" for a protocol crossgate
// does not serve: HTTP listeners, and HTTPS listeners (which terminate TLS: their mode is
// Terminate), take HTTPRoutes; TLS listeners in Passthrough mode take TLSRoutes (Gateway API
// core for TLSRoute). TLS listeners in Terminate mode are not implemented.
func routeKind(l *gatewayv1.Listener) gatewayv1.Kind {
	switch l.Protocol {
	case gatewayv1.HTTPProtocolType:
		return "HTTPRoute"
	case gatewayv1.HTTPSProtocolType:
		if l.TLS == nil || l.TLS.Mode == nil || *l.TLS.Mode == gatewayv1.TLSModeTerminate {
			return "HTTPRoute"
		}
	case gatewayv1.TLSProtocolType:
		if l.TLS != nil && l.TLS.Mode != nil && *l.TLS.Mode == gatewayv1.TLSModePassthrough {
			return "TLSRoute"
		}
	}
	return ""
}

// compatible reports whether listeners of protocols a and b can share a port: an HTTP listener
// and a TLS passthrough listener can, the proxy telling TLS from plaintext by its first bytes
// (tls_inspector). Gateway API leaves compatibility of distinct listeners to the implementation
// (gateway_types.go, "Compatible Listeners").
func compatible(a, b gatewayv1.ProtocolType) bool {
	return (a == gatewayv1.HTTPProtocolType && b == gatewayv1.TLSProtocolType) || (a == gatewayv1.TLSProtocolType && b == gatewayv1.HTTPProtocolType)
}

type sortableRoute struct {
	route   ir.Route
	created metav1.Time
	owner   nsName
	rule    int
	match   int
}

// SupportedFeatures are the Gateway API features (sigs.k8s.io/gateway-api/pkg/features names) that
// crossgate's GatewayClasses publish in status.supportedFeatures, sorted by name as the field
// requires: the Gateway and HTTPRoute core (RequestHeaderModifier and RequestRedirect included),
// RequestHeaderModifier on a backendRef, listener isolation (HTTP; HTTPS with 421 for a misdirected
// request), the Gateway's infrastructure
// labels and annotations on what is rendered for it,
// listeners on port 8080, the redirect's extended features (codes 303, 307, 308, path, port,
// scheme), HTTP/2 backends by appProtocol kubernetes.io/h2c, WebSocket backends
// (kubernetes.io/ws), matching by method and by query
// parameters, named rules, request and backend timeouts,
// parentRefs by port, URLRewrite of the path and of the hostname, ResponseHeaderModifier, and
// TLSRoute on TLS listeners in Passthrough mode, and RequestMirror (one or several mirrors, a
// percentage). Each passes its tests of the conformance suite (test/conformance); nothing else
// is claimed until it is implemented and passes.
func SupportedFeatures() []gatewayv1.SupportedFeature {
	return []gatewayv1.SupportedFeature{
		{Name: "Gateway"},
		{Name: "GatewayHTTPListenerIsolation"},
		{Name: "GatewayHTTPSListenerDetectMisdirectedRequests"},
		{Name: "GatewayInfrastructure"},
		{Name: "GatewayPort8080"},
		{Name: "HTTPRoute"},
		{Name: "HTTPRoute303RedirectStatusCode"},
		{Name: "HTTPRoute307RedirectStatusCode"},
		{Name: "HTTPRoute308RedirectStatusCode"},
		{Name: "HTTPRouteBackendRequestHeaderModification"},
		{Name: "HTTPRouteBackendTimeout"},
		{Name: "HTTPRouteBackendProtocolH2C"},
		{Name: "HTTPRouteBackendProtocolWebSocket"},
		{Name: "HTTPRouteHostRewrite"},
		{Name: "HTTPRouteMethodMatching"},
		{Name: "HTTPRouteNamedRouteRule"},
		{Name: "HTTPRouteParentRefPort"},
		{Name: "HTTPRoutePathRedirect"},
		{Name: "HTTPRoutePathRewrite"},
		{Name: "HTTPRoutePortRedirect"},
		{Name: "HTTPRouteQueryParamMatching"},
		{Name: "HTTPRouteRequestMirror"},
		{Name: "HTTPRouteRequestMultipleMirrors"},
		{Name: "HTTPRouteRequestPercentageMirror"},
		{Name: "HTTPRouteRequestTimeout"},
		{Name: "HTTPRouteResponseHeaderModification"},
		{Name: "HTTPRouteSchemeRedirect"},
		{Name: "TLSRoute"},
	}
}

// supportedVersion is the GatewayClass's SupportedVersion condition: False, with the kinds
// missing, when the cluster's Gateway API CRDs are older than crossgate's (the class is still
// accepted: crossgate works without those kinds, as gateway_types.go allows, "best effort").
func (t *translation) supportedVersion(gen int64) metav1.Condition {
	if len(t.in.UnservedKinds) == 0 {
		return cond(string(gatewayv1.GatewayClassConditionStatusSupportedVersion), true, string(gatewayv1.GatewayClassReasonSupportedVersion),
			"The cluster serves the Gateway API kinds crossgate uses (standard channel v1.6).", gen)
	}
	return cond(string(gatewayv1.GatewayClassConditionStatusSupportedVersion), false, string(gatewayv1.GatewayClassReasonUnsupportedVersion),
		fmt.Sprintf("The cluster's Gateway API CRDs are older than crossgate's (standard channel v1.6): it serves no %s, which crossgate does without until they are installed and crossgate-controller restarted.",
			strings.Join(t.in.UnservedKinds, ", ")), gen)
}

// supportedFeatures are SupportedFeatures, less TLSRoute when the cluster serves no TLSRoute.
func (t *translation) supportedFeatures() []gatewayv1.SupportedFeature {
	return slices.DeleteFunc(SupportedFeatures(), func(f gatewayv1.SupportedFeature) bool {
		return f.Name == "TLSRoute" && slices.ContainsFunc(t.in.UnservedKinds, func(k string) bool { return strings.HasPrefix(k, "TLSRoute.") })
	})
}

// translateGateways builds the IR of every Gateway of our classes and the statuses of the
// GatewayClasses, Gateways and HTTPRoutes involved.
func (t *translation) translateGateways(st *Statuses) []ir.Gateway {
	classes := t.ourClasses()
	names := make([]string, 0, len(classes))
	for n := range classes {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		c := classes[n]
		accepted := cond(string(gatewayv1.GatewayClassConditionStatusAccepted), true, string(gatewayv1.GatewayClassReasonAccepted),
			"Handled by "+string(ControllerName)+".", c.Generation)
		if all, err := GatewayNamespaces(c); err != nil {
			accepted = cond(string(gatewayv1.GatewayClassConditionStatusAccepted), false, string(gatewayv1.GatewayClassReasonInvalidParameters),
				err.Error()+"; its Gateways run in the controller's namespace only.", c.Generation)
		} else if all {
			accepted.Message += " Gateways of every namespace run; those outside the controller's namespace, but the export Gateway, as ingress gateways without mesh trust."
		}
		st.GatewayClasses = append(st.GatewayClasses, GatewayClassStatus{Name: n, Conditions: []metav1.Condition{
			accepted, t.supportedVersion(c.Generation),
		}, SupportedFeatures: t.supportedFeatures()})
	}

	var gws []*gatewayv1.Gateway
	for _, g := range t.ourGateways() {
		if msg := InvalidParameters(g); msg != "" {
			st.Gateways = append(st.Gateways, invalidParametersStatus(g, msg))
			continue
		}
		if t.trusted(g) || t.allNamespaces(g) {
			gws = append(gws, g)
			continue
		}
		st.Gateways = append(st.Gateways, untrustedStatus(g))
	}
	states := map[nsName][]*listenerState{}
	for _, g := range gws {
		states[nsName{g.Namespace, g.Name}] = t.checkListeners(g)
	}
	st.HTTPRoutes = t.attachRoutes(states)
	st.TLSRoutes = t.attachTLSRoutes(states)

	var out []ir.Gateway
	for _, g := range gws {
		ls := states[nsName{g.Namespace, g.Name}]
		out = append(out, buildGatewayIR(g, ls))
		st.Gateways = append(st.Gateways, gatewayStatus(g, ls, t.dataPlane(g)))
	}
	slices.SortFunc(st.Gateways, func(a, b GatewayStatus) int {
		return cmpNsName(nsName{a.Namespace, a.Name}, nsName{b.Namespace, b.Name})
	})
	return out
}

// allNamespaces reports whether the Gateway's class runs Gateways in every namespace
// (wellknown.GatewayNamespacesAnnotation): the Gateway is served, as an ingress gateway without
// mesh trust unless it is trusted.
func (t *translation) allNamespaces(g *gatewayv1.Gateway) bool {
	c := t.ourClasses()[string(g.Spec.GatewayClassName)]
	all, _ := GatewayNamespaces(c)
	return all
}

// InvalidParameters says why a Gateway's spec.infrastructure.parametersRef is refused, empty
// without one: crossgate's Gateways take no parameters of their own (their class's annotations
// say what there is to say), so any reference is one to a kind crossgate does not support, and
// the Gateway is rejected (GatewayInfrastructure.ParametersRef: "refers to an unsupported
// kind ... SHOULD be rejected ... InvalidParameters"): it gets no proxy.
func InvalidParameters(g *gatewayv1.Gateway) string {
	inf := g.Spec.Infrastructure
	if inf == nil || inf.ParametersRef == nil {
		return ""
	}
	ref := inf.ParametersRef
	return fmt.Sprintf("spec.infrastructure.parametersRef names %s %s of group %q: crossgate's Gateways take no parameters; remove the reference (the Gateway gets no proxy until then).",
		ref.Kind, ref.Name, ref.Group)
}

func invalidParametersStatus(g *gatewayv1.Gateway, msg string) GatewayStatus {
	return GatewayStatus{Namespace: g.Namespace, Name: g.Name, Status: gatewayv1.GatewayStatus{Conditions: []metav1.Condition{
		cond(string(gatewayv1.GatewayConditionAccepted), false, string(gatewayv1.GatewayReasonInvalidParameters), msg, g.Generation),
		cond(string(gatewayv1.GatewayConditionProgrammed), false, string(gatewayv1.GatewayReasonInvalid), "The Gateway is not accepted.", g.Generation),
	}}}
}

func untrustedStatus(g *gatewayv1.Gateway) GatewayStatus {
	msg := fmt.Sprintf("Gateways of class %s run only in the controller's namespace, or as the Gateway exported services attach to (the MeshConfig's spec.gateway), unless the class's annotation %s is %s: this one gets no proxy, no certificate and no mesh trust.",
		g.Spec.GatewayClassName, wellknown.GatewayNamespacesAnnotation, wellknown.GatewayNamespacesAll)
	return GatewayStatus{Namespace: g.Namespace, Name: g.Name, Status: gatewayv1.GatewayStatus{Conditions: []metav1.Condition{
		cond(string(gatewayv1.GatewayConditionAccepted), false, flomeshv1alpha1.ReasonGatewayNotTrusted, msg, g.Generation),
		cond(string(gatewayv1.GatewayConditionProgrammed), false, string(gatewayv1.GatewayReasonInvalid), "The Gateway is not accepted.", g.Generation),
	}}}
}

func (t *translation) checkListeners(g *gatewayv1.Gateway) []*listenerState {
	var ls []*listenerState
	for i := range g.Spec.Listeners {
		l := &g.Spec.Listeners[i]
		kind := routeKind(l)
		s := &listenerState{spec: l, accepted: kind != "", kindsOK: true, routes: map[string][]sortableRoute{}}
		if ir.Reserved(uint32(l.Port)) { // the gateway's Envoy listens there itself
			s.accepted, s.reserved = false, true
		}
		if s.accepted && l.Protocol == gatewayv1.HTTPSProtocolType {
			s.certificates, s.certReason, s.certMessage = t.certificates(g, l)
		}
		served := gatewayv1.RouteGroupKind{Group: ptr(gatewayv1.Group(gatewayv1.GroupName)), Kind: cmp.Or(kind, "HTTPRoute")}
		if l.AllowedRoutes == nil || len(l.AllowedRoutes.Kinds) == 0 {
			s.kinds = []gatewayv1.RouteGroupKind{served}
		} else {
			for _, k := range l.AllowedRoutes.Kinds {
				if k.Kind == served.Kind && (k.Group == nil || *k.Group == gatewayv1.GroupName) {
					s.kinds = append(s.kinds, served)
				} else {
					s.kindsOK = false
				}
			}
		}
		if !s.accepted {
			s.kinds = nil // nothing attaches to a listener whose protocol we do not serve
		}
		ls = append(ls, s)
	}
	for i, a := range ls {
		for j, b := range ls {
			if i == j || a.spec.Port != b.spec.Port {
				continue
			}
			if a.spec.Protocol != b.spec.Protocol {
				if !compatible(a.spec.Protocol, b.spec.Protocol) {
					a.conflicted = string(gatewayv1.ListenerReasonProtocolConflict)
				}
			} else if hostOf(a.spec.Hostname) == hostOf(b.spec.Hostname) {
				a.conflicted = string(gatewayv1.ListenerReasonHostnameConflict)
			}
		}
	}
	return ls
}

// certificates resolves an HTTPS listener's certificateRefs to Secrets of type
// kubernetes.io/tls whose certificate and key make a pair; otherwise it says why not, with the
// listener's ResolvedRefs reason: RefNotPermitted for a Secret of another namespace that no
// ReferenceGrant there lets the Gateway use, InvalidCertificateRef for anything else.
func (t *translation) certificates(g *gatewayv1.Gateway, l *gatewayv1.Listener) ([]ir.Certificate, string, string) {
	invalid := string(gatewayv1.ListenerReasonInvalidCertificateRef)
	if l.TLS == nil || len(l.TLS.CertificateRefs) == 0 {
		return nil, invalid, "An HTTPS listener needs tls.certificateRefs: a Secret of type kubernetes.io/tls."
	}
	var out []ir.Certificate
	for i, ref := range l.TLS.CertificateRefs {
		field := fmt.Sprintf("tls.certificateRefs[%d]", i)
		key, ok := SecretRef(g.Namespace, ref)
		if !ok {
			return nil, invalid, fmt.Sprintf("%s: only a Secret (group \"\", kind Secret) is supported, not %s.", field, groupKind(ref.Group, ref.Kind))
		}
		ns, name := key.Namespace, key.String()
		if ns != g.Namespace && !t.referenceGranted("Gateway", g.Namespace, "", "Secret", ns, string(ref.Name)) {
			return nil, string(gatewayv1.ListenerReasonRefNotPermitted),
				fmt.Sprintf("%s: Secret %s is in another namespace, and no ReferenceGrant there lets Gateways of namespace %s use it.", field, name, g.Namespace)
		}
		sec := t.secret(ns, string(ref.Name))
		switch {
		case sec == nil:
			return nil, invalid, fmt.Sprintf("%s: Secret %s does not exist.", field, name)
		case sec.Type != corev1.SecretTypeTLS:
			return nil, invalid, fmt.Sprintf("%s: Secret %s is of type %q; a listener's certificate is a Secret of type kubernetes.io/tls.", field, name, sec.Type)
		}
		if _, err := tls.X509KeyPair(sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey]); err != nil {
			return nil, invalid, fmt.Sprintf("%s: Secret %s holds no valid certificate and key (tls.crt, tls.key): %v.", field, name, err)
		}
		out = append(out, ir.Certificate{Name: name, CertPEM: sec.Data[corev1.TLSCertKey], KeyPEM: sec.Data[corev1.TLSPrivateKeyKey]})
	}
	return out, "", ""
}

// SecretRef is the Secret a listener's certificateRef names, its namespace defaulting to the
// Gateway's; not ok for a reference to anything but a Secret.
func SecretRef(gatewayNamespace string, ref gatewayv1.SecretObjectReference) (types.NamespacedName, bool) {
	if (ref.Group != nil && *ref.Group != "") || (ref.Kind != nil && *ref.Kind != "Secret") {
		return types.NamespacedName{}, false
	}
	key := types.NamespacedName{Namespace: gatewayNamespace, Name: string(ref.Name)}
	if ref.Namespace != nil && *ref.Namespace != "" {
		key.Namespace = string(*ref.Namespace)
	}
	return key, true
}

// groupKind names a reference's group and kind for a message ("Secret", "example.com/Cert").
func groupKind(group *gatewayv1.Group, kind *gatewayv1.Kind) string {
	k := "Secret"
	if kind != nil {
		k = string(*kind)
	}
	if group != nil && *group != "" {
		return string(*group) + "/" + k
	}
	return k
}

// secret is the Secret namespace/name of the input, nil when there is none.
func (t *translation) secret(namespace, name string) *corev1.Secret {
	for i := range t.in.Secrets {
		if s := &t.in.Secrets[i]; s.Namespace == namespace && s.Name == name {
			return s
		}
	}
	return nil
}

// tlsModeOf names a TLS listener's mode for a message (" in Terminate mode"), "" for others.
func tlsModeOf(l *gatewayv1.Listener) string {
	if l.Protocol != gatewayv1.TLSProtocolType && l.Protocol != gatewayv1.HTTPSProtocolType {
		return ""
	}
	mode := gatewayv1.TLSModeTerminate // the API's default
	if l.TLS != nil && l.TLS.Mode != nil {
		mode = *l.TLS.Mode
	}
	return " in " + string(mode) + " mode"
}

func hostOf(h *gatewayv1.Hostname) string {
	if h == nil {
		return ""
	}
	return string(*h)
}

func ptr[T any](v T) *T { return &v }

// attachRoutes attaches every HTTPRoute to the listeners of our Gateways it names and may use,
// adds its routes to them, and returns the routes' parent statuses for our parents.
func (t *translation) attachRoutes(states map[nsName][]*listenerState) []RouteStatus {
	var out []RouteStatus
	for _, r := range sortedByName(t.in.HTTPRoutes) {
		var built []builtRule
		var unsupported *flomeshv1alpha1.ConditionError
		parents := ourParents(r, r.Spec.ParentRefs, states,
			func() (unresolved *flomeshv1alpha1.ConditionError) {
				built, unresolved, unsupported = t.buildRules(r)
				return unresolved
			},
			func(pr gatewayv1.ParentReference, gwNS string, ls []*listenerState) *flomeshv1alpha1.ConditionError {
				return t.attach(r, pr, gwNS, ls, built, unsupported)
			})
		if len(parents) > 0 {
			out = append(out, RouteStatus{Namespace: r.Namespace, Name: r.Name, Parents: parents})
		}
	}
	return out
}

// sortedByName points to the objects, sorted by namespace/name.
func sortedByName[T any, P interface {
	*T
	metav1.Object
}](items []T) []P {
	out := make([]P, 0, len(items))
	for i := range items {
		out = append(out, P(&items[i]))
	}
	slices.SortFunc(out, func(a, b P) int {
		return cmpNsName(nsName{a.GetNamespace(), a.GetName()}, nsName{b.GetNamespace(), b.GetName()})
	})
	return out
}

// ourParents attaches a route to each Gateway of ours its parentRefs name, and returns the
// route's parent statuses there: Accepted as attach says, ResolvedRefs as resolve says (run
// once, before the first attach, only when a parent is ours).
func ourParents(r metav1.Object, refs []gatewayv1.ParentReference, states map[nsName][]*listenerState,
	resolve func() *flomeshv1alpha1.ConditionError,
	attach func(pr gatewayv1.ParentReference, gwNS string, ls []*listenerState) *flomeshv1alpha1.ConditionError,
) []gatewayv1.RouteParentStatus {
	var parents []gatewayv1.RouteParentStatus
	var unresolved *flomeshv1alpha1.ConditionError
	first := true
	for _, pr := range refs {
		if (pr.Group != nil && *pr.Group != gatewayv1.GroupName) || (pr.Kind != nil && *pr.Kind != "Gateway") {
			continue
		}
		gwKey := nsName{r.GetNamespace(), string(pr.Name)}
		if pr.Namespace != nil {
			gwKey.ns = string(*pr.Namespace)
		}
		ls, ours := states[gwKey]
		if !ours {
			continue
		}
		if first {
			unresolved = resolve()
			first = false
		}
		notAccepted := attach(pr, gwKey.ns, ls)
		parents = append(parents, gatewayv1.RouteParentStatus{
			ParentRef:      pr,
			ControllerName: ControllerName,
			Conditions: []metav1.Condition{
				condition(string(gatewayv1.RouteConditionAccepted), notAccepted, string(gatewayv1.RouteReasonAccepted), "Attached to the Gateway.", r.GetGeneration()),
				condition(string(gatewayv1.RouteConditionResolvedRefs), unresolved, string(gatewayv1.RouteReasonResolvedRefs), "All references resolved.", r.GetGeneration()),
			},
		})
	}
	return parents
}

// namedListeners are the listeners a parentRef names by its sectionName and port (all when it
// names neither).
func namedListeners(pr gatewayv1.ParentReference, ls []*listenerState) []*listenerState {
	var out []*listenerState
	for _, l := range ls {
		if (pr.SectionName == nil || l.spec.Name == *pr.SectionName) && (pr.Port == nil || l.spec.Port == *pr.Port) {
			out = append(out, l)
		}
	}
	return out
}

// attachTo attaches a route of kind, from namespace routeNS with routeHosts, to each candidate
// listener that takes it (attachable, allowing the kind from that namespace, sharing a
// hostname): the listener counts it, and add records it there when the listener serves. It reports whether some candidate allowed
// the route, and whether some also shared a hostname.
func (t *translation) attachTo(candidates []*listenerState, kind gatewayv1.Kind, gwNS, routeNS string, routeHosts []gatewayv1.Hostname,
	add func(l *listenerState, hosts []string),
) (allowed, hosted bool) {
	for _, l := range candidates {
		if !l.attachable() || !l.allows(kind) || !t.namespaceAllowed(l.spec, gwNS, routeNS) {
			continue
		}
		allowed = true
		hosts := effectiveHostnames(l.spec.Hostname, routeHosts)
		if len(hosts) == 0 {
			continue
		}
		hosted = true
		l.attached++
		if l.usable() { // a listener without its certificates serves nothing
			add(l, hosts)
		}
	}
	return allowed, hosted
}

// attach adds the route's rules to every listener of one parent that accepts it; it returns
// why the parent does not accept the route, nil when it does.
func (t *translation) attach(r *gatewayv1.HTTPRoute, pr gatewayv1.ParentReference, gwNS string, ls []*listenerState, built []builtRule, unsupported *flomeshv1alpha1.ConditionError) *flomeshv1alpha1.ConditionError {
	if unsupported != nil {
		return unsupported
	}
	candidates := namedListeners(pr, ls)
	if len(candidates) == 0 {
		return flomeshv1alpha1.Problem(string(gatewayv1.RouteReasonNoMatchingParent), "No listener of the Gateway matches the parentRef's sectionName and port.")
	}
	allowedAny, hostAny := t.attachTo(candidates, "HTTPRoute", gwNS, r.Namespace, r.Spec.Hostnames, func(l *listenerState, hosts []string) {
		for _, h := range hosts {
			for _, b := range built {
				l.routes[h] = append(l.routes[h], sortableRoute{route: b.route, created: r.CreationTimestamp, owner: nsName{r.Namespace, r.Name}, rule: b.rule, match: b.match})
			}
		}
	})
	switch {
	case !allowedAny:
		return flomeshv1alpha1.Problem(string(gatewayv1.RouteReasonNotAllowedByListeners), "No listener of the Gateway allows routes of this kind from namespace %s.", r.Namespace)
	case !hostAny:
		return flomeshv1alpha1.Problem(string(gatewayv1.RouteReasonNoMatchingListenerHostname), "No hostname of the route matches a listener's hostname.")
	}
	return nil
}

func (t *translation) namespaceAllowed(l *gatewayv1.Listener, gwNS, routeNS string) bool {
	from := gatewayv1.NamespacesFromSame
	if l.AllowedRoutes != nil && l.AllowedRoutes.Namespaces != nil && l.AllowedRoutes.Namespaces.From != nil {
		from = *l.AllowedRoutes.Namespaces.From
	}
	switch from {
	case gatewayv1.NamespacesFromAll:
		return true
	case gatewayv1.NamespacesFromSelector:
		sel := l.AllowedRoutes.Namespaces.Selector
		ns := t.namespaces[routeNS]
		if sel == nil || ns == nil {
			return false
		}
		s, err := metav1.LabelSelectorAsSelector(sel)
		return err == nil && s.Matches(labels.Set(ns.Labels))
	case gatewayv1.NamespacesFromNone:
		return false
	}
	return routeNS == gwNS // Same, the default
}

// effectiveHostnames intersects a listener's hostname with a route's hostnames (Gateway API
// rules: a wildcard on either side matches the other's more specific name).
func effectiveHostnames(listener *gatewayv1.Hostname, route []gatewayv1.Hostname) []string {
	lh := hostOf(listener)
	if len(route) == 0 {
		return []string{cmp.Or(lh, "*")}
	}
	var out []string
	for _, rh := range route {
		h := string(rh)
		switch {
		case lh == "" || lh == h:
			out = append(out, h)
		case strings.HasPrefix(lh, "*.") && strings.HasPrefix(h, "*."):
			// Two wildcards meet in the more specific one: *.example.com and *.db.example.com
			// share *.db.example.com.
			if strings.HasSuffix(h[1:], lh[1:]) {
				out = append(out, h)
			} else if strings.HasSuffix(lh[1:], h[1:]) {
				out = append(out, lh)
			}
		case strings.HasPrefix(lh, "*.") && wildcardMatch(lh, h):
			out = append(out, h)
		case strings.HasPrefix(h, "*.") && wildcardMatch(h, lh):
			out = append(out, lh)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func wildcardMatch(wildcard, host string) bool {
	suffix := wildcard[1:] // ".example.com"
	return strings.HasSuffix(host, suffix) && len(host) > len(suffix) && !strings.HasPrefix(host, "*.")
}

// buildGatewayIR builds one IR listener per port. Listeners of one port share it (Gateway API
// listeners differ by hostname, or are an HTTP and a TLS passthrough listener), and Envoy serves
// one route configuration per port in which a domain may appear once: each hostname gets one
// virtual host, holding the routes of the listener that owns the hostname (isolated), and
// Envoy's choice of the most specific domain picks the listener as Gateway API does. The TLS
// routes of the port are its passthrough routes (passthroughRoutes).
func buildGatewayIR(g *gatewayv1.Gateway, ls []*listenerState) ir.Gateway {
	out := ir.Gateway{Namespace: g.Namespace, Name: g.Name, Identity: GatewayIdentity(g.Namespace, g.Name)}
	byPort := map[uint32]*routesByHost{}
	passthrough := map[uint32][]attachedTLSRoute{}
	terminate := map[uint32][]ir.Terminate{}
	plaintext := map[uint32]bool{}
	certs := map[string]ir.Certificate{}
	for _, l := range ls {
		if !l.usable() {
			continue
		}
		port := uint32(l.spec.Port)
		plaintext[port] = plaintext[port] || l.spec.Protocol == gatewayv1.HTTPProtocolType
		if byPort[port] == nil {
			byPort[port] = newRoutesByHost()
		}
		passthrough[port] = append(passthrough[port], l.passthrough...)
		if l.spec.Protocol == gatewayv1.HTTPSProtocolType {
			// Its own virtual hosts, behind its own TLS; the names other HTTPS listeners of the
			// port take are answered 421 (misdirected).
			own := newRoutesByHost()
			own.add(isolated(l, ls))
			if others := otherHostnames(l, ls); others != nil {
				own.claim([]string{cmp.Or(hostOf(l.spec.Hostname), "*")})
				own.misdirect(others)
			}
			tt := ir.Terminate{Name: "https/" + strconv.FormatUint(uint64(port), 10) + "/" + string(l.spec.Name), Hostname: hostOf(l.spec.Hostname), VirtualHosts: own.virtualHosts()}
			for _, c := range l.certificates {
				tt.Certificates = append(tt.Certificates, c.Name)
				certs[c.Name] = c
			}
			terminate[port] = append(terminate[port], tt)
			continue
		}
		byPort[port].add(isolated(l, ls))
	}
	for port, byHost := range byPort {
		byHost.claim(plainHostnames(port, ls))
		il := ir.Listener{Name: listenerName(port), Port: port, Protocol: ir.HTTP}
		if !plaintext[port] {
			il.Protocol = ir.TLS // TLS and HTTPS listeners only: no plaintext filter chain
		}
		il.VirtualHosts = byHost.virtualHosts()
		il.Passthrough = passthroughRoutes(passthrough[port])
		il.Terminate = terminate[port]
		slices.SortFunc(il.Terminate, func(a, b ir.Terminate) int { return cmp.Compare(a.Name, b.Name) })
		out.Listeners = append(out.Listeners, il)
	}
	slices.SortFunc(out.Listeners, func(a, b ir.Listener) int { return cmp.Compare(a.Port, b.Port) })
	for _, name := range slices.Sorted(maps.Keys(certs)) {
		out.Certificates = append(out.Certificates, certs[name])
	}
	return out
}

// isolated are the routes of an HTTP listener by effective hostname, less the hostnames that
// another listener of its port takes: a request goes to the listener of its port whose hostname
// matches it most specifically, and only that listener's routes may answer it (listener
// isolation, GatewayHTTPListenerIsolation; ListenerSpec.Hostname: "the most specific match"
// wins). A route of a listener without hostname that names *.example.com, say, serves nothing
// when a listener *.example.com shares the port.
func isolated(l *listenerState, ls []*listenerState) map[string][]sortableRoute {
	out := map[string][]sortableRoute{}
	for h, rs := range l.routes {
		if owner := ownerOf(h, l.spec.Port, l.spec.Protocol, ls); owner == nil || owner == l {
			out[h] = rs
		}
	}
	return out
}

// ownerOf is the usable listener of port and protocol (HTTP, or HTTPS) whose hostname matches
// host (a name, or a wildcard *.suffix: the listener must then cover the whole wildcard) most
// specifically: the same name, then the wildcard with the longest suffix, then a listener without
// hostname.
func ownerOf(host string, port gatewayv1.PortNumber, protocol gatewayv1.ProtocolType, ls []*listenerState) *listenerState {
	var best *listenerState
	bestRank := -1
	for l := range sharing(ls, port, protocol) {
		lh, rank := hostOf(l.spec.Hostname), -1
		switch {
		case lh == "":
			rank = 0
		case lh == host:
			rank = 1 << 20
		case strings.HasPrefix(lh, "*.") && strings.HasSuffix(host, lh[1:]) && len(host) > len(lh)-1:
			rank = len(lh) // *.foo.example.com covers *.bar.foo.example.com and a.foo.example.com
		}
		if rank > bestRank {
			best, bestRank = l, rank
		}
	}
	return best
}

// otherHostnames are, for an HTTPS listener, the hostnames of the other usable HTTPS listeners
// of its port ("*" for one without hostname), nil when it has the port alone. A request whose
// Host one of them takes came over a TLS connection whose server name chose this listener: it
// is misdirected, and answered 421 (GatewayHTTPSListenerDetectMisdirectedRequests; RFC 9110
// 15.5.20), whereas a Host no listener takes gets the listener's own 404.
func otherHostnames(l *listenerState, ls []*listenerState) []string {
	var out []string
	for o := range sharing(ls, l.spec.Port, gatewayv1.HTTPSProtocolType) {
		if o != l {
			out = append(out, cmp.Or(hostOf(o.spec.Hostname), "*"))
		}
	}
	return out
}

// plainHostnames are the hostnames of a port's usable HTTP listeners when there are several:
// each gets a virtual host, with no route if none of its listener's routes names it, so that a
// request for it is refused (404) rather than answered by a less specific listener's routes.
func plainHostnames(port uint32, ls []*listenerState) []string {
	var out []string
	n := 0
	for l := range sharing(ls, gatewayv1.PortNumber(port), gatewayv1.HTTPProtocolType) {
		n++
		if h := hostOf(l.spec.Hostname); h != "" {
			out = append(out, h)
		}
	}
	if n < 2 {
		return nil
	}
	return out
}

// sharing yields the usable listeners of a port and protocol.
func sharing(ls []*listenerState, port gatewayv1.PortNumber, protocol gatewayv1.ProtocolType) iter.Seq[*listenerState] {
	return func(yield func(*listenerState) bool) {
		for _, l := range ls {
			if l.usable() && l.spec.Port == port && l.spec.Protocol == protocol && !yield(l) {
				return
			}
		}
	}
}

// routesByHost gathers the routes of listeners by effective hostname, each route match once
// (one route may be attached to two listeners of a port).
type routesByHost struct {
	byHost map[string][]sortableRoute
	seen   map[string]map[routeKey]bool
}

type routeKey struct {
	owner       nsName
	rule, match int
}

func newRoutesByHost() *routesByHost {
	return &routesByHost{byHost: map[string][]sortableRoute{}, seen: map[string]map[routeKey]bool{}}
}

func (b *routesByHost) add(routes map[string][]sortableRoute) {
	for h, rs := range routes {
		if b.seen[h] == nil {
			b.seen[h] = map[routeKey]bool{}
		}
		for _, r := range rs {
			k := routeKey{r.owner, r.rule, r.match}
			if !b.seen[h][k] {
				b.seen[h][k] = true
				b.byHost[h] = append(b.byHost[h], r)
			}
		}
	}
}

// claim gives each of hosts a virtual host, without routes when none names it.
func (b *routesByHost) claim(hosts []string) {
	for _, h := range hosts {
		if _, ok := b.byHost[h]; !ok {
			b.byHost[h] = nil
		}
	}
}

// misdirect gives each of hosts that has no virtual host yet one whose every request is answered
// 421 Misdirected Request.
func (b *routesByHost) misdirect(hosts []string) {
	for _, h := range hosts {
		if _, ok := b.byHost[h]; ok {
			continue
		}
		b.byHost[h] = []sortableRoute{{route: ir.Route{
			Name: "misdirected/" + h, Path: ir.PathMatch{Type: ir.PathPrefix, Value: "/"}, DirectResponse: http.StatusMisdirectedRequest,
		}}}
	}
}

// virtualHosts are one per hostname, sorted by it with "*" last, each with its routes in
// Gateway API's precedence.
func (b *routesByHost) virtualHosts() []ir.VirtualHost {
	hosts := slices.Collect(maps.Keys(b.byHost))
	slices.SortFunc(hosts, func(a, b string) int {
		if (a == "*") != (b == "*") {
			if a == "*" {
				return 1
			}
			return -1
		}
		return cmp.Compare(a, b)
	})
	var out []ir.VirtualHost
	for _, h := range hosts {
		rs := b.byHost[h]
		slices.SortStableFunc(rs, routePrecedence)
		vh := ir.VirtualHost{Name: h, Hostnames: []string{h}}
		for _, r := range rs {
			vh.Routes = append(vh.Routes, r.route)
		}
		out = append(out, vh)
	}
	return out
}

// routePrecedence orders matches as Gateway API requires: exact paths, then longer prefixes,
// then regular expressions; then a method match; then more header matches; then more query
// parameter matches; then the older route, then namespace/name, then rule and match order.
func routePrecedence(a, b sortableRoute) int {
	rank := func(p ir.PathMatch) int {
		switch p.Type {
		case ir.PathExact:
			return 0
		case ir.PathPrefix:
			return 1
		}
		return 2
	}
	ra, rb := a.route, b.route
	if c := cmp.Compare(rank(ra.Path), rank(rb.Path)); c != 0 {
		return c
	}
	if ra.Path.Type == ir.PathPrefix {
		if c := cmp.Compare(len(rb.Path.Value), len(ra.Path.Value)); c != 0 {
			return c
		}
	}
	if c := boolFirst(ra.Method != "", rb.Method != ""); c != 0 {
		return c
	}
	if c := cmp.Compare(len(rb.Headers), len(ra.Headers)); c != 0 {
		return c
	}
	if c := cmp.Compare(len(rb.QueryParams), len(ra.QueryParams)); c != 0 {
		return c
	}
	if !a.created.Equal(&b.created) {
		if a.created.Before(&b.created) {
			return -1
		}
		return 1
	}
	return cmp.Or(cmpNsName(a.owner, b.owner), cmp.Compare(a.rule, b.rule), cmp.Compare(a.match, b.match))
}

func boolFirst(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return -1
	}
	return 1
}

// dataPlane is what runs a Gateway, as dataplane.Render makes it: a LoadBalancer Service and a
// Deployment, both named after the Gateway in its namespace and labelled with it.
type dataPlane struct {
	service    *corev1.Service
	deployment *appsv1.Deployment
}

func (t *translation) dataPlane(g *gatewayv1.Gateway) dataPlane {
	rendered := func(o metav1.Object) bool {
		return o.GetNamespace() == g.Namespace && o.GetName() == g.Name && wellknown.RenderedFor(o.GetLabels()) == g.Name
	}
	var dp dataPlane
	if s := t.services[nsName{g.Namespace, g.Name}]; s != nil && rendered(s) {
		dp.service = s
	}
	for i := range t.in.Deployments {
		if d := &t.in.Deployments[i]; rendered(d) {
			dp.deployment = d
		}
	}
	return dp
}

// maxGatewayAddresses is how many addresses a Gateway's status holds (its CRD's maxItems).
const maxGatewayAddresses = 16

// addresses are where clients reach the Gateway, as Envoy Gateway reports them: its
// LoadBalancer's ingress IPs and hostnames (its ClusterIPs for a ClusterIP Service), and its
// external IPs.
func (dp dataPlane) addresses() []gatewayv1.GatewayStatusAddress {
	s := dp.service
	if s == nil {
		return nil
	}
	var out []gatewayv1.GatewayStatusAddress
	seen := map[string]bool{}
	add := func(typ gatewayv1.AddressType, v string) {
		if v != "" && v != corev1.ClusterIPNone && !seen[v] && len(out) < maxGatewayAddresses {
			seen[v] = true
			out = append(out, gatewayv1.GatewayStatusAddress{Type: ptr(typ), Value: v})
		}
	}
	switch s.Spec.Type {
	case corev1.ServiceTypeLoadBalancer:
		for _, in := range s.Status.LoadBalancer.Ingress {
			if in.IP != "" {
				add(gatewayv1.IPAddressType, in.IP)
			} else {
				add(gatewayv1.HostnameAddressType, in.Hostname)
			}
		}
	case corev1.ServiceTypeClusterIP:
		for _, ip := range s.Spec.ClusterIPs {
			add(gatewayv1.IPAddressType, ip)
		}
	}
	for _, ip := range s.Spec.ExternalIPs {
		add(gatewayv1.IPAddressType, ip)
	}
	return out
}

// programmed is the Gateway's Programmed condition once its configuration is built: True when
// it has an address and its Deployment an available replica; otherwise False with
// AddressNotAssigned or NoResources (gateway_types.go GatewayConditionProgrammed).
func (dp dataPlane) programmed(g *gatewayv1.Gateway, addresses []gatewayv1.GatewayStatusAddress) metav1.Condition {
	typ, gen := string(gatewayv1.GatewayConditionProgrammed), g.Generation
	switch {
	case dp.service == nil:
		return cond(typ, false, string(gatewayv1.GatewayReasonAddressNotAssigned),
			fmt.Sprintf("Gateway configuration built; its LoadBalancer Service %s/%s is not rendered yet.", g.Namespace, g.Name), gen)
	case len(addresses) == 0:
		return cond(typ, false, string(gatewayv1.GatewayReasonAddressNotAssigned),
			fmt.Sprintf("Gateway configuration built; its %s Service %s/%s has no address yet (on a cluster without load balancers, such as kind, reach it on its node port).", dp.service.Spec.Type, g.Namespace, g.Name), gen)
	case dp.deployment == nil:
		return cond(typ, false, string(gatewayv1.GatewayReasonNoResources),
			fmt.Sprintf("Gateway configuration built; its Deployment %s/%s is not rendered yet.", g.Namespace, g.Name), gen)
	case dp.deployment.Status.AvailableReplicas == 0:
		return cond(typ, false, string(gatewayv1.GatewayReasonNoResources),
			fmt.Sprintf("Gateway configuration built; its Deployment %s/%s has no available replica (0/%d).", g.Namespace, g.Name, dp.deployment.Status.Replicas), gen)
	}
	return cond(typ, true, string(gatewayv1.GatewayReasonProgrammed),
		fmt.Sprintf("Gateway configuration built; address assigned, %d/%d replicas of Deployment %s/%s available.", dp.deployment.Status.AvailableReplicas, dp.deployment.Status.Replicas, g.Namespace, g.Name), gen)
}

func gatewayStatus(g *gatewayv1.Gateway, ls []*listenerState, dp dataPlane) GatewayStatus {
	gen := g.Generation
	programmed := false
	var lss []gatewayv1.ListenerStatus
	var invalid []string
	for _, l := range ls {
		if !l.usable() {
			invalid = append(invalid, string(l.spec.Name))
		}
		conds := []metav1.Condition{}
		if l.accepted {
			conds = append(conds, cond(string(gatewayv1.ListenerConditionAccepted), true, string(gatewayv1.ListenerReasonAccepted), "Listener accepted.", gen))
		} else if l.reserved {
			conds = append(conds, cond(string(gatewayv1.ListenerConditionAccepted), false, string(gatewayv1.ListenerReasonPortUnavailable),
				fmt.Sprintf("Port %d is one the gateway's Envoy listens on itself (%d, %d, %d and %d are reserved).", l.spec.Port, ir.AdminPort, ir.OutboundCapturePort, ir.InboundCapturePort, ir.ProbePort), gen))
		} else {
			// A protocol crossgate serves, in a TLS mode it does not, is an unsupported value
			// (the conformance suite's TLSRouteListenerTerminateNotSupported); any other
			// protocol is unsupported.
			reason := gatewayv1.ListenerReasonUnsupportedProtocol
			switch l.spec.Protocol {
			case gatewayv1.HTTPProtocolType, gatewayv1.HTTPSProtocolType, gatewayv1.TLSProtocolType:
				reason = gatewayv1.ListenerReasonUnsupportedValue
			}
			conds = append(conds, cond(string(gatewayv1.ListenerConditionAccepted), false, string(reason),
				fmt.Sprintf("Protocol %s%s is not supported; crossgate serves HTTP and HTTPS listeners, and TLS listeners with tls.mode Passthrough.", l.spec.Protocol, tlsModeOf(l.spec)), gen))
		}
		if l.conflicted != "" {
			conds = append(conds, cond(string(gatewayv1.ListenerConditionConflicted), true, l.conflicted,
				fmt.Sprintf("Another listener uses port %d with the same hostname or another protocol.", l.spec.Port), gen))
		} else {
			conds = append(conds, cond(string(gatewayv1.ListenerConditionConflicted), false, string(gatewayv1.ListenerReasonNoConflicts), "No conflicts.", gen))
		}
		switch {
		case l.certReason != "":
			conds = append(conds, cond(string(gatewayv1.ListenerConditionResolvedRefs), false, l.certReason, l.certMessage, gen))
		case l.kindsOK:
			conds = append(conds, cond(string(gatewayv1.ListenerConditionResolvedRefs), true, string(gatewayv1.ListenerReasonResolvedRefs), "All references resolved.", gen))
		default:
			conds = append(conds, cond(string(gatewayv1.ListenerConditionResolvedRefs), false, string(gatewayv1.ListenerReasonInvalidRouteKinds),
				fmt.Sprintf("Only %s (gateway.networking.k8s.io) can attach to a %s listener of crossgate's; the other kinds are ignored.", cmp.Or(routeKind(l.spec), "HTTPRoute"), l.spec.Protocol), gen))
		}
		if l.usable() {
			programmed = true
			conds = append(conds, cond(string(gatewayv1.ListenerConditionProgrammed), true, string(gatewayv1.ListenerReasonProgrammed), "Listener programmed.", gen))
		} else {
			conds = append(conds, cond(string(gatewayv1.ListenerConditionProgrammed), false, string(gatewayv1.ListenerReasonInvalid), "Listener not programmed: see its other conditions.", gen))
		}
		kinds := l.kinds
		if kinds == nil {
			kinds = []gatewayv1.RouteGroupKind{}
		}
		lss = append(lss, gatewayv1.ListenerStatus{Name: l.spec.Name, SupportedKinds: kinds, AttachedRoutes: l.attached, Conditions: conds})
	}
	// A Gateway with listeners that cannot be configured says so in Accepted's reason
	// (ListenersNotValid): still accepted while another listener can be, rejected as a whole
	// when none can (gateway_types.go GatewayReasonListenersNotValid).
	var conds []metav1.Condition
	switch {
	case len(invalid) == 0:
		conds = append(conds, cond(string(gatewayv1.GatewayConditionAccepted), true, string(gatewayv1.GatewayReasonAccepted), "Gateway accepted.", gen))
	case programmed:
		conds = append(conds, cond(string(gatewayv1.GatewayConditionAccepted), true, string(gatewayv1.GatewayReasonListenersNotValid),
			fmt.Sprintf("Gateway accepted, but these listeners are not valid and serve nothing (see their conditions): %s.", strings.Join(invalid, ", ")), gen))
	default:
		conds = append(conds, cond(string(gatewayv1.GatewayConditionAccepted), false, string(gatewayv1.GatewayReasonListenersNotValid),
			fmt.Sprintf("No listener is valid (see their conditions): %s.", strings.Join(invalid, ", ")), gen))
	}
	addresses := dp.addresses()
	if programmed {
		conds = append(conds, dp.programmed(g, addresses))
	} else {
		conds = append(conds, cond(string(gatewayv1.GatewayConditionProgrammed), false, string(gatewayv1.GatewayReasonInvalid), "No listener can be programmed.", gen))
	}
	return GatewayStatus{Namespace: g.Namespace, Name: g.Name, Status: gatewayv1.GatewayStatus{Addresses: addresses, Conditions: conds, Listeners: lss}}
}
