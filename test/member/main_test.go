//go:build integration

// Package member tests a member cluster's controllers (started by app.Run) against real
// kube-apiservers: exports become HTTPRoutes with statuses, imports get placeholder Services.
package member

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/crossgate-io/crossgate/controllers"
	"github.com/crossgate-io/crossgate/internal/app"
	"github.com/crossgate-io/crossgate/sandbox"
	"github.com/crossgate-io/crossgate/test/internal/apptest"
	"github.com/crossgate-io/crossgate/test/internal/poll"
	"github.com/crossgate-io/crossgate/test/internal/sbtest"
	"github.com/crossgate-io/crossgate/translator"
	"github.com/crossgate-io/crossgate/xds/identity"
)

var (
	sb *sandbox.Sandbox
	ca *identity.CA
	// running are the controllers, by cluster name.
	running = map[string]app.Running{}
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	s, err := sandbox.Start(ctx, sandbox.Options{Clusters: []string{"cluster-1", "cluster-2"}})
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "starting the sandbox: %v\n", err)
		return 1
	}
	defer s.Stop()
	sb = s
	runCtx, stop := context.WithCancel(context.Background())
	defer stop()
	ca, err = identity.NewCA("cluster.local")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	for _, c := range s.Clusters {
		if err := baseObjects(runCtx, c.Client); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", c.Name, err)
			return 1
		}
		r, done, err := apptest.Start(runCtx, c.Config, app.Config{
			Member: controllers.Options{
				Name:       c.Name,
				MeshConfig: types.NamespacedName{Namespace: "fsm-system", Name: "fsm-mesh-config"},
			},
			CA: ca, XDSAddress: "127.0.0.1:0", Federation: "off", Log: log,
		})
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", c.Name, err)
			return 1
		}
		running[c.Name] = r
		defer func() {
			stop()
			if err := <-done; err != nil {
				fmt.Fprintf(os.Stderr, "%s: the controller: %v\n", c.Name, err)
			}
		}()
	}
	return m.Run()
}

// baseObjects are what an installation creates: crossgate's namespace, GatewayClass and Gateway.
func baseObjects(ctx context.Context, c client.Client) error {
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "crossgate-system"}},
		&gatewayv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: "crossgate"}, Spec: gatewayv1.GatewayClassSpec{ControllerName: translator.ControllerName}},
		&gatewayv1.Gateway{
			ObjectMeta: metav1.ObjectMeta{Namespace: "crossgate-system", Name: "crossgate-gateway", Annotations: map[string]string{"crossgate.io/lb-port": "81"}},
			Spec:       gatewayv1.GatewaySpec{GatewayClassName: "crossgate", Listeners: translator.GatewayListeners(80)},
		},
	} {
		if err := c.Create(ctx, o); err != nil {
			return err
		}
	}
	return nil
}

// eventually waits for cond (test/internal/poll).
var eventually = poll.Eventually

func kubectl(t *testing.T, cluster, stdin string, args ...string) string {
	t.Helper()
	return sbtest.Kubectl(t, sb, cluster, stdin, args...)
}
