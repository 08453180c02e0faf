//go:build integration

// Package install tests the Helm chart and `crossgate install|status|uninstall` against real API
// servers, and runs the installed controller with exactly the RBAC the chart grants it.
package install

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	certmanagerv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
	"github.com/crossgate-io/crossgate/charts"
	"github.com/crossgate-io/crossgate/inject"
	"github.com/crossgate-io/crossgate/sandbox"
	"github.com/crossgate-io/crossgate/test/internal/cmtest"
	"github.com/crossgate-io/crossgate/test/internal/poll"
	"github.com/crossgate-io/crossgate/test/internal/sbtest"
)

// eventually waits for cond (test/internal/poll).
var eventually = poll.Eventually

// TestChartAcceptedByTheAPIServer renders the chart with default values and with cert-manager's,
// and applies every object with server-side dry-run to an API server holding the CRDs: the API
// server's validation, the CRDs' schemas and CEL rules included, accepts them all.
func TestChartAcceptedByTheAPIServer(t *testing.T) {
	ctx := context.Background()
	sb := sbtest.Start(t, "cluster-1")
	c := sb.Cluster("cluster-1").Client
	cmtest.InstallCRDs(t, ctx, c)
	for _, ns := range []string{"crossgate-system", "fsm-system"} { // the namespaces install creates
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, sets := range [][]string{
		nil,
		{"certManager.enabled=true"},
		{
			"certManager.enabled=true", "certManager.issuerRef.name=corp", "certManager.issuerRef.kind=ClusterIssuer",
			"clusterSet.name=cluster-1", "clusterSet.region=eu-west", "gateway.lbPort=81", "gateway.nodePort=30080", "permissiveTrafficPolicyMode=false",
		},
	} {
		vals, err := charts.Values(sets)
		if err != nil {
			t.Fatal(err)
		}
		m, err := charts.Template(ctx, "crossgate-system", vals, false)
		if err != nil {
			t.Fatalf("%v: %v", sets, err)
		}
		objs, err := charts.Objects(m)
		if err != nil {
			t.Fatal(err)
		}
		var kinds []string
		for _, o := range objs {
			//nolint:staticcheck // unstructured objects of any kind: client.Client.Apply takes typed apply configurations
			err := c.Patch(ctx, o, client.Apply, client.DryRunAll, client.FieldOwner("crossgate-test"), client.ForceOwnership)
			if err != nil {
				t.Errorf("values %v: %s %s refused: %v", sets, o.GetKind(), o.GetName(), err)
			}
			kinds = append(kinds, o.GetKind())
			if o.GetKind() == "Certificate" || o.GetKind() == "Issuer" {
				// And cert-manager's Go types read them without an unknown field.
				var v runtime.Object = &certmanagerv1.Certificate{}
				if o.GetKind() == "Issuer" {
					v = &certmanagerv1.Issuer{}
				}
				if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, v, true); err != nil {
					t.Errorf("%s: %v", o.GetKind(), err)
				}
			}
		}
		t.Logf("values %v: %d objects accepted: %v", sets, len(objs), kinds)
		if len(sets) > 0 && !slices.Contains(kinds, "Certificate") {
			t.Errorf("values %v rendered no Certificate", sets)
		}
	}
	// Nothing was written: dry-run only.
	var d appsv1.DeploymentList
	if err := c.List(ctx, &d, client.InNamespace("crossgate-system")); err != nil || len(d.Items) != 0 {
		t.Errorf("a dry-run wrote %d Deployments (%v)", len(d.Items), err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// saKubeconfig writes a kubeconfig for the installed controller's ServiceAccount: the controller
// started with it has exactly the permissions the chart grants.
func saKubeconfig(t *testing.T, ctx context.Context, cl *sandbox.Cluster, dir string) string {
	t.Helper()
	tr, err := cl.Kube.CoreV1().ServiceAccounts("crossgate-system").CreateToken(ctx, "crossgate-controller",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("a token for the chart's ServiceAccount: %v", err)
	}
	ca := cl.Config.CAData
	if len(ca) == 0 && cl.Config.CAFile != "" {
		if ca, err = os.ReadFile(cl.Config.CAFile); err != nil {
			t.Fatal(err)
		}
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["c"] = &clientcmdapi.Cluster{Server: cl.URL, CertificateAuthorityData: ca}
	kc.AuthInfos["sa"] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	kc.Contexts["sa"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "sa"}
	kc.CurrentContext = "sa"
	p := filepath.Join(dir, "controller.kubeconfig")
	if err := clientcmd.WriteToFile(*kc, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestInstallRunStatusUninstall: `crossgate install` into an empty API server creates the CRDs
// and the chart's objects as a Helm release; the controller, started with the Deployment's own
// arguments and the ServiceAccount's token, does its work without one forbidden request;
// `namespace add` makes the API server call its webhook; `status` reports it all; a second
// install upgrades; `uninstall` removes the release and the webhook's registration.
func TestInstallRunStatusUninstall(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	crossgate, err := sandbox.BuildCommands(filepath.Join(dir, "bin"))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Dir(crossgate)
	sctx, scancel := context.WithTimeout(ctx, 2*time.Minute)
	sb, err := sandbox.Start(sctx, sandbox.Options{Clusters: []string{"cluster-1"}, Dir: filepath.Join(dir, "sb"), SkipCRDs: true})
	scancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sb.Stop)
	cl := sb.Cluster("cluster-1")
	c := cl.Client
	cli := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(filepath.Join(bin, "crossgate"), append(args, "--kubeconfig", sb.Kubeconfig, "--context", "cluster-1")...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("crossgate %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("crossgate %s:\n%s", strings.Join(args, " "), out)
		return string(out)
	}

	start := time.Now()
	out := cli("install", "--wait=false", "--set", "clusterSet.name=cluster-1", "--set", "gateway.lbPort=81")
	t.Logf("install took %v", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(out, "release crossgate installed (revision 1)") {
		t.Errorf("install said:\n%s", out)
	}
	var mc flomeshv1alpha1.MeshConfig
	if err := c.Get(ctx, client.ObjectKey{Namespace: "fsm-system", Name: "fsm-mesh-config"}, &mc); err != nil {
		t.Fatalf("the MeshConfig after install: %v", err)
	}
	if mc.Spec.ClusterSet.Name != "cluster-1" {
		t.Errorf("MeshConfig clusterSet %+v", mc.Spec.ClusterSet)
	}
	var dep appsv1.Deployment
	if err := c.Get(ctx, client.ObjectKey{Namespace: "crossgate-system", Name: "crossgate-controller"}, &dep); err != nil {
		t.Fatal(err)
	}
	var secrets corev1.SecretList
	if err := c.List(ctx, &secrets, client.InNamespace("crossgate-system"), client.MatchingLabels{"owner": "helm", "name": "crossgate"}); err != nil || len(secrets.Items) != 1 {
		t.Errorf("Helm's release record: %d Secrets (%v)", len(secrets.Items), err)
	}

	// The controller, as the Deployment runs it, but as a process on loopback.
	xds, metrics, webhook, debug := freePort(t), freePort(t), freePort(t), freePort(t)
	var args []string
	for _, a := range dep.Spec.Template.Spec.Containers[0].Args {
		switch name, _, _ := strings.Cut(a, "="); name {
		case "--xds-address", "--metrics-address", "--webhook-address", "--xds-host", "--xds-port", "--debug-address":
			continue // where a pod would listen; the process listens on free loopback ports
		}
		args = append(args, a)
	}
	args = append(args, "--xds-address=127.0.0.1:"+strconv.Itoa(xds), "--xds-host=127.0.0.1", "--xds-port="+strconv.Itoa(xds),
		"--metrics-address=127.0.0.1:"+strconv.Itoa(metrics), "--webhook-address=127.0.0.1:"+strconv.Itoa(webhook),
		"--debug-address=127.0.0.1:"+strconv.Itoa(debug),
		fmt.Sprintf("--webhook-url=https://127.0.0.1:%d%s", webhook, inject.Path))
	logPath := filepath.Join(dir, "controller.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	ctrl := exec.Command(filepath.Join(bin, "crossgate-controller"), args...)
	ctrl.Env = append(os.Environ(), "KUBECONFIG="+saKubeconfig(t, ctx, cl, dir))
	ctrl.Stdout, ctrl.Stderr = logf, logf
	if err := ctrl.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = ctrl.Process.Signal(os.Interrupt)
			_ = ctrl.Wait()
			logf.Close()
		}
	}
	t.Cleanup(stop)
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d", metrics)
	debugURL := fmt.Sprintf("http://127.0.0.1:%d", debug)
	eventually(t, time.Minute, "the controller ready with the chart's RBAC", func() error {
		if ctrl.ProcessState != nil {
			return fmt.Errorf("exited")
		}
		resp, err := http.Get(metricsURL + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz: %s", resp.Status)
		}
		return nil
	})

	// Its writes: the webhook's registration, the gateway's Deployment, an export's HTTPRoute and
	// status.
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	eventually(t, 10*time.Second, "the webhook registered", func() error {
		return c.Get(ctx, client.ObjectKey{Name: inject.ConfigurationName}, &mwc)
	})
	eventually(t, 10*time.Second, "the gateway's Deployment", func() error {
		return c.Get(ctx, client.ObjectKey{Namespace: "crossgate-system", Name: "crossgate-gateway"}, &appsv1.Deployment{})
	})
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "httpbin"}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "httpbin", Name: "httpbin"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "httpbin", Name: "httpbin"}, Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "httpbin"}, Ports: []corev1.ServicePort{{Name: "http", Port: 8080}},
		}},
		&flomeshv1alpha1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "httpbin", Name: "httpbin"}, Spec: flomeshv1alpha1.ServiceExportSpec{
			Rules: []flomeshv1alpha1.ServiceExportRule{{PortNumber: 8080, Path: "/cluster-1/httpbin", PathType: flomeshv1alpha1.PathMatchPrefix}},
		}},
	} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "the export's HTTPRoute and Valid condition", func() error {
		var routes gatewayv1.HTTPRouteList
		if err := c.List(ctx, &routes, client.InNamespace("httpbin")); err != nil {
			return err
		}
		if len(routes.Items) == 0 {
			return fmt.Errorf("no HTTPRoute")
		}
		var e flomeshv1alpha1.ServiceExport
		if err := c.Get(ctx, client.ObjectKey{Namespace: "httpbin", Name: "httpbin"}, &e); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(e.Status.Conditions, flomeshv1alpha1.ConditionValid) {
			return fmt.Errorf("conditions %+v", e.Status.Conditions)
		}
		return nil
	})

	// namespace add: the API server calls the controller's webhook for the namespace's pods.
	newPod := func(name string) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "httpbin", Name: name},
			Spec:       corev1.PodSpec{ServiceAccountName: "httpbin", Containers: []corev1.Container{{Name: "httpbin", Image: "kennethreitz/httpbin"}}},
		}
		if err := c.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if p := newPod("before"); len(p.Spec.Containers) != 1 {
		t.Errorf("a pod outside the mesh was injected: %d containers", len(p.Spec.Containers))
	}
	// Kubernetes' own namespaces and the controller's are refused: with the webhook down, its
	// fail-closed registration would block their pods.
	for _, ns := range []string{"kube-system", "crossgate-system"} {
		cmd := exec.Command(filepath.Join(bin, "crossgate"), "namespace", "add", ns, "--kubeconfig", sb.Kubeconfig, "--context", "cluster-1")
		if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "cannot be added to the mesh") {
			t.Errorf("crossgate namespace add %s: %v\n%s", ns, err, out)
		}
	}
	cli("namespace", "add", "httpbin")
	n := 0
	eventually(t, 10*time.Second, "a pod injected after namespace add", func() error {
		n++
		p := newPod(fmt.Sprintf("added-%d", n))
		// Envoy is a native sidecar: an init container that keeps running.
		if len(p.Spec.InitContainers) != 2 || p.Spec.InitContainers[1].Name != "envoy" {
			return fmt.Errorf("init containers %d", len(p.Spec.InitContainers))
		}
		return nil
	})

	// proxy config: what the controller serves to the injected pod's sidecar.
	pod := fmt.Sprintf("added-%d", n)
	eventually(t, 10*time.Second, "the sidecar's configuration published", func() error {
		out := cli("proxy", "config", pod, "-n", "httpbin", "--controller-url", debugURL)
		for _, want := range []string{
			`Node: sidecar~httpbin/httpbin`, `(?m)^Listener\s+\S+\s+[0-9a-z]+$`, `(?m)^Cluster\s+\S+`, `(?m)^Secret\s+\S+`,
			"No stream of this node is open",
		} {
			if !regexp.MustCompile(want).MatchString(out) {
				return fmt.Errorf("proxy config lacks %s:\n%s", want, out)
			}
		}
		return nil
	})
	raw := cli("proxy", "config", pod, "-n", "httpbin", "--controller-url", debugURL, "-o", "json")
	var dump struct {
		Known     bool
		Resources []struct {
			Type     string
			Resource json.RawMessage
		}
	}
	if err := json.Unmarshal([]byte(raw), &dump); err != nil || !dump.Known || len(dump.Resources) == 0 {
		t.Errorf("proxy config -o json: %v, %+v", err, dump)
	}
	if strings.Contains(raw, "PRIVATE KEY") || strings.Contains(raw, "privateKey") {
		t.Error("proxy config shows a private key")
	}
	for _, r := range dump.Resources {
		if strings.HasSuffix(r.Type, "Secret") && len(r.Resource) != 0 {
			t.Errorf("a secret's content is shown: %s", r.Resource)
		}
	}
	// The metrics port, which Prometheus and the API server's proxy reach, does not serve it.
	if resp, err := http.Get(metricsURL + "/debug/config?node=sidecar~httpbin/httpbin"); err != nil {
		t.Fatal(err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK || strings.Contains(string(body), "resources") {
			t.Errorf("the metrics port serves a configuration: %s %s", resp.Status, body)
		}
	}
	if out := cli("proxy", "config", "before", "-n", "httpbin", "--controller-url", debugURL, "--node", "sidecar~elsewhere/nobody"); !strings.Contains(out, "has published nothing for sidecar~elsewhere/nobody") {
		t.Errorf("proxy config of an unknown node:\n%s", out)
	}
	cli("namespace", "remove", "httpbin")
	if p := newPod("removed"); len(p.Spec.Containers) != 1 {
		t.Errorf("a pod was injected after namespace remove: %d containers", len(p.Spec.Containers))
	}

	out = cli("status", "--controller-url", metricsURL)
	for _, want := range []string{
		`Cluster:\s+default/default/default/cluster-1\s+\(MeshConfig fsm-system/fsm-mesh-config, permissive, trust domain cluster.local\)`,
		`Controller:\s+crossgate-system/crossgate-controller\s+0/1 ready`, `Proxies:\s+0 xDS streams connected`,
		`Publishes:\s+[1-9]\d* full, \d+ incremental, \d+ rebuild`,
		// Nothing runs the gateway's Deployment or gives its LoadBalancer an address here (no
		// kube-controller-manager, no load balancer): the Gateway is not Programmed, and says why.
		`Gateway:\s+crossgate-system/crossgate-gateway\s+class crossgate\s+Programmed=False \(AddressNotAssigned\)\s+no address yet`,
		`ServiceExports: 1`, `httpbin/httpbin\s+True \(Valid\)`, `ServiceImports: 0`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("status lacks %s", want)
		}
	}
	// Without a reachable controller (the sandbox's API server cannot proxy to it), status says
	// so instead of failing.
	if out := cli("status"); !regexp.MustCompile(`Proxies:\s+unknown \(the controller's metrics: `).MatchString(out) {
		t.Errorf("status without the controller's metrics:\n%s", out)
	}

	log, _ := os.ReadFile(logPath)
	if bytes.Contains(bytes.ToLower(log), []byte("forbidden")) {
		t.Errorf("the controller was refused something the chart should grant; its log:\n%s", log)
	}
	stop()

	out = cli("install", "--wait=false", "--set", "clusterSet.name=cluster-1", "--set", "gateway.lbPort=82")
	if !strings.Contains(out, "upgraded to revision 2") {
		t.Errorf("a second install:\n%s", out)
	}
	var gw gatewayv1.Gateway
	if err := c.Get(ctx, client.ObjectKey{Namespace: "crossgate-system", Name: "crossgate-gateway"}, &gw); err != nil || gw.Annotations["crossgate.io/lb-port"] != "82" {
		t.Errorf("the Gateway after the upgrade: %v %v", gw.Annotations, err)
	}

	// A control plane with a member: uninstall refuses, saying what to do.
	member := &flomeshv1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "cluster-9"}, Spec: flomeshv1alpha1.ClusterSpec{
		GatewayHost: "192.0.2.1", GatewayPort: 81,
		KubeconfigSecretRef: &flomeshv1alpha1.SecretKeyReference{Namespace: "crossgate-system", Name: "kubeconfig-cluster-9", Key: "kubeconfig"},
	}}
	if err := c.Create(ctx, member); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(bin, "crossgate"), "uninstall", "--kubeconfig", sb.Kubeconfig, "--context", "cluster-1")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "control plane of cluster-9: run crossgate cluster leave NAME") {
		t.Errorf("uninstall with a joined member: %v\n%s", err, out)
	}
	if err := c.Delete(ctx, member); err != nil {
		t.Fatal(err)
	}

	cli("uninstall")
	for _, o := range []client.Object{
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "crossgate-system", Name: "crossgate-controller"}},
		&flomeshv1alpha1.MeshConfig{ObjectMeta: metav1.ObjectMeta{Namespace: "fsm-system", Name: "fsm-mesh-config"}},
		&admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: inject.ConfigurationName}},
	} {
		if err := c.Get(ctx, client.ObjectKeyFromObject(o), o); !apierrors.IsNotFound(err) {
			t.Errorf("%T %s after uninstall: %v", o, o.GetName(), err)
		}
	}
	// The CRDs, and so the users' objects, stay.
	if err := c.Get(ctx, client.ObjectKey{Namespace: "httpbin", Name: "httpbin"}, &flomeshv1alpha1.ServiceExport{}); err != nil {
		t.Errorf("the ServiceExport after uninstall: %v", err)
	}
	if out := cli("uninstall"); !strings.Contains(out, "no crossgate release in crossgate-system") {
		t.Errorf("a second uninstall:\n%s", out)
	}
	cli("uninstall", "--purge")
	eventually(t, 30*time.Second, "the CRDs gone after --purge", func() error {
		err := c.List(ctx, &flomeshv1alpha1.ServiceExportList{})
		if err == nil {
			return fmt.Errorf("ServiceExports still served")
		}
		return nil
	})
}
