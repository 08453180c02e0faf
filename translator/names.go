package translator

import (
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

// GatewayIdentity is the identity a Gateway's proxy runs as: a ServiceAccount of the Gateway's
// name in its namespace.
func GatewayIdentity(namespace, name string) ir.Identity {
	return ir.Identity{Namespace: namespace, ServiceAccount: wellknown.GatewayServiceAccount(name)}
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
