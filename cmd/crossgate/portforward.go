package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
	"k8s.io/streaming/pkg/httpstream"

	"github.com/crossgate-io/crossgate/xds/server"
)

// debugGet fetches path from a controller's debug endpoint, which listens on the pod's loopback
// only (it shows every identity's configuration): through a port-forward to a ready pod behind
// the controller's Service, which takes the pods/portforward right in its namespace. The port is
// the pod's --debug-address, server.DefaultDebugAddress when it names none.
func debugGet(ctx context.Context, cfg *rest.Config, kube kubernetes.Interface, namespace, path string, query map[string]string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	svc, err := kube.CoreV1().Services(namespace).Get(ctx, "crossgate-controller", metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("the controller's Service: %w", err)
	}
	pods, err := kube.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(svc.Spec.Selector).String()})
	if err != nil {
		return nil, fmt.Errorf("the controller's pods: %w", err)
	}
	var pod *corev1.Pod
	for i := range pods.Items {
		if p := &pods.Items[i]; podReady(p) {
			pod = p
			break
		}
	}
	if pod == nil {
		return nil, fmt.Errorf("no ready pod of Service %s/crossgate-controller", namespace)
	}
	port, err := debugPort(pod)
	if err != nil {
		return nil, err
	}

	u := kube.CoreV1().RESTClient().Post().Resource("pods").Namespace(namespace).Name(pod.Name).SubResource("portforward").URL()
	transport, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return nil, err
	}
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
	// Newer API servers tunnel port-forwards over WebSockets; older ones speak SPDY only (as kubectl).
	if ws, err := portforward.NewSPDYOverWebsocketDialer(u, cfg); err == nil {
		dialer = portforward.NewFallbackDialer(ws, dialer, func(err error) bool {
			return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
		})
	}
	stop, ready := make(chan struct{}), make(chan struct{})
	defer close(stop)
	var errOut strings.Builder
	fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{"0:" + strconv.Itoa(port)}, stop, ready, io.Discard, &errOut)
	if err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- fw.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-done:
		return nil, fmt.Errorf("port-forward to pod %s/%s: %w %s", namespace, pod.Name, err, errOut.String())
	case <-ctx.Done():
		return nil, fmt.Errorf("port-forward to pod %s/%s: %w", namespace, pod.Name, ctx.Err())
	}
	ports, err := fw.GetPorts()
	if err != nil || len(ports) == 0 {
		if err == nil {
			err = errors.New("none forwarded")
		}
		return nil, fmt.Errorf("port-forward to pod %s/%s: no local port: %w", namespace, pod.Name, err)
	}
	return httpGet(ctx, fmt.Sprintf("http://127.0.0.1:%d", ports[0].Local), path, query)
}

func podReady(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// debugPort is the port of the controller container's --debug-address.
func debugPort(p *corev1.Pod) (int, error) {
	addr := server.DefaultDebugAddress
	for _, c := range p.Spec.Containers {
		for i, a := range c.Args {
			if v, ok := strings.CutPrefix(a, "--debug-address="); ok {
				addr = v
			} else if a == "--debug-address" && i+1 < len(c.Args) {
				addr = c.Args[i+1]
			}
		}
	}
	if addr == "" {
		return 0, fmt.Errorf("pod %s/%s runs with --debug-address empty: its configuration dump is off", p.Namespace, p.Name)
	}
	_, port, ok := strings.Cut(addr[strings.LastIndex(addr, "]")+1:], ":")
	n, err := strconv.Atoi(port)
	if !ok || err != nil {
		return 0, fmt.Errorf("pod %s/%s: --debug-address %q has no port", p.Namespace, p.Name, addr)
	}
	return n, nil
}

// httpGet fetches base+path?query and fails on any status but 200, with the answer's text.
func httpGet(ctx context.Context, base, path string, query map[string]string) ([]byte, error) {
	q := url.Values{}
	for k, v := range query {
		q.Set(k, v)
	}
	u := strings.TrimRight(base, "/") + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s: %s", u, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}
