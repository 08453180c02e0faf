//go:build integration

package member

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/crossgate-io/crossgate/controllers"
	"github.com/crossgate-io/crossgate/test/internal/sbtest"
	"github.com/crossgate-io/crossgate/wellknown"
	"github.com/crossgate-io/crossgate/xds/cache"
)

// The API server goes away long enough for the leader to lose its lease: the controllers stop
// (controller-runtime ends a manager that loses leadership), but the xDS cache keeps serving the
// whole last state and the supervisor campaigns again; when the API server is back, the new
// manager leads and publishes.
func TestXDSOutlivesLeadership(t *testing.T) {
	s := sbtest.Start(t, "leader")
	c := s.Cluster("leader")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := baseObjects(ctx, c.Client); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	xds := cache.New(controllers.NodeKey, log)
	opts := controllers.Options{
		Name: "leader", CA: ca, XDS: xds, Log: log,
		MeshConfig:     types.NamespacedName{Namespace: "fsm-system", Name: "fsm-mesh-config"},
		LeaderElection: true, LeaderElectionNamespace: "crossgate-system",
		LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 500 * time.Millisecond,
	}
	sup := &controllers.Supervisor{Log: log, Build: func() (*controllers.Member, error) { return controllers.NewMember(c.Config, opts) }}
	done := make(chan struct{})
	var runErr error
	go func() { runErr = sup.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	key := wellknown.Gateway(wellknown.SystemNamespace, wellknown.DefaultGatewayName).String()
	var before []cache.Resource
	eventually(t, time.Minute, "leading and the gateway's configuration published", func() error {
		m := sup.Current()
		if m == nil {
			return fmt.Errorf("no manager yet")
		}
		select {
		case <-m.Manager.Elected():
		default:
			return fmt.Errorf("not elected")
		}
		res, _, known := xds.Dump(key)
		if !known || len(res) == 0 || !sup.Ready() {
			return fmt.Errorf("nothing published for %s", key)
		}
		before = res
		return nil
	})

	if err := s.StopAPIServer("leader"); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "leadership lost and a new manager campaigning", func() error {
		if sup.Restarts() < 1 {
			return fmt.Errorf("no restart yet")
		}
		return nil
	})
	select {
	case <-done:
		t.Fatalf("the supervisor ended when leadership was lost: %v", runErr)
	default:
	}
	after, _, known := xds.Dump(key)
	if !known || len(after) != len(before) || !sup.Ready() {
		t.Fatalf("the last state is not served after leadership was lost: %d resources (was %d), known %v, ready %v", len(after), len(before), known, sup.Ready())
	}
	for i := range after {
		if after[i].Name != before[i].Name || after[i].Version != before[i].Version {
			t.Errorf("resource %s@%s became %s@%s", before[i].Name, before[i].Version, after[i].Name, after[i].Version)
		}
	}

	if err := s.RestartAPIServer(ctx, "leader"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Minute, "the new manager leading and publishing", func() error {
		m := sup.Current()
		select {
		case <-m.Manager.Elected():
		default:
			return fmt.Errorf("not elected")
		}
		if !m.Publisher.Ready() {
			return fmt.Errorf("not published")
		}
		return nil
	})
}
