package app

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/crossgate-io/crossgate/dataplane"
	"github.com/crossgate-io/crossgate/wellknown"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// The container refuses a command line or environment it cannot run with, naming what is wrong.
func TestRunContainerRefuses(t *testing.T) {
	good := map[string]string{podAddressEnv: "127.0.0.1", PodIPEnv: "10.241.128.2", PodNamespaceEnv: "web", ServiceAccountEnv: "default"}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"mode", []string{"--mode=sideways"}, good, `--mode "sideways"`},
		{"port", []string{"--port=0", "--mode=none"}, good, "--port 0"},
		{"address", []string{"--mode=none"}, map[string]string{PodIPEnv: "10.241.128.2", PodNamespaceEnv: "web", ServiceAccountEnv: "default"}, podAddressEnv},
		{"downward API", []string{"--mode=none"}, map[string]string{podAddressEnv: "127.0.0.1"}, PodIPEnv},
		{"no bootstrap", []string{"--mode=sidecar"}, good, "is namespace web in the mesh"},
		{"flag", []string{"--colour=blue"}, good, "command line"},
	} {
		err := RunContainer(context.Background(), tc.args, env(tc.env), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %q", tc.name, err, tc.want)
		}
	}
}

// Outside the mesh the container answers its message on the pod's address until stopped.
func TestRunContainerServes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- RunContainer(ctx, []string{"--port=" + strconv.Itoa(port), "--message=hello", "--mode=none"},
			env(map[string]string{podAddressEnv: "127.0.0.1", PodIPEnv: "10.241.128.2", PodNamespaceEnv: "web", ServiceAccountEnv: "default"}), nil)
	}()
	var body []byte
	for start := time.Now(); time.Since(start) < 30*time.Second; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/")
		if err != nil {
			continue
		}
		body, _ = io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		break
	}
	if string(body) != "hello\n" {
		t.Errorf("answer %q, want hello", body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("stopped: %v", err)
	}
}

// The Deployment mounts the mesh's bootstrap and the ServiceAccount's identity Secret where an
// injected sidecar has them, marks proxyless pods, and mounts nothing outside the mesh.
func TestDeployment(t *testing.T) {
	o := DeploymentOptions{Namespace: "grpc", Name: "echo", ServiceAccount: "echo", Labels: map[string]string{"app": "echo"}, Port: 8080, Message: "m", Mode: ModeProxyless}
	d := Deployment(o)
	spec := d.Spec.Template.Spec
	if d.Spec.Template.Annotations[wellknown.ProxylessAnnotation] != "true" || spec.ServiceAccountName != "echo" || *d.Spec.Replicas != 1 {
		t.Errorf("proxyless Deployment: %+v", d.Spec.Template)
	}
	mounts := map[string]string{}
	for _, m := range spec.Containers[0].VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	if mounts["crossgate-bootstrap"] != dataplane.BootstrapDir || mounts["crossgate-identity"] != dataplane.IdentityDir ||
		len(spec.Volumes) != 2 || spec.Volumes[1].Secret.SecretName != dataplane.IdentitySecretName("echo") || spec.Volumes[0].ConfigMap.Name != dataplane.BootstrapConfigMap {
		t.Errorf("mounts %v, volumes %+v", mounts, spec.Volumes)
	}
	o.Mode = ModeNone
	if d := Deployment(o); len(d.Spec.Template.Spec.Volumes) != 0 || d.Spec.Template.Annotations[wellknown.ProxylessAnnotation] != "" {
		t.Errorf("outside the mesh: %+v", d.Spec.Template)
	}
}
