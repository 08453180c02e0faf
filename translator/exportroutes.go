package translator

import (
	"path"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
	"github.com/crossgate-io/crossgate/wellknown"
)

// isPlaceholder reports whether svc is crossgate's placeholder for the import of its name (a
// Service someone else wrote over is released: it loses these labels).
func isPlaceholder(svc *corev1.Service) bool {
	return wellknown.IsPlaceholder(svc.Name, svc.Labels)
}

// Names of the routes of an export. A Service name is a DNS label, so "<name>.direct" and
// "<name>.mesh-<port>" can never be the routes of another export.
const (
	MeshRoutePrefix   = ".mesh-"
	DirectRouteSuffix = ".direct"
)

// MeshRouteName is the name of the TLSRoute of one exported port.
func MeshRouteName(export string, port int32) string {
	return export + MeshRoutePrefix + strconv.Itoa(int(port))
}

// ExportedRoutes are the routes of one export.
type ExportedRoutes struct {
	HTTP []gatewayv1.HTTPRoute
	TLS  []gatewayv1.TLSRoute
}

// ExportRoutes are the routes a valid ServiceExport produces in its cluster, attached to gateway
// (namespace/name), in the export's namespace:
//   - "<name>.mesh-<port>", a TLSRoute per exported port (the ports of spec.rules): the port's
//     mesh server name (wellknown.MeshSNI) passed through, still encrypted, to the Service's
//     port. This is how the workloads of other clusters reach the service: their proxies open
//     mTLS to the service's workloads through the gateway, which routes the connection by its
//     server name without terminating it, so the workload's proxy sees the caller's identity.
//     It attaches to the Gateway's TLS listeners in Passthrough mode.
//   - "<name>.direct", an HTTPRoute with one rule per spec.rules entry, its path matched by
//     pathType, for direct (north-south, plaintext) access such as
//     http://<gateway>/cluster-1/httpbin-mesh; a pathRewrite becomes a URLRewrite filter.
func ExportRoutes(e *flomeshv1alpha1.ServiceExport, gatewayNamespace, gatewayName string) ExportedRoutes {
	parent := gatewayv1.ParentReference{Name: gatewayv1.ObjectName(gatewayName)}
	if gatewayNamespace != e.Namespace {
		ns := gatewayv1.Namespace(gatewayNamespace)
		parent.Namespace = &ns
	}
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{
			Namespace: e.Namespace,
			Name:      name,
			Labels:    map[string]string{wellknown.ManagedByLabel: wellknown.ManagedByValue, wellknown.ExportLabel: e.Name},
		}
	}
	ref := func(port int32) gatewayv1.BackendRef {
		p := gatewayv1.PortNumber(port)
		return gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName(e.Name), Port: &p}}
	}
	if len(e.Spec.Rules) == 0 { // the API requires one; nothing to route without a port
		return ExportedRoutes{}
	}
	var out ExportedRoutes
	var ports []int32
	for _, r := range e.Spec.Rules {
		if !slices.Contains(ports, r.PortNumber) {
			ports = append(ports, r.PortNumber)
		}
	}
	for _, port := range ports {
		out.TLS = append(out.TLS, gatewayv1.TLSRoute{
			ObjectMeta: meta(MeshRouteName(e.Name, port)),
			Spec: gatewayv1.TLSRouteSpec{
				CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{parent}},
				Hostnames:       []gatewayv1.Hostname{gatewayv1.Hostname(wellknown.MeshSNI(e.Namespace, e.Name, port))},
				Rules:           []gatewayv1.TLSRouteRule{{BackendRefs: []gatewayv1.BackendRef{ref(port)}}},
			},
		})
	}
	direct := gatewayv1.HTTPRoute{
		ObjectMeta: meta(e.Name + DirectRouteSuffix),
		Spec:       gatewayv1.HTTPRouteSpec{CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{parent}}},
	}
	for _, r := range e.Spec.Rules {
		direct.Spec.Rules = append(direct.Spec.Rules, directRules(r, e.Spec.PathRewrite, []gatewayv1.HTTPBackendRef{{BackendRef: ref(r.PortNumber)}})...)
	}
	out.HTTP = []gatewayv1.HTTPRoute{direct}
	return out
}

// directRules are the rules of one export rule. With a pathRewrite whose From is the rule's path
// or a prefix of it, the matched path is rewritten; when From lies below a Prefix rule's path,
// a second, longer match rewrites the requests under From and the rule's own match passes the
// others unchanged.
func directRules(r flomeshv1alpha1.ServiceExportRule, rw *flomeshv1alpha1.PathRewrite, backends []gatewayv1.HTTPBackendRef) []gatewayv1.HTTPRouteRule {
	match := func(p string, exact bool) []gatewayv1.HTTPRouteMatch {
		t := gatewayv1.PathMatchPathPrefix
		if exact {
			t = gatewayv1.PathMatchExact
		}
		return []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{Type: &t, Value: &p}}}
	}
	exact := r.PathType == flomeshv1alpha1.PathMatchExact
	plain := gatewayv1.HTTPRouteRule{Matches: match(r.Path, exact), BackendRefs: backends}
	if rw == nil {
		return []gatewayv1.HTTPRouteRule{plain}
	}
	rewrite := func(p gatewayv1.HTTPPathModifier) []gatewayv1.HTTPRouteFilter {
		return []gatewayv1.HTTPRouteFilter{{Type: gatewayv1.HTTPRouteFilterURLRewrite, URLRewrite: &gatewayv1.HTTPURLRewriteFilter{Path: &p}}}
	}
	switch {
	case underPath(r.Path, rw.From):
		to := joinPath(rw.To, strings.TrimPrefix(r.Path, strings.TrimSuffix(rw.From, "/")))
		if exact {
			plain.Filters = rewrite(gatewayv1.HTTPPathModifier{Type: gatewayv1.FullPathHTTPPathModifier, ReplaceFullPath: &to})
		} else {
			plain.Filters = rewrite(gatewayv1.HTTPPathModifier{Type: gatewayv1.PrefixMatchHTTPPathModifier, ReplacePrefixMatch: &to})
		}
		return []gatewayv1.HTTPRouteRule{plain}
	case !exact && underPath(rw.From, r.Path):
		to := rw.To
		inner := gatewayv1.HTTPRouteRule{
			Matches:     match(rw.From, false),
			Filters:     rewrite(gatewayv1.HTTPPathModifier{Type: gatewayv1.PrefixMatchHTTPPathModifier, ReplacePrefixMatch: &to}),
			BackendRefs: backends,
		}
		return []gatewayv1.HTTPRouteRule{inner, plain}
	default: // no request of this rule is under From
		return []gatewayv1.HTTPRouteRule{plain}
	}
}

// underPath reports whether p is prefix or below it, element by element ("/a/b" is under "/a",
// "/ab" is not).
func underPath(p, prefix string) bool {
	prefix = strings.TrimSuffix(prefix, "/")
	return prefix == "" || p == prefix || strings.HasPrefix(p, prefix+"/")
}

// joinPath appends rest (empty or starting with "/") to base.
func joinPath(base, rest string) string {
	if rest == "" {
		return base
	}
	return path.Clean(strings.TrimSuffix(base, "/") + rest)
}
