package dataplane

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/crossgate-io/crossgate/translator/ir"
	"github.com/crossgate-io/crossgate/wellknown"
	"github.com/crossgate-io/crossgate/xds/translate"
)

const (
	// LBPortAnnotation on a Gateway sets the port its LoadBalancer Service exposes for the
	// listener on port 80 (the reference setup uses 81-83, one per cluster).
	LBPortAnnotation = "crossgate.io/lb-port"
	// NodePortAnnotation on a Gateway pins the node port of the listener on port 80, so that a
	// cluster without load balancers (kind, k3d) can map a fixed host port to it.
	NodePortAnnotation = "crossgate.io/node-port"
	// BootstrapConfigMap is the ConfigMap holding the Envoy bootstrap in a proxy's namespace.
	BootstrapConfigMap = "crossgate-bootstrap"
	// IdentitySecretPrefix starts the name of the Secret holding a proxy's certificate (see
	// IdentitySecretName).
	IdentitySecretPrefix = "crossgate-identity-"
)

// IdentitySecretName is the Secret holding the certificate of a ServiceAccount's proxies:
// IdentitySecretPrefix + the ServiceAccount's name, or, when that would pass the 253 characters
// of an object name (a ServiceAccount's name may have 253 itself), its first characters and a
// hash of the whole name, so that every ServiceAccount has a Secret and no two share one.
func IdentitySecretName(serviceAccount string) string {
	name := IdentitySecretPrefix + serviceAccount
	if len(name) <= validation.DNS1123SubdomainMaxLength {
		return name
	}
	sum := sha256.Sum256([]byte(serviceAccount))
	suffix := "-" + hex.EncodeToString(sum[:])[:16]
	keep := strings.TrimRight(name[:validation.DNS1123SubdomainMaxLength-len(suffix)], ".-")
	return keep + suffix
}

// RenderOptions are what every rendered gateway shares.
type RenderOptions struct {
	// Image is the Envoy image.
	Image string
}

// Rendered are the objects one Gateway runs as.
type Rendered struct {
	ServiceAccount *corev1.ServiceAccount
	Deployment     *appsv1.Deployment
	Service        *corev1.Service
}

// ServicePorts are the LoadBalancer Service's ports: one per distinct listener port but the
// proxy's own (ir.Reserved), exposed as itself, except that the listener on port 80 is exposed
// on the LB port annotation's value.
func ServicePorts(gw *gatewayv1.Gateway) ([]corev1.ServicePort, error) {
	lb := int32(0)
	if v, ok := gw.Annotations[LBPortAnnotation]; ok {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("annotation %s: %q is not a port number (1-65535)", LBPortAnnotation, v)
		}
		lb = int32(n)
	}
	node := int32(0)
	if v, ok := gw.Annotations[NodePortAnnotation]; ok {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("annotation %s: %q is not a port number (1-65535; the API server accepts its node-port range, 30000-32767 by default)", NodePortAnnotation, v)
		}
		node = int32(n)
	}
	var ports []int32
	for _, l := range gw.Spec.Listeners {
		// A listener on a port Envoy keeps for itself is not served (its status says so).
		if !slices.Contains(ports, l.Port) && !ir.Reserved(uint32(l.Port)) {
			ports = append(ports, l.Port)
		}
	}
	if len(ports) == 0 {
		return nil, fmt.Errorf("no listener port to expose: %d, %d, %d and %d are the proxy's own", ir.AdminPort, ir.OutboundCapturePort, ir.InboundCapturePort, ir.ProbePort)
	}
	slices.Sort(ports)
	var out []corev1.ServicePort
	for _, p := range ports {
		exposed := p
		if p == 80 && lb != 0 {
			exposed = lb
		}
		sp := corev1.ServicePort{
			Name: "port-" + strconv.Itoa(int(p)), Port: exposed, TargetPort: intstr.FromInt32(p), Protocol: corev1.ProtocolTCP,
		}
		if p == 80 {
			sp.NodePort = node
		}
		out = append(out, sp)
	}
	return out, nil
}

// ownKey reports whether a label or annotation key is in crossgate's domain.
func ownKey(k string) bool {
	domain, _, ok := strings.Cut(k, "/")
	return ok && (domain == wellknown.Domain || strings.HasSuffix(domain, "."+wellknown.Domain))
}

// Render returns the ServiceAccount, Deployment and Service of a Gateway. The proxy runs as the
// Gateway's ServiceAccount (wellknown.GatewayServiceAccount), with the shared bootstrap and its identity
// Secret mounted.
func Render(gw *gatewayv1.Gateway, opts RenderOptions) (*Rendered, error) {
	ports, err := ServicePorts(gw)
	if err != nil {
		return nil, err
	}
	sa := wellknown.GatewayServiceAccount(gw.Name)
	// The Gateway's spec.infrastructure labels and annotations go on everything rendered for it
	// (GatewayInfrastructure: "SHOULD be applied to any resources created in response to this
	// Gateway"); crossgate's own labels win a clash, as the selectors need them, and keys of
	// crossgate's own domain (crossgate.io/proxyless, crossgate.io/inject, ...) are not copied:
	// they would tell crossgate things about the proxy that the Gateway's author does not decide.
	labels, annotations := map[string]string{}, map[string]string{}
	if inf := gw.Spec.Infrastructure; inf != nil {
		for k, v := range inf.Labels {
			if !ownKey(string(k)) {
				labels[string(k)] = string(v)
			}
		}
		for k, v := range inf.Annotations {
			if !ownKey(string(k)) {
				annotations[string(k)] = string(v)
			}
		}
	}
	labels[wellknown.ManagedByLabel] = wellknown.ManagedByValue
	labels[wellknown.GatewayLabel] = gw.Name
	if len(annotations) == 0 {
		annotations = nil
	}
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Namespace: gw.Namespace, Name: name, Labels: labels, Annotations: annotations}
	}
	var containerPorts []corev1.ContainerPort
	for _, p := range ports {
		containerPorts = append(containerPorts, corev1.ContainerPort{Name: p.Name, ContainerPort: p.TargetPort.IntVal, Protocol: corev1.ProtocolTCP})
	}
	pod := corev1.PodSpec{
		ServiceAccountName: sa,
		SecurityContext: &corev1.PodSecurityContext{
			RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](101),
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			// Envoy binds the listener ports, 80 included, without privileges.
			Sysctls: []corev1.Sysctl{{Name: "net.ipv4.ip_unprivileged_port_start", Value: "0"}},
		},
		Containers: []corev1.Container{{
			Name:  "envoy",
			Image: opts.Image,
			Args: []string{
				"-c", BootstrapDir + "/" + BootstrapFile,
				"--service-node", wellknown.Gateway(gw.Namespace, gw.Name).String(),
				"--service-cluster", gw.Namespace + "/" + gw.Name,
				"--log-level", "info",
			},
			Ports: containerPorts,
			// Ready once Envoy has its listeners from xDS (the probe listener answers then),
			// whether or not any of the Gateway's listeners is served: a Gateway whose listeners
			// are all invalid still has a ready proxy.
			ReadinessProbe: &corev1.Probe{
				ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: translate.ReadyPath, Port: intstr.FromInt32(translate.ProbePort)}},
				PeriodSeconds: 5,
			},
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")},
			},
			SecurityContext: &corev1.SecurityContext{
				AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
				Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			},
			VolumeMounts: []corev1.VolumeMount{
				{Name: "bootstrap", MountPath: BootstrapDir, ReadOnly: true},
				{Name: "identity", MountPath: IdentityDir, ReadOnly: true},
			},
		}},
		Volumes: []corev1.Volume{
			{Name: "bootstrap", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: BootstrapConfigMap}}}},
			{Name: "identity", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: IdentitySecretName(sa)}}},
		},
	}
	deploy := &appsv1.Deployment{
		ObjectMeta: meta(gw.Name),
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{wellknown.GatewayLabel: gw.Name}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations}, Spec: pod},
		},
	}
	svc := &corev1.Service{
		ObjectMeta: meta(gw.Name),
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{wellknown.GatewayLabel: gw.Name},
			Ports:    ports,
		},
	}
	return &Rendered{ServiceAccount: &corev1.ServiceAccount{ObjectMeta: meta(sa)}, Deployment: deploy, Service: svc}, nil
}
