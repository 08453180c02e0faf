package translator

import (
	"fmt"
	"strconv"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/crossgate-io/crossgate/translator/ir"
	"github.com/crossgate-io/crossgate/wellknown"
)

// Deterministic names of everything the translator generates, defined in one place.

// ControllerName is crossgate's GatewayClass controller.
const ControllerName = gatewayv1.GatewayController(wellknown.ControllerName)

// TrustedGateway reports whether a Gateway of crossgate's class is one the operator declared: in
// the controller's namespace, or the Gateway exported services attach to (namespace/name). Only
// those run as gateways (a Deployment, a certificate) and are admitted as mesh peers by exported
// workloads: anyone who may create a Gateway in their namespace could otherwise mint an identity
// every export trusts.
func TrustedGateway(namespace, name, controllerNamespace, exportGateway string) bool {
	if controllerNamespace == "" {
		controllerNamespace = wellknown.SystemNamespace
	}
	if exportGateway == "" {
		exportGateway = wellknown.DefaultExportGateway
	}
	return namespace == controllerNamespace || namespace+"/"+name == exportGateway
}

// GatewayNamespaces reads a GatewayClass's wellknown.GatewayNamespacesAnnotation: whether its
// Gateways run in every namespace. Any value but Own or All is an error naming both; the class's
// Gateways then run as with Own.
func GatewayNamespaces(c *gatewayv1.GatewayClass) (all bool, err error) {
	switch v, ok := c.Annotations[wellknown.GatewayNamespacesAnnotation]; {
	case !ok || v == wellknown.GatewayNamespacesOwn:
		return false, nil
	case v == wellknown.GatewayNamespacesAll:
		return true, nil
	default:
		return false, fmt.Errorf("metadata.annotations[%s]: %q is not %s or %s", wellknown.GatewayNamespacesAnnotation, v, wellknown.GatewayNamespacesOwn, wellknown.GatewayNamespacesAll)
	}
}

// GatewayIdentity is the identity a Gateway's proxy runs as: a ServiceAccount of the Gateway's
// name in its namespace.
func GatewayIdentity(namespace, name string) ir.Identity {
	return ir.Identity{Namespace: namespace, ServiceAccount: wellknown.GatewayServiceAccount(name)}
}

// GatewayListeners are the listeners of the Gateway exported services attach to, as the chart and
// the sandbox declare it: "http", plaintext HTTP for the exports' direct routes (HTTPRoutes), and
// "mesh", TLS in Passthrough mode for the exports' TLSRoutes (callers of other clusters), both on
// port, taking routes from every namespace. The gateway tells the two apart by their first bytes.
func GatewayListeners(port gatewayv1.PortNumber) []gatewayv1.Listener {
	all := gatewayv1.NamespacesFromAll
	passthrough := gatewayv1.TLSModePassthrough
	allowed := func() *gatewayv1.AllowedRoutes {
		return &gatewayv1.AllowedRoutes{Namespaces: &gatewayv1.RouteNamespaces{From: &all}}
	}
	return []gatewayv1.Listener{
		{Name: "http", Port: port, Protocol: gatewayv1.HTTPProtocolType, AllowedRoutes: allowed()},
		{Name: "mesh", Port: port, Protocol: gatewayv1.TLSProtocolType, TLS: &gatewayv1.ListenerTLSConfig{Mode: &passthrough}, AllowedRoutes: allowed()},
	}
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

func tlsRouteName(namespace, name string) string { return "tlsroute/" + namespace + "/" + name }

func listenerName(port uint32) string { return "http-" + strconv.FormatUint(uint64(port), 10) }

func gatewayPolicyName(gw ir.Identity) string {
	return "gateway/" + gw.Namespace + "/" + gw.ServiceAccount
}
