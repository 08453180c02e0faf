//go:build integration

package federation

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
	"github.com/crossgate-io/crossgate/sandbox/walkthrough"
	"github.com/crossgate-io/crossgate/wellknown"
)

// walkthroughState is what each member holds once cluster-1 and cluster-3 export httpbin and
// httpbin-<cluster>: every member imports what the others export, never its own.
func walkthroughState() map[string][]string {
	return map[string][]string{
		"cluster-1": {"httpbin/httpbin 8080:cluster-3@83", "httpbin/httpbin-cluster-3 8080:cluster-3@83"},
		"cluster-2": {"httpbin/httpbin 8080:cluster-1@81,8080:cluster-3@83", "httpbin/httpbin-cluster-1 8080:cluster-1@81", "httpbin/httpbin-cluster-3 8080:cluster-3@83"},
		"cluster-3": {"httpbin/httpbin 8080:cluster-1@81", "httpbin/httpbin-cluster-1 8080:cluster-1@81"},
	}
}

func exportConflict(t *testing.T, cluster, name string) *metav1.Condition {
	t.Helper()
	var e flomeshv1alpha1.ServiceExport
	if err := sb.Cluster(cluster).Client.Get(context.Background(), client.ObjectKey{Namespace: "httpbin", Name: name}, &e); err != nil {
		return nil
	}
	return meta.FindStatusCondition(e.Status.Conditions, flomeshv1alpha1.ConditionConflict)
}

// 1. The walkthrough's Cluster objects and exports give cluster-2 the walkthrough's imports.
func TestWalkthroughImports(t *testing.T) {
	joinWalkthrough(t, members...)
	for _, m := range members {
		waitManaged(t, m, metav1.ConditionTrue, flomeshv1alpha1.ReasonConnected, 10*time.Second)
	}
	exportWalkthrough(t, "cluster-1")
	exportWalkthrough(t, "cluster-3")
	expectImports(t, 10*time.Second, walkthroughState())

	// `kubectl get serviceimports -A` in cluster-2 and the httpbin import's spec, as the
	// walkthrough shows them, with the sandbox's gateway address.
	out := kubectl(t, "cluster-2", "", "get", "serviceimports", "-A")
	for _, n := range []string{"httpbin-cluster-1", "httpbin-cluster-3", "httpbin"} {
		if !slices.ContainsFunc(strings.Split(out, "\n"), func(l string) bool { f := strings.Fields(l); return len(f) > 1 && f[0] == "httpbin" && f[1] == n }) {
			t.Errorf("kubectl get serviceimports -A lacks %s:\n%s", n, out)
		}
	}
	want, err := walkthrough.Manifests.ReadFile("manifests/serviceimport-httpbin.json")
	if err != nil {
		t.Fatal(err)
	}
	spec := kubectl(t, "cluster-2", "", "get", "serviceimports", "httpbin", "-n", "httpbin", "-o", "jsonpath={.spec}")
	if ok, err := jsonEqual(spec, strings.ReplaceAll(string(want), "192.168.1.110", "127.0.0.1")); err != nil || !ok {
		t.Errorf("cluster-2's httpbin import spec\n%s\nis not the walkthrough's (%v)\n%s", spec, err, want)
	}
	status := kubectl(t, "cluster-2", "", "get", "serviceimports", "httpbin", "-n", "httpbin", "-o", "jsonpath={.status.clusters[*].cluster}")
	if status != clusterKey("cluster-1")+" "+clusterKey("cluster-3") {
		t.Errorf("status.clusters: %q", status)
	}
	for _, c := range []string{"cluster-1", "cluster-3"} {
		if got := exportConflict(t, c, "httpbin"); got == nil || got.Status != metav1.ConditionFalse {
			t.Errorf("%s's export Conflict: %+v", c, got)
		}
	}
	out = kubectl(t, "control-plane", "", "get", "clusters")
	if strings.Count(out, "True") != 3 {
		t.Errorf("kubectl get clusters:\n%s", out)
	}
}

// 2. A younger export with another port conflicts, is left out, and comes back once fixed.
func TestConflictClearsWhenFixed(t *testing.T) {
	port := func(n int) {
		kubectl(t, "cluster-3", "", "-n", "httpbin", "patch", "service", "httpbin", "--type=json", "-p", fmt.Sprintf(`[{"op":"replace","path":"/spec/ports/0/port","value":%d}]`, n))
		kubectl(t, "cluster-3", "", "-n", "httpbin", "patch", "serviceexport", "httpbin", "--type=json", "-p", fmt.Sprintf(`[{"op":"replace","path":"/spec/rules/0/portNumber","value":%d}]`, n))
	}
	// The member's import controller writes spec.ips (its own field manager); the federation's
	// applies must leave them alone.
	ctx := context.Background()
	imp := &flomeshv1alpha1.ServiceImport{ObjectMeta: metav1.ObjectMeta{Namespace: "httpbin", Name: "httpbin"}}
	if err := sb.Cluster("cluster-2").Client.Patch(ctx, imp, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"ips":["10.97.0.10"]}}`)), client.FieldOwner("crossgate")); err != nil {
		t.Fatal(err)
	}
	port(9090)
	took := eventually(t, 2*time.Second, "cluster-3's export Conflict=True", func() error {
		c := exportConflict(t, "cluster-3", "httpbin")
		if c == nil || c.Status != metav1.ConditionTrue || c.Reason != flomeshv1alpha1.ReasonPortConflict || !strings.Contains(c.Message, "9090") || !strings.Contains(c.Message, "8080") {
			return fmt.Errorf("Conflict is %+v", c)
		}
		return nil
	})
	t.Logf("conflict reported in %v", took)
	want := walkthroughState()
	want["cluster-1"] = []string{"httpbin/httpbin-cluster-3 8080:cluster-3@83"}
	want["cluster-2"][0] = "httpbin/httpbin 8080:cluster-1@81"
	expectImports(t, 2*time.Second, want)
	if c := exportConflict(t, "cluster-1", "httpbin"); c == nil || c.Status != metav1.ConditionFalse {
		t.Errorf("the oldest export's Conflict: %+v", c)
	}
	if err := sb.Cluster("cluster-2").Client.Get(ctx, client.ObjectKeyFromObject(imp), imp); err != nil || !slices.Equal(imp.Spec.IPs, []string{"10.97.0.10"}) {
		t.Errorf("the member's spec.ips after the federation's apply: %v (%v)", imp.Spec.IPs, err)
	}

	port(8080)
	took = eventually(t, 2*time.Second, "cluster-3's Conflict cleared", func() error {
		if c := exportConflict(t, "cluster-3", "httpbin"); c == nil || c.Status != metav1.ConditionFalse || c.Reason != flomeshv1alpha1.ReasonNoConflict {
			return fmt.Errorf("Conflict is %+v", c)
		}
		return nil
	})
	took += expectImports(t, 2*time.Second, walkthroughState())
	t.Logf("conflict cleared and endpoint back in %v", took)
}

// 2b. Deleting the exported Service of a member that also imports it: the member's import
// controller puts a placeholder in its place (written here as it writes it, since no member
// controllers run in this suite). A placeholder is not the member's Service, so the member leaves
// the import everywhere, and comes back with its Service (issue 16, defect 4).
func TestPlaceholderIsNotExported(t *testing.T) {
	ctx := context.Background()
	c := sb.Cluster("cluster-1").Client
	key := client.ObjectKey{Namespace: "httpbin", Name: "httpbin"}
	if err := c.Delete(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}); err != nil {
		t.Fatal(err)
	}
	placeholder := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name, Labels: map[string]string{
			wellknown.ManagedByLabel: wellknown.ManagedByValue, wellknown.ImportLabel: key.Name,
		}},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 8080}}},
	}
	eventually(t, 5*time.Second, "the deleted Service gone", func() error {
		return c.Create(ctx, placeholder)
	})
	want := walkthroughState()
	want["cluster-2"][0] = "httpbin/httpbin 8080:cluster-3@83"
	want["cluster-3"] = []string{"httpbin/httpbin-cluster-1 8080:cluster-1@81"}
	took := expectImports(t, 2*time.Second, want)
	t.Logf("the member left the import in %v", took)

	if err := c.Delete(ctx, placeholder); err != nil {
		t.Fatal(err)
	}
	services := render(t, "httpbin-services.yaml", "cluster-1", 0)
	kubectl(t, "cluster-1", strings.SplitN(services, "\n---\n", 2)[0], "apply", "-n", "httpbin", "-f", "-")
	expectImports(t, 2*time.Second, walkthroughState())
}

// kubeconfigFor writes a kubeconfig for the cluster's API server with the given server URL and
// credentials (nil: the sandbox admin's).
func kubeconfigFor(t *testing.T, cluster, server, token string) []byte {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(sb.Cluster(cluster).Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cfg.Clusters {
		if server != "" {
			c.Server = server
		}
	}
	if token != "" {
		for n := range cfg.AuthInfos {
			cfg.AuthInfos[n] = &clientcmdapi.AuthInfo{Token: token}
		}
	}
	raw, err := clientcmd.Write(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "https://" + l.Addr().String()
}

func applyCluster(t *testing.T, name string, spec flomeshv1alpha1.ClusterSpec) {
	t.Helper()
	c := &flomeshv1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}
	if err := sb.Cluster("control-plane").Client.Create(context.Background(), c); err != nil {
		t.Fatal(err)
	}
}

func deleteCluster(t *testing.T, name string, within time.Duration) {
	t.Helper()
	cp := sb.Cluster("control-plane").Client
	if err := cp.Delete(context.Background(), &flomeshv1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, within, "Cluster "+name+" gone", func() error {
		err := cp.Get(context.Background(), client.ObjectKey{Name: name}, &flomeshv1alpha1.Cluster{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (%w)", err)
	})
}

// 3. Bad kubeconfig, unreachable server, refused credentials and a second Cluster for a member
// each get Managed=False with their own reason; fixing the Secret makes it True, and the control
// plane itself then is a member.
func TestManagedReasons(t *testing.T) {
	ctx := context.Background()
	cp := sb.Cluster("control-plane").Client
	gw := flomeshv1alpha1.ClusterSpec{GatewayHost: "127.0.0.1"}
	if err := cp.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "crossgate-system"}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "crossgate-system", Name: "control-plane-kubeconfig"},
		Data:       map[string][]byte{"kubeconfig": kubeconfigFor(t, "control-plane", "", "not-a-valid-token")},
	}
	if err := cp.Create(ctx, secret); err != nil {
		t.Fatal(err)
	}

	broken, unreachable, refused, dup := gw, gw, gw, gw
	broken.Kubeconfig = "this is not a kubeconfig"
	unreachable.Kubeconfig = string(kubeconfigFor(t, "cluster-1", freeAddr(t), ""))
	refused.KubeconfigSecretRef = &flomeshv1alpha1.SecretKeyReference{Namespace: "crossgate-system", Name: "control-plane-kubeconfig"}
	dup.Kubeconfig = string(kubeconfigFor(t, "cluster-1", "", ""))
	start := time.Now()
	applyCluster(t, "broken", broken)
	applyCluster(t, "unreachable", unreachable)
	applyCluster(t, "control-plane", refused)
	applyCluster(t, "dup", dup)
	reasons := map[string]string{}
	for name, reason := range map[string]string{
		"broken": flomeshv1alpha1.ReasonKubeconfigInvalid, "unreachable": flomeshv1alpha1.ReasonUnreachable,
		"control-plane": flomeshv1alpha1.ReasonUnauthorized, "dup": flomeshv1alpha1.ReasonAlreadyJoined,
	} {
		c := waitManaged(t, name, metav1.ConditionFalse, reason, 5*time.Second-time.Since(start))
		reasons[c.Reason] = name
		t.Logf("%s: %s: %s", name, c.Reason, c.Message)
	}
	if len(reasons) != 4 {
		t.Errorf("reasons are not distinct: %v", reasons)
	}

	// Fixing the Secret connects the control plane to itself.
	secret.Data["kubeconfig"] = kubeconfigFor(t, "control-plane", "", "")
	if err := cp.Update(ctx, secret); err != nil {
		t.Fatal(err)
	}
	fixed := time.Now()
	waitManaged(t, "control-plane", metav1.ConditionTrue, flomeshv1alpha1.ReasonConnected, 5*time.Second)
	t.Logf("Managed=True %v after the Secret was fixed", time.Since(fixed))

	// A kubeconfig Secret outside the controller's namespace is not read; a missing key is named,
	// the Secret's other keys are not.
	other := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "someone-elses"},
		Data:       map[string][]byte{"kubeconfig": kubeconfigFor(t, "cluster-1", "", "")},
	}
	withKeys := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "crossgate-system", Name: "other-keys"},
		Data:       map[string][]byte{"secret-api-token": []byte("x")},
	}
	for _, o := range []client.Object{other, withKeys} {
		if err := cp.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	elsewhere, nokey := gw, gw
	elsewhere.KubeconfigSecretRef = &flomeshv1alpha1.SecretKeyReference{Namespace: "default", Name: "someone-elses"}
	nokey.KubeconfigSecretRef = &flomeshv1alpha1.SecretKeyReference{Namespace: "crossgate-system", Name: "other-keys"}
	applyCluster(t, "elsewhere", elsewhere)
	applyCluster(t, "nokey", nokey)
	if c := waitManaged(t, "elsewhere", metav1.ConditionFalse, flomeshv1alpha1.ReasonKubeconfigSecretNotAllowed, 10*time.Second); !strings.Contains(c.Message, "spec.kubeconfigSecretRef.namespace") {
		t.Errorf("elsewhere: %s", c.Message)
	}
	if c := waitManaged(t, "nokey", metav1.ConditionFalse, flomeshv1alpha1.ReasonKubeconfigSecretNotFound, 10*time.Second); strings.Contains(c.Message, "secret-api-token") {
		t.Errorf("the message lists the Secret's keys: %s", c.Message)
	}

	// A Cluster that never connected wrote nothing to its member: it carries no finalizer, so
	// its deletion is not held for the leave timeout, nor warns of imports left behind.
	for _, n := range []string{"broken", "unreachable", "dup", "elsewhere", "nokey"} {
		var c flomeshv1alpha1.Cluster
		if err := cp.Get(ctx, client.ObjectKey{Name: n}, &c); err != nil {
			t.Fatal(err)
		}
		if len(c.Finalizers) > 0 {
			t.Errorf("Cluster %s never connected and has finalizers %v", n, c.Finalizers)
		}
		deleteCluster(t, n, opts.LeaveTimeout+5*time.Second)
	}
	// dup's deletion must not have touched cluster-1, which belongs to its own Cluster.
	want := walkthroughState()
	want["control-plane"] = want["cluster-2"]
	expectImports(t, 5*time.Second, want)
}

// 4. The control plane as a member exports too, and leaves cleanly.
func TestControlPlaneAsMember(t *testing.T) {
	if managed(t, "control-plane") == nil {
		t.Skip("needs TestManagedReasons' control-plane Cluster")
	}
	kubectl(t, "control-plane", `apiVersion: v1
kind: Namespace
metadata:
  name: echo
---
apiVersion: v1
kind: Service
metadata:
  name: echo
  namespace: echo
spec:
  ports:
  - port: 7070
    name: grpc
    appProtocol: kubernetes.io/h2c
  selector:
    app: echo
---
apiVersion: flomesh.io/v1alpha1
kind: ServiceExport
metadata:
  name: echo
  namespace: echo
spec:
  rules:
  - portNumber: 7070
    path: /echo
    pathType: Prefix
`, "apply", "-f", "-")
	want := walkthroughState()
	want["control-plane"] = want["cluster-2"]
	for _, m := range members {
		want[m] = append(append([]string{}, "echo/echo 7070:control-plane@80"), want[m]...)
	}
	expectImports(t, 5*time.Second, want)
	var imp flomeshv1alpha1.ServiceImport
	if err := sb.Cluster("cluster-2").Client.Get(context.Background(), client.ObjectKey{Namespace: "echo", Name: "echo"}, &imp); err != nil {
		t.Fatal(err)
	}
	if p := imp.Spec.Ports[0]; p.Name != "grpc" || p.AppProtocol == nil || *p.AppProtocol != "kubernetes.io/h2c" || p.Protocol != "TCP" || imp.Spec.ServiceAccountName != "*" {
		t.Errorf("echo's port %+v, serviceAccountName %q", p, imp.Spec.ServiceAccountName)
	}

	deleteCluster(t, "control-plane", 5*time.Second)
	expectImports(t, 5*time.Second, map[string][]string{
		"control-plane": nil, "cluster-1": walkthroughState()["cluster-1"],
		"cluster-2": walkthroughState()["cluster-2"], "cluster-3": walkthroughState()["cluster-3"],
	})
	var l coordinationv1.Lease
	if err := sb.Cluster("control-plane").Client.Get(context.Background(), client.ObjectKey{Namespace: "kube-system", Name: "crossgate-federation"}, &l); !apierrors.IsNotFound(err) {
		t.Errorf("the claim stays after leaving: %v %v", err, l.Spec.HolderIdentity)
	}
	kubectl(t, "control-plane", "", "delete", "namespace", "echo", "--wait=false")
}

// 5. A spec change other than the kubeconfig, and the federation's own status writes, never
// reconnect; a changed kubeconfig does.
func TestReconnectOnlyOnKubeconfigChange(t *testing.T) {
	ctx := context.Background()
	cp := sb.Cluster("control-plane").Client
	before := fed.Connects.Load()
	kubectl(t, "control-plane", "", "patch", "cluster", "cluster-1", "--type=merge", "-p", `{"spec":{"gatewayPort":8081}}`)
	want := walkthroughState()
	want["cluster-2"] = []string{"httpbin/httpbin 8080:cluster-1@8081,8080:cluster-3@83", "httpbin/httpbin-cluster-1 8080:cluster-1@8081", "httpbin/httpbin-cluster-3 8080:cluster-3@83"}
	want["cluster-3"] = []string{"httpbin/httpbin 8080:cluster-1@8081", "httpbin/httpbin-cluster-1 8080:cluster-1@8081"}
	expectImports(t, 2*time.Second, want)
	kubectl(t, "control-plane", "", "patch", "cluster", "cluster-1", "--type=merge", "-p", `{"spec":{"gatewayPort":81}}`)
	expectImports(t, 2*time.Second, walkthroughState())
	time.Sleep(3 * opts.HealthInterval) // renewals and any status writes
	if got := fed.Connects.Load(); got != before {
		t.Fatalf("%d reconnects without a kubeconfig change", got-before)
	}

	// Move cluster-1 to a Secret: the kubeconfig changed, so it reconnects.
	raw := append(kubeconfigFor(t, "cluster-1", "", ""), "# moved to a Secret\n"...)
	if err := cp.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "crossgate-system", Name: "cluster-1"}, Data: map[string][]byte{"kubeconfig": raw}}); err != nil {
		t.Fatal(err)
	}
	kubectl(t, "control-plane", "", "patch", "cluster", "cluster-1", "--type=merge", "-p",
		`{"spec":{"kubeconfig":null,"kubeconfigSecretRef":{"namespace":"crossgate-system","name":"cluster-1"}}}`)
	eventually(t, 5*time.Second, "a reconnect", func() error {
		if fed.Connects.Load() == before {
			return fmt.Errorf("no reconnect")
		}
		return nil
	})
	waitManaged(t, "cluster-1", metav1.ConditionTrue, flomeshv1alpha1.ReasonConnected, 5*time.Second)
	expectImports(t, 2*time.Second, walkthroughState())
}

// 6. A member that goes down keeps its imports and its endpoints elsewhere, and Managed says so.
func TestMemberOutage(t *testing.T) {
	if err := sb.StopAPIServer("cluster-3"); err != nil {
		t.Fatal(err)
	}
	restarted := false
	defer func() {
		if !restarted {
			_ = sb.RestartAPIServer(context.Background(), "cluster-3")
		}
	}()
	c := waitManaged(t, "cluster-3", metav1.ConditionFalse, flomeshv1alpha1.ReasonUnreachable, 5*time.Second)
	if !strings.Contains(c.Message, "kept") {
		t.Errorf("Managed does not say the imports are kept: %s", c.Message)
	}
	time.Sleep(3 * opts.HealthInterval)
	s := walkthroughState()
	expectImports(t, time.Second, map[string][]string{"cluster-1": s["cluster-1"], "cluster-2": s["cluster-2"]})

	if err := sb.RestartAPIServer(context.Background(), "cluster-3"); err != nil {
		t.Fatal(err)
	}
	restarted = true
	waitManaged(t, "cluster-3", metav1.ConditionTrue, flomeshv1alpha1.ReasonConnected, 30*time.Second)
	expectImports(t, 5*time.Second, walkthroughState())
}

// 7. Deleting a Service before its export, an export, and a Cluster each remove exactly what
// they fed, in every member.
func TestCleanup(t *testing.T) {
	ctx := context.Background()
	state := walkthroughState()

	kubectl(t, "cluster-1", "", "-n", "httpbin", "delete", "service", "httpbin-cluster-1")
	state["cluster-2"] = []string{state["cluster-2"][0], state["cluster-2"][2]}
	state["cluster-3"] = state["cluster-3"][:1]
	expectImports(t, 2*time.Second, state)
	kubectl(t, "cluster-1", "", "-n", "httpbin", "delete", "serviceexport", "httpbin-cluster-1")

	kubectl(t, "cluster-3", "", "-n", "httpbin", "delete", "serviceexport", "httpbin")
	state["cluster-1"] = []string{"httpbin/httpbin-cluster-3 8080:cluster-3@83"}
	state["cluster-2"] = []string{"httpbin/httpbin 8080:cluster-1@81", "httpbin/httpbin-cluster-3 8080:cluster-3@83"}
	expectImports(t, 2*time.Second, state)

	deleteCluster(t, "cluster-3", 5*time.Second)
	expectImports(t, 2*time.Second, map[string][]string{
		"cluster-1": nil, "cluster-2": {"httpbin/httpbin 8080:cluster-1@81"}, "cluster-3": nil,
	})
	var l coordinationv1.Lease
	if err := sb.Cluster("cluster-3").Client.Get(ctx, client.ObjectKey{Namespace: "kube-system", Name: "crossgate-federation"}, &l); !apierrors.IsNotFound(err) {
		t.Errorf("cluster-3's claim stays after it left: %v", err)
	}

	// Back to the walkthrough's state for what follows.
	joinWalkthrough(t, "cluster-3")
	exportWalkthrough(t, "cluster-1")
	exportWalkthrough(t, "cluster-3")
	expectImports(t, 10*time.Second, walkthroughState())
}

// 8. Another control plane cannot take a member this one holds, and its leaving touches nothing.
func TestManagedByAnotherControlPlane(t *testing.T) {
	o := opts
	o.ID = "another-control-plane"
	other, err := startFederation(sb.Cluster("cluster-2").Config, o)
	if err != nil {
		t.Fatal(err)
	}
	defer other.stop()
	c2 := sb.Cluster("cluster-2").Client
	spec := flomeshv1alpha1.ClusterSpec{GatewayHost: "127.0.0.1", Kubeconfig: string(kubeconfigFor(t, "cluster-1", "", ""))}
	if err := c2.Create(context.Background(), &flomeshv1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "cluster-1"}, Spec: spec}); err != nil {
		t.Fatal(err)
	}
	var got *metav1.Condition
	eventually(t, 5*time.Second, "ManagedByAnotherControlPlane in the other control plane", func() error {
		var c flomeshv1alpha1.Cluster
		if err := c2.Get(context.Background(), client.ObjectKey{Name: "cluster-1"}, &c); err != nil {
			return err
		}
		got = meta.FindStatusCondition(c.Status.Conditions, flomeshv1alpha1.ConditionManaged)
		if got == nil || got.Reason != flomeshv1alpha1.ReasonManagedByAnotherControlPlane {
			return fmt.Errorf("Managed is %+v", got)
		}
		return nil
	})
	t.Logf("%s: %s", got.Reason, got.Message)
	if err := c2.Delete(context.Background(), &flomeshv1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "cluster-1"}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the other Cluster gone", func() error {
		if err := c2.Get(context.Background(), client.ObjectKey{Name: "cluster-1"}, &flomeshv1alpha1.Cluster{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there: %w", err)
		}
		return nil
	})
	waitManaged(t, "cluster-1", metav1.ConditionTrue, "", time.Second)
	expectImports(t, time.Second, walkthroughState())
}

// 9. The control-plane API server stops: members' imports stay untouched, also across a restart
// of the federation; once it is back, the federation converges with nothing duplicated or lost.
func TestControlPlaneOutage(t *testing.T) {
	ctx := context.Background()
	versions := func() map[string]string {
		out := map[string]string{}
		for _, m := range members {
			var list flomeshv1alpha1.ServiceImportList
			if err := sb.Cluster(m).Client.List(ctx, &list); err != nil {
				t.Fatal(err)
			}
			for _, i := range list.Items {
				out[m+"/"+i.Namespace+"/"+i.Name] = i.ResourceVersion
			}
		}
		return out
	}
	expectImports(t, 2*time.Second, walkthroughState())
	before := versions()
	if err := sb.StopAPIServer("control-plane"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * opts.HealthInterval)
	if after := versions(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("imports changed while the control plane was down:\n%v\n%v", before, after)
	}
	fed.stop() // the federation restarts while the control plane is away
	kubectl(t, "cluster-1", "", "-n", "httpbin", "delete", "serviceexport", "httpbin-cluster-1")
	time.Sleep(time.Second)
	if after := versions(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("imports changed with no federation running:\n%v\n%v", before, after)
	}

	if err := sb.RestartAPIServer(ctx, "control-plane"); err != nil {
		t.Fatal(err)
	}
	var err error
	if fed, err = startFederation(sb.Cluster("control-plane").Config, opts); err != nil {
		t.Fatal(err)
	}
	want := walkthroughState()
	want["cluster-2"] = []string{want["cluster-2"][0], want["cluster-2"][2]}
	want["cluster-3"] = want["cluster-3"][:1]
	took := expectImports(t, 10*time.Second, want)
	for _, m := range members {
		waitManaged(t, m, metav1.ConditionTrue, flomeshv1alpha1.ReasonConnected, 5*time.Second)
	}
	t.Logf("converged %v after the federation restarted", took)
	if os.Getenv("CROSSGATE_TEST_VERBOSE") != "" {
		t.Log(versions())
	}
}

// A Cluster's kubeconfig cannot make the control plane run a command or read its files: exec is
// refused with Managed=False naming the field, and the command never runs.
func TestKubeconfigExecRefused(t *testing.T) {
	pwned := filepath.Join(t.TempDir(), "pwned")
	spec := flomeshv1alpha1.ClusterSpec{GatewayHost: "127.0.0.1", Kubeconfig: fmt.Sprintf(`apiVersion: v1
kind: Config
current-context: c
contexts: [{name: c, context: {cluster: k, user: u}}]
clusters: [{name: k, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: u, user: {exec: {apiVersion: client.authentication.k8s.io/v1, command: touch, args: [%q], interactiveMode: Never}}}]
`, sb.Cluster("cluster-1").Config.Host, pwned)}
	applyCluster(t, "exec", spec)
	c := waitManaged(t, "exec", metav1.ConditionFalse, flomeshv1alpha1.ReasonKubeconfigInvalid, 5*time.Second)
	if !strings.Contains(c.Message, "users[u].user.exec") {
		t.Errorf("message %q does not name the field", c.Message)
	}
	if _, err := os.Stat(pwned); err == nil {
		t.Error("the control plane ran the kubeconfig's command")
	}
	deleteCluster(t, "exec", opts.LeaveTimeout+5*time.Second)
	if _, err := os.Stat(pwned); err == nil {
		t.Error("the control plane ran the kubeconfig's command while leaving")
	}
}

// A Cluster whose error would not fit a condition (its server's name is 40,000 characters) still
// gets its Managed condition, cut to the API's limit.
func TestLongErrorFitsTheCondition(t *testing.T) {
	spec := flomeshv1alpha1.ClusterSpec{GatewayHost: "127.0.0.1", Kubeconfig: fmt.Sprintf(`apiVersion: v1
kind: Config
current-context: c
contexts: [{name: c, context: {cluster: k, user: u}}]
clusters: [{name: k, cluster: {server: "https://a%s.invalid:6443"}}]
users: [{name: u, user: {token: abc}}]
`, strings.Repeat("b", 40000))}
	applyCluster(t, "long-error", spec)
	c := waitManaged(t, "long-error", metav1.ConditionFalse, flomeshv1alpha1.ReasonUnreachable, 10*time.Second)
	if len(c.Message) > flomeshv1alpha1.MaxConditionMessage {
		t.Errorf("message of %d bytes", len(c.Message))
	}
	// Its Event too: the API server drops an Event whose note is too long.
	eventually(t, 10*time.Second, "the Unreachable Event of long-error, cut to fit", func() error {
		var l eventsv1.EventList
		if err := sb.Cluster("control-plane").Client.List(context.Background(), &l); err != nil {
			return err
		}
		for _, e := range l.Items {
			if e.Regarding.Name == "long-error" && e.Reason == flomeshv1alpha1.ReasonUnreachable {
				if len(e.Note) > flomeshv1alpha1.MaxEventNote || !strings.HasSuffix(e.Note, "(cut)") {
					return fmt.Errorf("note of %d bytes: %.80s...", len(e.Note), e.Note)
				}
				return nil
			}
		}
		return fmt.Errorf("no Event among %d", len(l.Items))
	})
	deleteCluster(t, "long-error", opts.LeaveTimeout+5*time.Second)
}

// A reachable member's Cluster carries a fresh status.lastProbeTime, so that Managed=True from
// a federation that has stopped shows as stale (the time stops moving).
func TestLastProbeTimeMoves(t *testing.T) {
	cp := sb.Cluster("control-plane").Client
	var first time.Time
	eventually(t, 10*time.Second, "cluster-1's lastProbeTime set", func() error {
		var c flomeshv1alpha1.Cluster
		if err := cp.Get(context.Background(), client.ObjectKey{Name: "cluster-1"}, &c); err != nil {
			return err
		}
		if c.Status.LastProbeTime == nil {
			return fmt.Errorf("no lastProbeTime")
		}
		first = c.Status.LastProbeTime.Time
		return nil
	})
	eventually(t, 15*time.Second, "cluster-1's lastProbeTime moving on", func() error {
		var c flomeshv1alpha1.Cluster
		if err := cp.Get(context.Background(), client.ObjectKey{Name: "cluster-1"}, &c); err != nil {
			return err
		}
		if !c.Status.LastProbeTime.After(first) {
			return fmt.Errorf("still %v", c.Status.LastProbeTime)
		}
		return nil
	})
}
