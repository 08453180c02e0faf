// Package wellknown holds crossgate's well-known names and wire formats, defined once: the labels
// and annotations it reads and writes, its field owner, default namespace and Gateway, the
// node ID a proxy presents to the xDS server and the SPIFFE ID of a workload. It is a leaf
// (standard library only) so that every other package, pure or not, may import it; a name
// written anywhere else is a bug (hack/layout checks the formats).
package wellknown

import (
	"slices"
)

// Labels and annotations.
const (
	// Domain is the DNS domain of crossgate's label and annotation keys.
	Domain = "crossgate.io"

	// ManagedByLabel is app.kubernetes.io/managed-by; ManagedByValue marks crossgate's objects.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedByValue = "crossgate"
	// ExportLabel names the ServiceExport an HTTPRoute was generated from.
	ExportLabel = "crossgate.io/export"
	// ImportLabel names the ServiceImport a placeholder Service stands for.
	ImportLabel = "crossgate.io/import"
	// FederatedLabel marks a ServiceImport the federation controller wrote.
	FederatedLabel = "crossgate.io/federated"
	// GatewayLabel names, on a gateway proxy's objects, the Gateway they serve (the label
	// Gateway API implementations share).
	GatewayLabel = "gateway.networking.k8s.io/gateway-name"

	// MeshNamespaceLabel set to MeshNamespaceValue adds a namespace to the mesh: its pods get
	// the sidecar (`crossgate namespace add`), and its Services are routed by callers'
	// sidecars. On a pod, MeshNamespaceLabel set to OptOutValue keeps it out.
	MeshNamespaceLabel = "crossgate.io/inject"
	MeshNamespaceValue = "enabled"
	OptOutValue        = "false"

	// ProbesAnnotation lists, on a pod, the HTTP probes the sidecar injector rewrote to the
	// sidecar's probe port, as JSON: [{"port":8080,"path":"/healthz"}]. The sidecar forwards
	// each to the application in plaintext.
	ProbesAnnotation = "crossgate.io/probes"
	// ProxylessAnnotation marks a pod whose workload uses grpc-go's xDS support instead of an
	// Envoy sidecar: its server listeners are built for its address.
	ProxylessAnnotation = "crossgate.io/proxyless"
	// GatewayNamespacesAnnotation, on a GatewayClass of crossgate's controller, says where its
	// Gateways run: GatewayNamespacesOwn (the default) in the controller's namespace and as the
	// export Gateway only; GatewayNamespacesAll in every namespace, those others as ingress
	// gateways with a proxy and an identity of their own but no mesh trust. A cluster operator
	// sets it; a namespace user cannot (GatewayClasses are cluster-scoped).
	GatewayNamespacesAnnotation = "crossgate.io/gateway-namespaces"
	GatewayNamespacesOwn        = "Own"
	GatewayNamespacesAll        = "All"
)

// ManagedBy is the label set marking an object as crossgate's.
func ManagedBy() map[string]string { return map[string]string{ManagedByLabel: ManagedByValue} }

// Installation defaults.
const (
	// FieldOwner is crossgate's server-side apply field manager on member clusters.
	FieldOwner = "crossgate"
	// SystemNamespace is the controller's namespace unless --namespace says otherwise.
	SystemNamespace = "crossgate-system"
	// DefaultGatewayName is the Gateway exports attach to, in SystemNamespace.
	DefaultGatewayName = "crossgate-gateway"
	// DefaultExportGateway is that Gateway as namespace/name.
	DefaultExportGateway = SystemNamespace + "/" + DefaultGatewayName
	// GatewayClass is the GatewayClass an installation creates, ControllerName its controller.
	GatewayClass   = "crossgate"
	ControllerName = "crossgate.io/gateway-controller"
	// RootCASecret holds the mesh's root CA in SystemNamespace.
	RootCASecret = "crossgate-root-ca"
	// DefaultTrustDomain is the SPIFFE trust domain when the MeshConfig names none.
	DefaultTrustDomain = "cluster.local"
	// DefaultDNSDomain is the cluster DNS domain when none is configured.
	DefaultDNSDomain = "cluster.local"
)

// SystemNamespaces are Kubernetes' own namespaces and crossgate's default one. Pods there are
// never injected, and Services there are never federated: the federation's ServiceAccount in a
// member may write ServiceImports anywhere but in these (an admission policy the join installs
// holds it to that), so a leaked member token cannot plant imports beside the cluster's own
// components.
var SystemNamespaces = []string{"kube-system", "kube-public", "kube-node-lease", SystemNamespace}

// IsSystemNamespace reports whether ns is one of the SystemNamespaces.
func IsSystemNamespace(ns string) bool { return slices.Contains(SystemNamespaces, ns) }

// GatewayServiceAccount is the ServiceAccount a Gateway's proxy runs as, in the Gateway's
// namespace: the Gateway's name.
func GatewayServiceAccount(gatewayName string) string { return gatewayName }

// IsPlaceholder reports whether a Service of this name and labels is crossgate's placeholder for
// the import of its name (a Service someone else wrote over is released: it loses these labels).
func IsPlaceholder(name string, labels map[string]string) bool {
	return labels[ImportLabel] == name && labels[ManagedByLabel] == ManagedByValue
}

// RenderedFor is the name of the Gateway an object was rendered for, given the object's labels:
// crossgate's (ManagedByLabel) and naming a Gateway (GatewayLabel). Empty for any other object.
func RenderedFor(labels map[string]string) string {
	if labels[ManagedByLabel] != ManagedByValue {
		return ""
	}
	return labels[GatewayLabel]
}
