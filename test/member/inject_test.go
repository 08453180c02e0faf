//go:build integration

package member

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/crossgate-io/crossgate/dataplane"
	"github.com/crossgate-io/crossgate/inject"
)

func pod(ns, name string, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations},
		Spec: corev1.PodSpec{ServiceAccountName: "curl", Containers: []corev1.Container{{
			Name: "curl", Image: "curlimages/curl",
			Ports:          []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("http")}}},
			LivenessProbe:  &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8080)}}},
		}}},
	}
}

func containerNames(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

// TestSidecarInjection registers the webhook with the real API server (served on loopback with a
// certificate of the cluster's CA) and creates pods through it.
func TestSidecarInjection(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cl := sb.Cluster("cluster-1")
	c := cl.Client
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &inject.Server{
		Handler: inject.NewHandler(inject.Options{ProxyImage: "envoy:test", InitImage: "init:test"}),
		CA:      ca, IPs: []net.IP{net.ParseIP("127.0.0.1")},
	}
	srvCtx, stopWebhook := context.WithCancel(ctx)
	defer stopWebhook()
	go func() { _ = srv.Serve(srvCtx, ln) }()
	root, _ := ca.PEM()
	url := fmt.Sprintf("https://%s%s", ln.Addr(), inject.Path)
	if err := inject.EnsureConfiguration(ctx, c, inject.Configuration(admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: root}, "crossgate-system")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.Delete(context.Background(), &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: inject.ConfigurationName}})
	})
	mustCreate(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "injected", Labels: map[string]string{inject.NamespaceLabel: inject.NamespaceLabelValue}}})
	mustCreate(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "not-injected"}})
	for _, ns := range []string{"injected", "not-injected"} {
		mustCreate(t, c, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "curl"}})
	}

	// The registration reaches the API server's admission chain a moment after it is written.
	var got *corev1.Pod
	eventually(t, 10*time.Second, "an injected pod", func() error {
		p := pod("injected", fmt.Sprintf("curl-%d", time.Now().UnixNano()), nil)
		if err := c.Create(ctx, p); err != nil {
			return err
		}
		if len(p.Spec.InitContainers) == 0 {
			_ = c.Delete(ctx, p)
			return fmt.Errorf("pod created without injection: containers %v", containerNames(p.Spec.Containers))
		}
		got = p
		return nil
	})
	if names := containerNames(got.Spec.Containers); len(names) != 1 || names[0] != "curl" {
		t.Errorf("containers %v, want curl only", names)
	}
	// Envoy is a native sidecar: an init container that keeps running, started after the capture
	// rules and before the application (the API server keeps restartPolicy: it supports them).
	if names := containerNames(got.Spec.InitContainers); len(names) != 2 || names[0] != "crossgate-init" || names[1] != "envoy" {
		t.Fatalf("init containers %v, want crossgate-init then envoy", names)
	}
	envoy := got.Spec.InitContainers[1]
	if envoy.Image != "envoy:test" || fmt.Sprint(envoy.Args) != fmt.Sprint([]string{
		"-c", dataplane.BootstrapDir + "/" + dataplane.BootstrapFile,
		"--service-node", "sidecar~injected/curl", "--service-cluster", "injected/curl", "--log-level", "warn",
	}) {
		t.Errorf("envoy container %v %v", envoy.Image, envoy.Args)
	}
	if envoy.RestartPolicy == nil || *envoy.RestartPolicy != corev1.ContainerRestartPolicyAlways || envoy.StartupProbe == nil {
		t.Errorf("envoy is not a native sidecar with a startup probe: restartPolicy %v, startupProbe %v", envoy.RestartPolicy, envoy.StartupProbe)
	}
	if u := envoy.SecurityContext.RunAsUser; u == nil || *u != inject.ProxyUID || *u == 101 {
		t.Errorf("envoy runs as %v, want the dedicated proxy UID %d", u, inject.ProxyUID)
	}
	// The HTTP probe (by port name) goes to the sidecar's probe port; the tcpSocket one is kept.
	app := got.Spec.Containers[0]
	if g := app.ReadinessProbe.HTTPGet; g.Port.IntValue() != 15020 || g.Path != "/crossgate-probe/8080/ready" {
		t.Errorf("readiness probe %d %s, want 15020 /crossgate-probe/8080/ready", g.Port.IntValue(), g.Path)
	}
	if app.LivenessProbe.TCPSocket == nil || app.LivenessProbe.TCPSocket.Port.IntValue() != 8080 {
		t.Errorf("liveness probe %+v changed", app.LivenessProbe)
	}
	if a := got.Annotations["crossgate.io/probes"]; a != `[{"port":8080,"path":"/ready"}]` {
		t.Errorf("probes annotation %q", a)
	}

	// Kubernetes' namespaces and the controller's are never injected, even labelled.
	for _, ns := range []string{"kube-system", "crossgate-system"} {
		var n corev1.Namespace
		if err := c.Get(ctx, types.NamespacedName{Name: ns}, &n); err != nil {
			mustCreate(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
			_ = c.Get(ctx, types.NamespacedName{Name: ns}, &n)
		}
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		n.Labels[inject.NamespaceLabel] = inject.NamespaceLabelValue
		if err := c.Update(ctx, &n); err != nil {
			t.Fatal(err)
		}
		mustCreate(t, c, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "curl"}})
		p := pod(ns, "protected", nil)
		if err := c.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		if len(p.Spec.InitContainers) != 0 {
			t.Errorf("a pod of %s was injected", ns)
		}
		delete(n.Labels, inject.NamespaceLabel)
		_ = c.Update(ctx, &n)
	}
	for _, tc := range []struct {
		ns, name    string
		annotations map[string]string
	}{
		{"not-injected", "plain", nil},
		{"injected", "opted-out", map[string]string{inject.PodAnnotation: "false"}},
		{"injected", "host-network", nil},
	} {
		p := pod(tc.ns, tc.name, tc.annotations)
		p.Spec.HostNetwork = tc.name == "host-network"
		if err := c.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		if len(p.Spec.InitContainers) != 0 || len(p.Spec.Containers) != 1 || p.Spec.Containers[0].ReadinessProbe.HTTPGet.Port.IntValue() == 15020 {
			t.Errorf("%s/%s was injected: %v %v", tc.ns, tc.name, containerNames(p.Spec.InitContainers), containerNames(p.Spec.Containers))
		}
	}

	// What the sidecar mounts: the identity Secret of its ServiceAccount and the bootstrap.
	eventually(t, 5*time.Second, "identity Secret and bootstrap of the injected namespace", func() error {
		if err := c.Get(ctx, types.NamespacedName{Namespace: "injected", Name: dataplane.IdentitySecretPrefix + "curl"}, &corev1.Secret{}); err != nil {
			return err
		}
		return c.Get(ctx, types.NamespacedName{Namespace: "injected", Name: dataplane.BootstrapConfigMap}, &corev1.ConfigMap{})
	})
	if err := c.Get(ctx, types.NamespacedName{Namespace: "not-injected", Name: dataplane.IdentitySecretPrefix + "curl"}, &corev1.Secret{}); err == nil {
		t.Error("a namespace not in the mesh got an identity Secret")
	}

	// A ServiceAccount whose name is as long as names go (253) gets its identity too, and its
	// pods mount it: the Secret's name is shortened with a hash instead of failing.
	long := strings.Repeat("a", 120) + "." + strings.Repeat("b", 132)
	mustCreate(t, c, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "injected", Name: long}})
	secret := dataplane.IdentitySecretName(long)
	if len(secret) > 253 || secret == dataplane.IdentitySecretName(long[:252]+"c") {
		t.Fatalf("the identity Secret's name %q is too long or not unique", secret)
	}
	eventually(t, 10*time.Second, "the identity Secret of a ServiceAccount with a 253-character name", func() error {
		var s corev1.Secret
		if err := c.Get(ctx, types.NamespacedName{Namespace: "injected", Name: secret}, &s); err != nil {
			return err
		}
		if len(s.Data["tls.crt"]) == 0 {
			return fmt.Errorf("no certificate")
		}
		return nil
	})
	p := pod("injected", "long-account", nil)
	p.Spec.ServiceAccountName = long
	if err := c.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	mounted := false
	for _, v := range p.Spec.Volumes {
		mounted = mounted || (v.Secret != nil && v.Secret.SecretName == secret)
	}
	if !mounted {
		t.Errorf("the pod does not mount %s: %+v", secret, p.Spec.Volumes)
	}

	// With the webhook down, a pod of the mesh is refused (fail closed) and a pod labelled out
	// starts: the registration's objectSelector keeps it from the webhook.
	stopWebhook()
	eventually(t, 15*time.Second, "a pod of the mesh refused while the webhook is down", func() error {
		p := pod("injected", fmt.Sprintf("down-%d", time.Now().UnixNano()), nil)
		if err := c.Create(ctx, p); err == nil {
			_ = c.Delete(ctx, p)
			return fmt.Errorf("created")
		}
		return nil
	})
	out := pod("injected", "labelled-out", nil)
	out.Labels = map[string]string{inject.PodLabel: "false"}
	if err := c.Create(ctx, out); err != nil {
		t.Errorf("a pod labelled %s=false is refused while the webhook is down: %v", inject.PodLabel, err)
	} else if len(out.Spec.InitContainers) != 0 {
		t.Errorf("a pod labelled out was injected")
	}
}
