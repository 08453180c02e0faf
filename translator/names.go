package translator

import (
	"strconv"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/crossgate-io/crossgate/translator/ir"
)

// Deterministic names of everything the translator generates, defined in one place.

// ControllerName is crossgate's GatewayClass controller.
const ControllerName gatewayv1.GatewayController = "crossgate.io/gateway-controller"

// DefaultDNSDomain is the cluster DNS domain when the Input names none.
const DefaultDNSDomain = "cluster.local"

// MeshNamespaceLabel set to MeshNamespaceValue adds a namespace to the mesh: its pods get the
// sidecar (`crossgate namespace add`), and its Services are routed by callers' sidecars.
const (
	MeshNamespaceLabel = "crossgate.io/inject"
	MeshNamespaceValue = "enabled"
)

// ProbesAnnotation lists, on a pod, the HTTP probes the sidecar injector rewrote to the
// sidecar's probe port, as JSON: [{"port":8080,"path":"/healthz"}]. The sidecar forwards each
// to the application in plaintext.
const ProbesAnnotation = "crossgate.io/probes"

// ProxylessAnnotation marks a pod whose workload uses grpc-go's xDS support instead of an Envoy
// sidecar: its server listeners are built for its address.
const ProxylessAnnotation = "crossgate.io/proxyless"

// DefaultTrustDomain is the SPIFFE trust domain when the MeshConfig names none.
const DefaultTrustDomain = "cluster.local"

// GatewayIdentity is the identity a Gateway's proxy runs as: a ServiceAccount of the Gateway's
// name in its namespace.
func GatewayIdentity(namespace, name string) ir.Identity {
	return ir.Identity{Namespace: namespace, ServiceAccount: name}
}

// meshHostnames are the names callers use for a service.
func meshHostnames(name, namespace, domain string) []string {
	return []string{
		name + "." + namespace,
		name + "." + namespace + ".svc",
		name + "." + namespace + ".svc." + domain,
	}
}

func routeName(namespace, name string, rule, match int) string {
	return "httproute/" + namespace + "/" + name + "/rule/" + strconv.Itoa(rule) + "/match/" + strconv.Itoa(match)
}

func listenerName(port uint32) string { return "http-" + strconv.FormatUint(uint64(port), 10) }

func gatewayPolicyName(gw ir.Identity) string {
	return "gateway/" + gw.Namespace + "/" + gw.ServiceAccount
}
