package bench

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"k8s.io/client-go/rest"

	"github.com/crossgate-io/crossgate/controllers"
	"github.com/crossgate-io/crossgate/internal/app"
	"github.com/crossgate-io/crossgate/test/internal/apptest"
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
