package member

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/crossgate-io/crossgate/gateway"
	"github.com/crossgate-io/crossgate/inject"
)

func pod(ns, name string, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations},
		Spec:       corev1.PodSpec{ServiceAccountName: "curl", Containers: []corev1.Container{{Name: "curl", Image: "curlimages/curl"}}},
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
	go func() { _ = srv.Serve(ctx, ln) }()
	root, _ := ca.PEM()
	url := fmt.Sprintf("https://%s%s", ln.Addr(), inject.Path)
	if err := inject.EnsureConfiguration(ctx, c, inject.Configuration(admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: root})); err != nil {
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
	if names := containerNames(got.Spec.Containers); len(names) != 2 || names[1] != "envoy" {
		t.Errorf("containers %v, want curl and envoy", names)
	}
	if names := containerNames(got.Spec.InitContainers); len(names) != 1 || names[0] != "crossgate-init" {
		t.Errorf("init containers %v", names)
	}
	envoy := got.Spec.Containers[1]
	if envoy.Image != "envoy:test" || fmt.Sprint(envoy.Args) != fmt.Sprint([]string{"-c", gateway.BootstrapDir + "/" + gateway.BootstrapFile,
		"--service-node", "sidecar~injected/curl", "--service-cluster", "injected/curl", "--log-level", "warn"}) {
		t.Errorf("envoy container %v %v", envoy.Image, envoy.Args)
	}

	for _, tc := range []struct {
		ns, name    string
		annotations map[string]string
	}{
		{"not-injected", "plain", nil},
		{"injected", "opted-out", map[string]string{inject.PodAnnotation: "false"}},
	} {
		p := pod(tc.ns, tc.name, tc.annotations)
		if err := c.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		if len(p.Spec.InitContainers) != 0 || len(p.Spec.Containers) != 1 {
			t.Errorf("%s/%s was injected: %v %v", tc.ns, tc.name, containerNames(p.Spec.InitContainers), containerNames(p.Spec.Containers))
		}
	}

	// What the sidecar mounts: the identity Secret of its ServiceAccount and the bootstrap.
	eventually(t, 5*time.Second, "identity Secret and bootstrap of the injected namespace", func() error {
		if err := c.Get(ctx, types.NamespacedName{Namespace: "injected", Name: gateway.IdentitySecretPrefix + "curl"}, &corev1.Secret{}); err != nil {
			return err
		}
		return c.Get(ctx, types.NamespacedName{Namespace: "injected", Name: gateway.BootstrapConfigMap}, &corev1.ConfigMap{})
	})
	if err := c.Get(ctx, types.NamespacedName{Namespace: "not-injected", Name: gateway.IdentitySecretPrefix + "curl"}, &corev1.Secret{}); err == nil {
		t.Error("a namespace not in the mesh got an identity Secret")
	}
}
