//go:build integration

// Package federation tests the federation controller against four real kube-apiservers: a
// control plane and cluster-1..3, joined with the walkthrough's own Cluster manifests.
package federation

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
	"github.com/crossgate-io/crossgate/controllers/federation"
	"github.com/crossgate-io/crossgate/sandbox"
	"github.com/crossgate-io/crossgate/sandbox/walkthrough"
	"github.com/crossgate-io/crossgate/test/internal/poll"
	"github.com/crossgate-io/crossgate/test/internal/sbtest"
	"github.com/crossgate-io/crossgate/wellknown"
)

var (
	sb   *sandbox.Sandbox
	fed  *running
	opts = federation.Options{
		Quiet: 10 * time.Millisecond, HealthInterval: 300 * time.Millisecond, ConnectTimeout: 2 * time.Second,
		LeaseDuration: 3 * time.Second, LeaveTimeout: 4 * time.Second, ProbeInterval: time.Second,
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel()})),
	}
	members = []string{"cluster-1", "cluster-2", "cluster-3"}
)

// running is a federation controller on its own manager.
type running struct {
	*federation.Federation
	stop func()
}

func startFederation(cfg *rest.Config, o federation.Options) (*running, error) {
	mgr, err := ctrl.NewManager(cfg, manager.Options{
		Scheme:     sandbox.Scheme,
		Metrics:    metricsserver.Options{BindAddress: "0"},
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		return nil, err
	}
	f, err := federation.Setup(mgr, o)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	var once sync.Once
	return &running{Federation: f, stop: func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				fmt.Fprintln(os.Stderr, "federation manager:", err)
			}
		})
	}}, nil
}

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s, err := sandbox.Start(ctx, sandbox.Options{Clusters: append([]string{"control-plane"}, members...)})
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the sandbox:", err)
		return 1
	}
	defer s.Stop()
	sb = s
	ctrl.SetLogger(logr.FromSlogHandler(opts.Log.Handler()))
	if fed, err = startFederation(s.Cluster("control-plane").Config, opts); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { fed.stop() }()
	return m.Run()
}

// eventually waits for cond (test/internal/poll).
var eventually = poll.Eventually

func kubectl(t *testing.T, cluster, stdin string, args ...string) string {
	t.Helper()
	return sbtest.Kubectl(t, sb, cluster, stdin, args...)
}

// render renders a walkthrough manifest for a cluster the way the walkthrough's loops do.
func render(t *testing.T, file, cluster string, port int) string {
	t.Helper()
	kc, err := os.ReadFile(sb.Cluster(cluster).Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	text, err := walkthrough.Render(file, map[string]string{
		"CLUSTER_NAME": cluster, "HOST_IP": "127.0.0.1", "PORT": fmt.Sprint(port),
		"FSM_NAMESPACE": "fsm-system", "NAMESPACE_MESH": "httpbin",
	}, string(kc))
	if err != nil {
		t.Fatal(err)
	}
	return text
}

// gatewayPort is the walkthrough's gateway port of cluster-N: 80+N.
func gatewayPort(cluster string) int {
	var n int
	fmt.Sscanf(cluster, "cluster-%d", &n)
	return 80 + n
}

func clusterKey(name string) string { return "default/default/default/" + name }

// joinWalkthrough applies the walkthrough's Cluster manifest for each member on the control
// plane, as its `for CLUSTER_NAME in …` loop does.
func joinWalkthrough(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		kubectl(t, "control-plane", render(t, "cluster.yaml", n, gatewayPort(n)), "apply", "-f", "-")
	}
}

// exportWalkthrough creates the httpbin namespace, Services and exports (guide 2, "*") in a member.
func exportWalkthrough(t *testing.T, cluster string) {
	t.Helper()
	kubectl(t, cluster, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: httpbin\n", "apply", "-f", "-")
	kubectl(t, cluster, render(t, "httpbin-services.yaml", cluster, 0), "apply", "-n", "httpbin", "-f", "-")
	kubectl(t, cluster, render(t, "serviceexport-any.yaml", cluster, 0), "apply", "-f", "-")
}

func managed(t *testing.T, name string) *metav1.Condition {
	t.Helper()
	var c flomeshv1alpha1.Cluster
	if err := sb.Cluster("control-plane").Client.Get(context.Background(), client.ObjectKey{Name: name}, &c); err != nil {
		return nil
	}
	return meta.FindStatusCondition(c.Status.Conditions, flomeshv1alpha1.ConditionManaged)
}

func waitManaged(t *testing.T, name string, status metav1.ConditionStatus, reason string, within time.Duration) *metav1.Condition {
	t.Helper()
	var got *metav1.Condition
	eventually(t, within, fmt.Sprintf("Cluster %s Managed=%s %s", name, status, reason), func() error {
		got = managed(t, name)
		if got == nil || got.Status != status || (reason != "" && got.Reason != reason) {
			return fmt.Errorf("Managed is %+v", got)
		}
		return nil
	})
	return got
}

// importsOf lists a cluster's federated imports as "ns/name port:clusterKey@port,…", sorted,
// and fails on a duplicate endpoint.
func importsOf(cluster string) ([]string, error) {
	var list flomeshv1alpha1.ServiceImportList
	if err := sb.Cluster(cluster).Client.List(context.Background(), &list, client.MatchingLabels{wellknown.FederatedLabel: "true"}); err != nil {
		return nil, err
	}
	var out []string
	for _, imp := range list.Items {
		var eps []string
		for _, p := range imp.Spec.Ports {
			for _, e := range p.Endpoints {
				eps = append(eps, fmt.Sprintf("%d:%s@%d", p.Port, strings.TrimPrefix(e.ClusterKey, "default/default/default/"), e.Target.Port))
			}
		}
		if len(slices.Compact(slices.Clone(eps))) != len(eps) {
			return nil, fmt.Errorf("%s/%s has a duplicate endpoint: %v", imp.Namespace, imp.Name, eps)
		}
		out = append(out, imp.Namespace+"/"+imp.Name+" "+strings.Join(eps, ","))
	}
	sort.Strings(out)
	return out, nil
}

// expectImports waits until every listed cluster holds exactly the given imports.
func expectImports(t *testing.T, within time.Duration, want map[string][]string) time.Duration {
	t.Helper()
	return eventually(t, within, "imports across the members", func() error {
		for c, w := range want {
			got, err := importsOf(c)
			if err != nil {
				return err
			}
			if !slices.Equal(got, w) {
				return fmt.Errorf("%s holds %q, want %q", c, got, w)
			}
		}
		return nil
	})
}

func jsonEqual(a, b string) (bool, error) {
	var x, y any
	if err := json.Unmarshal([]byte(a), &x); err != nil {
		return false, err
	}
	if err := json.Unmarshal([]byte(b), &y); err != nil {
		return false, err
	}
	ja, _ := json.Marshal(x)
	jb, _ := json.Marshal(y)
	return string(ja) == string(jb), nil
}

func logLevel() slog.Level {
	if os.Getenv("CROSSGATE_TEST_DEBUG") != "" {
		return slog.LevelDebug
	}
	return slog.LevelWarn
}
