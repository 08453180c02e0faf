//go:build integration

package kubelet_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/crossgate-io/crossgate/sandbox"
	"github.com/crossgate-io/crossgate/sandbox/app"
	"github.com/crossgate-io/crossgate/sandbox/kubelet"
	"github.com/crossgate-io/crossgate/sandbox/network"
)

// startNode starts one cluster with kube-controller-manager and the sandbox node.
func startNode(t *testing.T) (*sandbox.Cluster, client.Client) {
	t.Helper()
	return startNodeWith(t, "")
}

// startNodeWith is startNode with the crossgate binary, whose images the node then runs too.
func startNodeWith(t *testing.T, crossgate string) (*sandbox.Cluster, client.Client) {
	t.Helper()
	bin, err := sandbox.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := sandbox.NodeImages(bin, "")[sandbox.EchoImage]; !ok {
		t.Fatalf("%s/echo-basic is missing: run `make bins`", bin)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := sandbox.Start(ctx, sandbox.Options{
		Clusters: []string{"cluster-1"}, Dir: t.TempDir(), SkipCRDs: true, Node: true, Crossgate: crossgate,
		NodeLog: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	c := s.Clusters[0]
	return c, c.Client
}

// echo is what the conformance echo server answers.
type echo struct {
	Path, Namespace, Pod string
}

func get(addr, path string) (echo, error) {
	hc := http.Client{Timeout: 3 * time.Second}
	resp, err := hc.Get("http://" + addr + path)
	if err != nil {
		return echo{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e echo
	if err := json.Unmarshal(b, &e); err != nil {
		return e, fmt.Errorf("%s: %w", b, err)
	}
	return e, nil
}

// A Deployment of the conformance echo server runs on the sandbox node as processes: the
// Deployment and ReplicaSet controllers make its Pods, the node binds and runs them each in a
// network namespace of its own behind its own pod address (two replicas listen on the same port
// without colliding), with their fieldRef environment and readiness probe; the EndpointSlice
// controller lists them; a killed process is restarted; a deleted Pod's process stops and the
// Pod goes; the Deployment's deletion takes its Pods with it.
func TestEchoDeployment(t *testing.T) {
	cl, c := startNode(t)
	ctx := context.Background()
	var node corev1.Node
	if err := c.Get(ctx, client.ObjectKey{Name: sandbox.NodeName(cl.Name)}, &node); err != nil {
		t.Fatal(err)
	}
	if len(node.Status.Conditions) != 1 || node.Status.Conditions[0].Type != corev1.NodeReady || node.Status.Conditions[0].Status != corev1.ConditionTrue {
		t.Fatalf("the Node's conditions: %+v", node.Status.Conditions)
	}
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "infra"}}); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "echo"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "infra", Name: "echo"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					// No port declared, as in the conformance suite's Deployments: the node
					// forwards what the EndpointSlices send to the pod.
					Name: "echo", Image: sandbox.EchoImage + ":v1.5.1",
					Env: []corev1.EnvVar{
						{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
						{Name: "NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
					},
					ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/health", Port: intstr.FromInt(3000)}}},
				}}},
			},
		},
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "infra", Name: "echo"},
		Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Port: 8080, TargetPort: intstr.FromInt(3000)}}},
	}
	for _, o := range []client.Object{dep, svc} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	pods := func() []corev1.Pod {
		var l corev1.PodList
		if err := c.List(ctx, &l, client.InNamespace("infra"), client.MatchingLabels(labels)); err != nil {
			t.Fatal(err)
		}
		return l.Items
	}
	poll(t, time.Minute, "the Deployment available, 2 of 2", func() error {
		var d appsv1.Deployment
		if err := c.Get(ctx, client.ObjectKeyFromObject(dep), &d); err != nil {
			return err
		}
		if d.Status.AvailableReplicas != 2 {
			return fmt.Errorf("status %+v", d.Status)
		}
		return nil
	})
	// Each endpoint answers as its own pod: the slice's address is the pod's, the echo server
	// got its name and namespace from the downward API.
	var slice discoveryv1.EndpointSlice
	poll(t, 30*time.Second, "the EndpointSlice with both pods ready", func() error {
		var l discoveryv1.EndpointSliceList
		if err := c.List(ctx, &l, client.InNamespace("infra"), client.MatchingLabels{discoveryv1.LabelServiceName: "echo"}); err != nil {
			return err
		}
		ready := 0
		for _, s := range l.Items {
			for _, e := range s.Endpoints {
				if ptr.Deref(e.Conditions.Ready, false) {
					ready++
				}
			}
		}
		if len(l.Items) != 1 || ready != 2 {
			return fmt.Errorf("slices %+v", l.Items)
		}
		slice = l.Items[0]
		return nil
	})
	for _, e := range slice.Endpoints {
		addr := network.LoopbackAddr(net.JoinHostPort(e.Addresses[0], "3000"))
		if !strings.HasPrefix(e.Addresses[0], "10.240.") {
			t.Fatalf("pod address %s, not the sandbox's pod network", e.Addresses[0])
		}
		poll(t, 10*time.Second, "the endpoint "+addr+" answering as its pod", func() error {
			got, err := get(addr, "/hello")
			if err != nil {
				return err
			}
			if got.Pod != e.TargetRef.Name || got.Namespace != "infra" || got.Path != "/hello" {
				return fmt.Errorf("%s answered %+v, want pod %s in infra", addr, got, e.TargetRef.Name)
			}
			return nil
		})
	}

	// The API server reads the containers' logs from the node (kubectl logs), with sinceTime.
	for _, e := range slice.Endpoints {
		logs := func(since time.Time) (string, error) {
			b, err := cl.Kube.CoreV1().Pods("infra").GetLogs(e.TargetRef.Name, &corev1.PodLogOptions{Container: "echo", SinceTime: &metav1.Time{Time: since}}).DoRaw(ctx)
			return string(b), err
		}
		poll(t, 10*time.Second, "the request in "+e.TargetRef.Name+"'s log", func() error {
			got, err := logs(time.Now().Add(-time.Hour))
			if err != nil {
				return err
			}
			if !strings.Contains(got, "Echoing back request made to /hello to client") {
				return fmt.Errorf("log %q", got)
			}
			return nil
		})
		if got, err := logs(time.Now().Add(time.Hour)); err != nil || got != "" {
			t.Fatalf("the log since an hour from now: %q, %v", got, err)
		}
	}

	// A process that dies is restarted (restartPolicy Always), and the Pod counts it.
	victim := pods()[0]
	pid, err := strconv.Atoi(strings.TrimPrefix(victim.Status.ContainerStatuses[0].ContainerID, "sandbox://"))
	if err != nil {
		t.Fatalf("container id %q", victim.Status.ContainerStatuses[0].ContainerID)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	poll(t, 30*time.Second, "the killed container restarted and ready", func() error {
		var p corev1.Pod
		if err := c.Get(ctx, client.ObjectKeyFromObject(&victim), &p); err != nil {
			return err
		}
		cs := p.Status.ContainerStatuses[0]
		if cs.RestartCount != 1 || !cs.Ready || cs.LastTerminationState.Terminated == nil || cs.LastTerminationState.Terminated.ExitCode != 137 {
			return fmt.Errorf("container status %+v", cs)
		}
		return nil
	})

	// A deleted Pod's process stops and the Pod goes; the ReplicaSet replaces it.
	victim = pods()[0]
	pid, _ = strconv.Atoi(strings.TrimPrefix(victim.Status.ContainerStatuses[0].ContainerID, "sandbox://"))
	if err := c.Delete(ctx, &victim); err != nil {
		t.Fatal(err)
	}
	poll(t, 30*time.Second, "the deleted Pod gone, its process stopped", func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(&victim), &corev1.Pod{}); err == nil {
			return fmt.Errorf("still there")
		}
		if syscall.Kill(pid, 0) == nil {
			return fmt.Errorf("process %d still runs", pid)
		}
		return nil
	})
	poll(t, time.Minute, "a replacement Pod ready", func() error {
		ready := 0
		for _, p := range pods() {
			if p.Name != victim.Name && podReady(&p) {
				ready++
			}
		}
		if ready != 2 {
			return fmt.Errorf("%d ready", ready)
		}
		return nil
	})

	// The Deployment's deletion takes its ReplicaSet and Pods (the garbage collector), and the
	// node stops their processes.
	var pids []int
	for _, p := range pods() {
		n, _ := strconv.Atoi(strings.TrimPrefix(p.Status.ContainerStatuses[0].ContainerID, "sandbox://"))
		pids = append(pids, n)
	}
	if err := c.Delete(ctx, dep, client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil {
		t.Fatal(err)
	}
	poll(t, time.Minute, "the Deployment's Pods and processes gone", func() error {
		if n := len(pods()); n != 0 {
			return fmt.Errorf("%d pods left", n)
		}
		for _, pid := range pids {
			if syscall.Kill(pid, 0) == nil {
				return fmt.Errorf("process %d still runs", pid)
			}
		}
		return nil
	})
}

// A Pod of an image the node does not know, or asking for what it cannot give, is bound and
// reported Waiting with the reason, and never Ready; a Pod whose nodeSelector the node does not
// match stays unscheduled, saying why.
func TestPodsTheNodeCannotRun(t *testing.T) {
	cl, c := startNode(t)
	ctx := context.Background()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "web"}}); err != nil {
		t.Fatal(err)
	}
	poll(t, 30*time.Second, "the default ServiceAccount", func() error {
		return c.Get(ctx, client.ObjectKey{Namespace: "web", Name: "default"}, &corev1.ServiceAccount{})
	})
	cases := []struct {
		pod    corev1.PodSpec
		reason string
		says   string
	}{
		{corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27"}}}, kubelet.ReasonUnknownImage, `not "nginx:1.27"`},
		{corev1.PodSpec{Containers: []corev1.Container{{Name: "echo", Image: sandbox.EchoImage, Command: []string{"/bin/sh"}}}}, kubelet.ReasonConfig, "containers[echo].command"},
		{corev1.PodSpec{
			Containers: []corev1.Container{{Name: "echo", Image: sandbox.EchoImage, VolumeMounts: []corev1.VolumeMount{{Name: "scratch", MountPath: "/tmp/x"}}}},
			Volumes:    []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		}, kubelet.ReasonConfig, "ConfigMap and Secret volumes only"},
		{corev1.PodSpec{Containers: []corev1.Container{{Name: "echo", Image: sandbox.EchoImage, Env: []corev1.EnvVar{
			{Name: "X", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "absent"}, Key: "k"}}},
		}}}}, kubelet.ReasonConfig, "containers[echo].env[X]"},
	}
	for i, tc := range cases {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "p" + strconv.Itoa(i)}, Spec: tc.pod}
		if err := c.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		poll(t, 30*time.Second, p.Name+" reported "+tc.reason, func() error {
			if err := c.Get(ctx, client.ObjectKeyFromObject(p), p); err != nil {
				return err
			}
			if p.Spec.NodeName != sandbox.NodeName(cl.Name) || len(p.Status.ContainerStatuses) != 1 {
				return fmt.Errorf("node %q, status %+v", p.Spec.NodeName, p.Status)
			}
			w := p.Status.ContainerStatuses[0].State.Waiting
			if w == nil || w.Reason != tc.reason || !strings.Contains(w.Message, tc.says) {
				return fmt.Errorf("state %+v", p.Status.ContainerStatuses[0].State)
			}
			return nil
		})
		if podReady(p) || p.Status.Phase != corev1.PodPending {
			t.Fatalf("%s: phase %s, ready %v", p.Name, p.Status.Phase, podReady(p))
		}
	}
	picky := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "picky"},
		Spec:       corev1.PodSpec{NodeSelector: map[string]string{"disk": "ssd"}, Containers: []corev1.Container{{Name: "echo", Image: sandbox.EchoImage}}},
	}
	if err := c.Create(ctx, picky); err != nil {
		t.Fatal(err)
	}
	poll(t, 30*time.Second, "the Pod the node does not match, Unschedulable", func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(picky), picky); err != nil {
			return err
		}
		for _, cond := range picky.Status.Conditions {
			if cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionFalse && cond.Reason == corev1.PodReasonUnschedulable && strings.Contains(cond.Message, "nodeSelector") {
				return nil
			}
		}
		return fmt.Errorf("node %q, conditions %+v", picky.Spec.NodeName, picky.Status.Conditions)
	})
	if picky.Spec.NodeName != "" {
		t.Fatalf("bound to %s", picky.Spec.NodeName)
	}
}

// A Secret volume is written under the pod's directory, and the paths under its mountPath in
// the container's environment name the files there: the echo server serves HTTPS with the
// Secret's certificate, as the conformance suite's tls-backend does.
func TestSecretVolume(t *testing.T) {
	_, c := startNode(t)
	ctx := context.Background()
	certPEM, keyPEM, err := sandbox.SelfSigned("tls-backend", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "infra"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "infra", Name: "tls"}, Data: map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM}},
	} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	poll(t, 30*time.Second, "the default ServiceAccount", func() error {
		return c.Get(ctx, client.ObjectKey{Namespace: "infra", Name: "default"}, &corev1.ServiceAccount{})
	})
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "infra", Name: "tls-backend"},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name: "echo", Image: sandbox.EchoImage + ":v1.5.1",
				Ports: []corev1.ContainerPort{{ContainerPort: 8443}},
				Env: []corev1.EnvVar{
					{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
					{Name: "TLS_SERVER_CERT", Value: "/etc/secret-volume/crt"},
					{Name: "TLS_SERVER_PRIVKEY", Value: "/etc/secret-volume/key"},
				},
				VolumeMounts: []corev1.VolumeMount{{Name: "secret-volume", MountPath: "/etc/secret-volume"}},
			}},
			Volumes: []corev1.Volume{{Name: "secret-volume", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
				SecretName: "tls", Items: []corev1.KeyToPath{{Key: "tls.crt", Path: "crt"}, {Key: "tls.key", Path: "key"}},
			}}}},
		},
	}
	if err := c.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	poll(t, 30*time.Second, "the pod ready", func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			return err
		}
		if !podReady(pod) {
			return fmt.Errorf("status %+v", pod.Status)
		}
		return nil
	})
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	hc := http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "tls-backend"}}}
	addr := network.LoopbackAddr(net.JoinHostPort(pod.Status.PodIP, "8443"))
	poll(t, 10*time.Second, "the echo server answering HTTPS with the Secret's certificate", func() error {
		resp, err := hc.Get("https://" + addr + "/tls")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var e echo
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
			return err
		}
		if e.Pod != "tls-backend" || e.Path != "/tls" {
			return fmt.Errorf("answer %+v", e)
		}
		return nil
	})
}

// The sandbox app's image runs on the node from a Deployment that package app renders: each
// replica answers its message at its own pod address, a killed process is restarted, and a pod
// in the mesh whose namespace holds no bootstrap or identity (no controller here) waits in
// ContainerCreating, saying which volume it lacks.
func TestAppPods(t *testing.T) {
	crossgate, err := sandbox.BuildCommands(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	_, c := startNodeWith(t, crossgate)
	ctx := context.Background()
	labels := map[string]string{"app": "web"}
	d := app.Deployment(app.DeploymentOptions{Namespace: "web", Name: "web", ServiceAccount: "default", Labels: labels, Port: 8080, Message: "hello from web", Mode: app.ModeNone, Replicas: 2})
	for _, o := range []client.Object{&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "web"}}, d} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	var pods corev1.PodList
	poll(t, 60*time.Second, "two ready pods of the app", func() error {
		if err := c.List(ctx, &pods, client.InNamespace("web"), client.MatchingLabels(labels)); err != nil {
			return err
		}
		ready := 0
		for i := range pods.Items {
			if podReady(&pods.Items[i]) {
				ready++
			}
		}
		if ready != 2 {
			return fmt.Errorf("%d of %d pods ready", ready, len(pods.Items))
		}
		return nil
	})
	answer := func(p *corev1.Pod) error {
		hc := http.Client{Timeout: 3 * time.Second}
		resp, err := hc.Get("http://" + network.LoopbackAddr(net.JoinHostPort(p.Status.PodIP, "8080")) + "/")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if string(b) != "hello from web\n" {
			return fmt.Errorf("answer %q", b)
		}
		return nil
	}
	for i := range pods.Items {
		if err := answer(&pods.Items[i]); err != nil {
			t.Fatalf("pod %s: %v", pods.Items[i].Name, err)
		}
	}

	// Killed, the process is restarted and answers again.
	victim := pods.Items[0]
	pid, err := strconv.Atoi(strings.TrimPrefix(victim.Status.ContainerStatuses[0].ContainerID, "sandbox://"))
	if err != nil {
		t.Fatalf("container ID %q", victim.Status.ContainerStatuses[0].ContainerID)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	poll(t, 60*time.Second, "the killed app restarted and ready", func() error {
		var p corev1.Pod
		if err := c.Get(ctx, client.ObjectKeyFromObject(&victim), &p); err != nil {
			return err
		}
		if len(p.Status.ContainerStatuses) != 1 || p.Status.ContainerStatuses[0].RestartCount != 1 || !podReady(&p) {
			return fmt.Errorf("%s", kubelet.Explain(&p))
		}
		return answer(&p)
	})

	// In the mesh, without the namespace's bootstrap and identity: waiting, and saying why.
	mesh := app.Deployment(app.DeploymentOptions{Namespace: "web", Name: "mesh", ServiceAccount: "default", Labels: map[string]string{"app": "mesh"}, Port: 8080, Message: "m", Mode: app.ModeSidecar})
	if err := c.Create(ctx, mesh); err != nil {
		t.Fatal(err)
	}
	poll(t, 60*time.Second, "the mesh pod waiting for its volumes", func() error {
		var l corev1.PodList
		if err := c.List(ctx, &l, client.InNamespace("web"), client.MatchingLabels{"app": "mesh"}); err != nil {
			return err
		}
		if len(l.Items) != 1 || len(l.Items[0].Status.ContainerStatuses) != 1 {
			return fmt.Errorf("pods %d", len(l.Items))
		}
		w := l.Items[0].Status.ContainerStatuses[0].State.Waiting
		if w == nil || w.Reason != kubelet.ReasonCreating || !strings.Contains(w.Message, "crossgate-bootstrap") || podReady(&l.Items[0]) {
			return fmt.Errorf("%s", kubelet.Explain(&l.Items[0]))
		}
		return nil
	})
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func poll(t *testing.T, within time.Duration, what string, cond func() error) {
	t.Helper()
	start := time.Now()
	var err error
	for time.Since(start) < within {
		if err = cond(); err == nil {
			t.Logf("%s after %v", what, time.Since(start))
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v: %v", what, within, err)
}
