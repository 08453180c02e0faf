package translator

import (
	"slices"
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

// DefaultControllerNamespace is the controller's namespace when the Input names none, and
// DefaultExportGateway the Gateway exported services attach to when nothing names one.
const (
	DefaultControllerNamespace = "crossgate-system"
	DefaultExportGateway       = "crossgate-system/crossgate-gateway"
)

// SystemNamespaces are Kubernetes' own namespaces and crossgate's default one. Pods there are
// never injected, and Services there are never federated: the federation's ServiceAccount in a
// member may write ServiceImports anywhere but in these (an admission policy the join installs
// holds it to that), so a leaked member token cannot plant imports beside the cluster's own
// components.
var SystemNamespaces = []string{"kube-system", "kube-public", "kube-node-lease", DefaultControllerNamespace}

// IsSystemNamespace reports whether ns is one of the SystemNamespaces.
func IsSystemNamespace(ns string) bool { return slices.Contains(SystemNamespaces, ns) }

// TrustedGateway reports whether a Gateway of crossgate's class is one the operator declared: in
// the controller's namespace, or the Gateway exported services attach to (namespace/name). Only
// those run as gateways (a Deployment, a certificate) and are admitted as mesh peers by exported
// workloads: anyone who may create a Gateway in their namespace could otherwise mint an identity
// every export trusts.
func TrustedGateway(namespace, name, controllerNamespace, exportGateway string) bool {
	if controllerNamespace == "" {
		controllerNamespace = DefaultControllerNamespace
	}
	if exportGateway == "" {
		exportGateway = DefaultExportGateway
	}
	return namespace == controllerNamespace || namespace+"/"+name == exportGateway
}

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
