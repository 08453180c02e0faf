package bench

import (
	"context"
	"log/slog"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/crossgate-io/crossgate/controllers"
	"github.com/crossgate-io/crossgate/internal/app"
	"github.com/crossgate-io/crossgate/sandbox"
	"github.com/crossgate-io/crossgate/test/internal/apptest"
	"github.com/crossgate-io/crossgate/translator"
	"github.com/crossgate-io/crossgate/wellknown"
	"github.com/crossgate-io/crossgate/xds/identity"
)

// startController runs the controller as crossgate-controller does (app.Run: the member
// controllers under their supervisor, the federation when federation is "on", the xDS server
// over mTLS), without a webhook, metrics or leader election, its xDS server on a free loopback
// port, until ctx ends.
func startController(ctx context.Context, cfg *rest.Config, member controllers.Options, ca identity.Issuer, log *slog.Logger, federation string) (app.Running, error) {
	r, _, err := apptest.Start(ctx, cfg, app.Config{Member: member, CA: ca, XDSAddress: "127.0.0.1:0", Federation: federation, Log: log})
	return r, err
}

// dialXDS connects to the controller's xDS server as a proxy of identity namespace/sa does:
// mTLS with a certificate of that identity.
func dialXDS(r app.Running, namespace, sa string) (*grpc.ClientConn, error) {
	cert, err := r.CA.Issue(namespace, sa, time.Hour)
	if err != nil {
		return nil, err
	}
	tc, err := cert.ClientTLS()
	if err != nil {
		return nil, err
	}
	return grpc.NewClient(r.XDS.String(), grpc.WithTransportCredentials(credentials.NewTLS(tc)))
}

// oneCluster starts a sandbox of one API server named name (with crossgate's CRDs unless
// skipCRDs); the caller stops it.
func oneCluster(ctx context.Context, name string, skipCRDs bool) (*sandbox.Sandbox, error) {
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return sandbox.Start(sctx, sandbox.Options{Clusters: []string{name}, SkipCRDs: skipCRDs})
}

// dialGateway connects to the controller's xDS server as the default Gateway's proxies do, and
// returns its node ID.
func dialGateway(r app.Running) (*grpc.ClientConn, wellknown.NodeID, error) {
	gw := wellknown.Gateway(wellknown.SystemNamespace, wellknown.DefaultGatewayName)
	conn, err := dialXDS(r, gw.Namespace, wellknown.GatewayServiceAccount(gw.Name))
	return conn, gw, err
}

// gatewayObjects are what an installation creates: crossgate's namespace, GatewayClass and
// default Gateway (one HTTP listener admitting routes of every namespace).
func gatewayObjects() []client.Object {
	return []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: wellknown.SystemNamespace}},
		&gatewayv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: "crossgate"}, Spec: gatewayv1.GatewayClassSpec{ControllerName: translator.ControllerName}},
		&gatewayv1.Gateway{
			ObjectMeta: metav1.ObjectMeta{Namespace: wellknown.SystemNamespace, Name: wellknown.DefaultGatewayName},
			Spec:       gatewayv1.GatewaySpec{GatewayClassName: "crossgate", Listeners: translator.GatewayListeners(80)},
		},
	}
}

// startMember runs one member's controller (federation off) with a CA of its own, logging
// errors only.
func startMember(ctx context.Context, cfg *rest.Config, member controllers.Options) (app.Running, error) {
	ca, err := identity.NewCA("cluster.local")
	if err != nil {
		return app.Running{}, err
	}
	return startController(ctx, cfg, member, ca, quietLog(), "off")
}

// quietLog logs errors only, to stderr.
func quietLog() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}
