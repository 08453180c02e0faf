// Package inject is the sidecar-injection admission webhook: pods created in namespaces added to
// the mesh (`crossgate namespace add`) get the Envoy sidecar and the traffic-capture init
// container.
package inject

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/crossgate-io/crossgate/gateway"
	"github.com/crossgate-io/crossgate/translator"
	"github.com/crossgate-io/crossgate/xds/translate"
)

const (
	// NamespaceLabel marks a namespace whose pods get the sidecar; `crossgate namespace add` sets it.
	NamespaceLabel = translator.MeshNamespaceLabel
	// NamespaceLabelValue is its value.
	NamespaceLabelValue = translator.MeshNamespaceValue
	// PodAnnotation set to "false" on a pod opts it out.
	PodAnnotation = "crossgate.io/inject"
	// InjectedAnnotation records that a pod was injected (so a second pass does nothing).
	InjectedAnnotation = "crossgate.io/injected"
	// ProxyUID is the user the sidecar runs as; its own traffic is not captured.
	ProxyUID = 101
	// Path is where the webhook is served.
	Path = "/inject"
)

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
	if pod.Annotations[InjectedAnnotation] == "true" {
		return admission.Allowed("already injected")
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

// Mutate adds the sidecar, the init container, their volumes and the injected annotation.
func Mutate(pod *corev1.Pod, namespace string, opts Options) {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[InjectedAnnotation] = "true"
	out, in := strconv.Itoa(translate.OutboundCapturePort), strconv.Itoa(translate.InboundCapturePort)
	uid := strconv.Itoa(ProxyUID)
	// Outbound TCP goes to the sidecar's outbound port and inbound TCP to its inbound port,
	// except the sidecar's own traffic, loopback, and Envoy's admin port.
	script := "set -e\n" +
		"iptables -t nat -N CROSSGATE_OUT\n" +
		"iptables -t nat -A CROSSGATE_OUT -m owner --uid-owner " + uid + " -j RETURN\n" +
		"iptables -t nat -A CROSSGATE_OUT -d 127.0.0.1/32 -j RETURN\n" +
		"iptables -t nat -A CROSSGATE_OUT -p tcp -j REDIRECT --to-ports " + out + "\n" +
		"iptables -t nat -A OUTPUT -p tcp -j CROSSGATE_OUT\n" +
		"iptables -t nat -N CROSSGATE_IN\n" +
		"iptables -t nat -A CROSSGATE_IN -p tcp --dport " + strconv.Itoa(gateway.AdminPort) + " -j RETURN\n" +
		"iptables -t nat -A CROSSGATE_IN -p tcp -j REDIRECT --to-ports " + in + "\n" +
		"iptables -t nat -A PREROUTING -p tcp -j CROSSGATE_IN\n"
	pod.Spec.InitContainers = append([]corev1.Container{{
		Name:    "crossgate-init",
		Image:   opts.InitImage,
		Command: []string{"sh", "-c", script},
		SecurityContext: &corev1.SecurityContext{
			Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN", "NET_RAW"}, Drop: []corev1.Capability{"ALL"}},
			RunAsUser:    ptr.To[int64](0), RunAsNonRoot: ptr.To(false),
		},
	}}, pod.Spec.InitContainers...)
	pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{
		Name:  "envoy",
		Image: opts.ProxyImage,
		Args: []string{
			"-c", gateway.BootstrapDir + "/" + gateway.BootstrapFile,
			"--service-node", "sidecar~" + namespace + "/" + sa,
			"--service-cluster", namespace + "/" + sa,
			"--log-level", "warn",
		},
		Ports: []corev1.ContainerPort{{Name: "envoy-admin", ContainerPort: gateway.AdminPort}},
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")},
		},
		SecurityContext: &corev1.SecurityContext{
			RunAsUser: ptr.To[int64](ProxyUID), RunAsNonRoot: ptr.To(true),
			AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
		VolumeMounts: []corev1.VolumeMount{
			{Name: "crossgate-bootstrap", MountPath: gateway.BootstrapDir, ReadOnly: true},
			{Name: "crossgate-identity", MountPath: gateway.IdentityDir, ReadOnly: true},
		},
	})
	pod.Spec.Volumes = append(pod.Spec.Volumes,
		corev1.Volume{Name: "crossgate-bootstrap", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: gateway.BootstrapConfigMap}}}},
		corev1.Volume{Name: "crossgate-identity", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: gateway.IdentitySecretPrefix + sa}}},
	)
}
