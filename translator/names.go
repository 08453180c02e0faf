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
