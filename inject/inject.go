// Package inject is the sidecar-injection admission webhook: pods created in namespaces added to
// the mesh (`crossgate namespace add`) get the Envoy sidecar and the traffic-capture init
// container.
package inject

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/crossgate-io/crossgate/dataplane"
	"github.com/crossgate-io/crossgate/inject/capture"
	"github.com/crossgate-io/crossgate/translator/ir"
	"github.com/crossgate-io/crossgate/wellknown"
	"github.com/crossgate-io/crossgate/xds/translate"
)

const (
	// NamespaceLabel marks a namespace whose pods get the sidecar; `crossgate namespace add` sets it.
	NamespaceLabel = wellknown.MeshNamespaceLabel
	// NamespaceLabelValue is its value.
	NamespaceLabelValue = wellknown.MeshNamespaceValue
	// PodAnnotation set to "false" on a pod opts it out when the webhook is consulted.
	PodAnnotation = "crossgate.io/inject"
	// PodLabel set to "false" (or "disabled") on a pod opts it out before the webhook is
	// consulted (the registration's objectSelector), so such a pod is created even while the
	// webhook is down.
	PodLabel = "crossgate.io/inject"
	// InjectedAnnotation records that a pod was injected (so a second pass does nothing).
	InjectedAnnotation = "crossgate.io/injected"
	// ProxyUID is the user the sidecar runs as (capture.ProxyUID).
	ProxyUID = capture.ProxyUID
	// Path is where the webhook is served.
	Path = "/inject"
)

// OptOutValues of PodLabel and PodAnnotation opt a pod out.
var OptOutValues = []string{"false", "disabled"}

// Options of the injected containers.
type Options struct {
	// ProxyImage is the Envoy image; InitImage has iptables and sh.
	ProxyImage, InitImage string
}

// Handler is the admission handler.
type Handler struct {
	Opts    Options
	decoder admission.Decoder
}

// NewHandler returns the handler, served at Path by an HTTPS server.
func NewHandler(opts Options) http.Handler {
	s := runtime.NewScheme()
	_ = corev1.AddToScheme(s)
	_ = admissionv1.AddToScheme(s)
	h := &Handler{Opts: opts, decoder: admission.NewDecoder(s)}
	return &admission.Webhook{Handler: h}
}

// Handle mutates a pod being created.
func (h *Handler) Handle(_ context.Context, req admission.Request) admission.Response {
	if req.Kind.Kind != "Pod" || req.Operation != admissionv1.Create {
		return admission.Allowed("not a pod creation")
	}
	pod := &corev1.Pod{}
	if err := h.decoder.Decode(req, pod); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding the pod: %w", err))
	}
	if v := pod.Annotations[PodAnnotation]; v == "false" || v == "disabled" {
		return admission.Allowed("opted out by annotation " + PodAnnotation)
	}
	if v := pod.Labels[PodLabel]; slices.Contains(OptOutValues, v) {
		return admission.Allowed("opted out by label " + PodLabel)
	}
	if pod.Annotations[InjectedAnnotation] == "true" {
		return admission.Allowed("already injected")
	}
	if pod.Spec.HostNetwork {
		// The capture rules would take the node's own traffic.
		return admission.Allowed("not injected: a hostNetwork pod shares the node's network, whose traffic capture would take")
	}
	ns := pod.Namespace
	if ns == "" {
		ns = req.Namespace
	}
	Mutate(pod, ns, h.Opts)
	out, err := json.Marshal(pod)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	return admission.PatchResponseFromRaw(req.Object.Raw, out)
}

// Mutate adds the sidecar, the init container, their volumes and the injected annotation, and
// rewrites the application's HTTP probes to reach it through the sidecar's probe port.
//
// The sidecar is a native sidecar (an init container that keeps running, restartPolicy Always):
// kubelet starts it after the capture rules are installed and before the application, whose
// containers start once its startup probe passes, that is once Envoy has received its
// listeners. A connection the application opens before that would be refused (captured towards
// a port nothing listens on yet).
func Mutate(pod *corev1.Pod, namespace string, opts Options) {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[InjectedAnnotation] = "true"
	if probes := rewriteProbes(pod); len(probes) > 0 {
		b, _ := json.Marshal(probes)
		pod.Annotations[wellknown.ProbesAnnotation] = string(b)
	}
	always := corev1.ContainerRestartPolicyAlways
	ready := &corev1.Probe{
		ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: translate.ReadyPath, Port: intstr.FromInt32(translate.ProbePort)}},
		PeriodSeconds:    1,
		FailureThreshold: 120,
	}
	initContainers := []corev1.Container{{
		Name:    "crossgate-init",
		Image:   opts.InitImage,
		Command: []string{"sh", "-c", capture.Script(capture.Sidecar())},
		SecurityContext: &corev1.SecurityContext{
			Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN", "NET_RAW"}, Drop: []corev1.Capability{"ALL"}},
			RunAsUser:    ptr.To[int64](0), RunAsNonRoot: ptr.To(false),
		},
	}, {
		Name:          "envoy",
		Image:         opts.ProxyImage,
		RestartPolicy: &always,
		Args: []string{
			"-c", dataplane.BootstrapDir + "/" + dataplane.BootstrapFile,
			"--service-node", wellknown.Sidecar(namespace, sa).String(),
			"--service-cluster", namespace + "/" + sa,
			"--log-level", "warn",
		},
		Ports: []corev1.ContainerPort{
			{Name: "envoy-admin", ContainerPort: dataplane.AdminPort},
			{Name: "crossgate-probe", ContainerPort: translate.ProbePort},
		},
		StartupProbe:   ready,
		ReadinessProbe: &corev1.Probe{ProbeHandler: ready.ProbeHandler, PeriodSeconds: 5},
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")},
		},
		SecurityContext: &corev1.SecurityContext{
			RunAsUser: ptr.To[int64](ProxyUID), RunAsGroup: ptr.To[int64](ProxyUID), RunAsNonRoot: ptr.To(true),
			AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
		VolumeMounts: []corev1.VolumeMount{
			{Name: "crossgate-bootstrap", MountPath: dataplane.BootstrapDir, ReadOnly: true},
			{Name: "crossgate-identity", MountPath: dataplane.IdentityDir, ReadOnly: true},
		},
	}}
	pod.Spec.InitContainers = append(initContainers, pod.Spec.InitContainers...)
	pod.Spec.Volumes = append(pod.Spec.Volumes,
		corev1.Volume{Name: "crossgate-bootstrap", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: dataplane.BootstrapConfigMap},
		}}},
		corev1.Volume{Name: "crossgate-identity", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: dataplane.IdentitySecretName(sa),
		}}},
	)
}

// rewriteProbes points the application containers' HTTP probes at the sidecar's probe port, which
// forwards each to the application in plaintext: kubelet's probes come without a client
// certificate, so through the inbound listener they would be refused in policy mode (Istio and
// OSM rewrite probes for the same reason). It returns the probes as the sidecar must forward them.
// HTTPS probes, probes naming a host, tcpSocket, gRPC and exec probes are left as they are.
func rewriteProbes(pod *corev1.Pod) []ir.Probe {
	var out []ir.Probe
	for ci := range pod.Spec.Containers {
		c := &pod.Spec.Containers[ci]
		for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
			if p == nil || p.HTTPGet == nil || p.HTTPGet.Host != "" || (p.HTTPGet.Scheme != "" && p.HTTPGet.Scheme != corev1.URISchemeHTTP) {
				continue
			}
			port := containerPort(c, p.HTTPGet.Port)
			if port <= 0 || ir.Reserved(uint32(port)) {
				continue
			}
			path := p.HTTPGet.Path
			if !strings.HasPrefix(path, "/") {
				path = "/" + path
			}
			p.HTTPGet.Port = intstr.FromInt32(translate.ProbePort)
			p.HTTPGet.Path = translate.ProbePathPrefix + strconv.Itoa(int(port)) + path
			pr := ir.Probe{Port: uint32(port), Path: path}
			if !slices.Contains(out, pr) {
				out = append(out, pr)
			}
		}
	}
	return out
}

// containerPort resolves a probe's port, a number or the name of one of the container's ports.
func containerPort(c *corev1.Container, port intstr.IntOrString) int32 {
	if port.Type == intstr.Int {
		return port.IntVal
	}
	for _, p := range c.Ports {
		if p.Name == port.StrVal {
			return p.ContainerPort
		}
	}
	return 0
}
