// Package apptest starts the controller for tests and benchmarks as crossgate-controller does
// (internal/app.Run).
package apptest

import (
	"context"
	"fmt"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/crossgate-io/crossgate/internal/app"
)

// Start runs app.Run(ctx, cfg, c) in the background and returns once the controller has started
// (its listeners bound), with the channel Run's result arrives on when ctx ends; or Run's error
// when it ended before starting. controller-runtime logs to c.Log, as crossgate-controller's
// main sets it up (the first call in a process sets it: controller-runtime's logger is global),
// and cfg is rate-limited as crossgate-controller's is.
func Start(ctx context.Context, cfg *rest.Config, c app.Config) (app.Running, <-chan error, error) {
	if c.Log != nil {
		ctrl.SetLogger(logr.FromSlogHandler(c.Log.Handler()))
	}
	if cfg.QPS == 0 {
		// As crossgate-controller's configuration comes from controller-runtime's GetConfig:
		// no client-side rate limit (the API server's priority and fairness limits instead),
		// not client-go's default of 5 requests a second.
		cfg = rest.CopyConfig(cfg)
		cfg.QPS = -1
	}
	started := make(chan app.Running, 1)
	done := make(chan error, 1)
	then := c.Started
	c.Started = func(r app.Running) {
		if then != nil {
			then(r)
		}
		started <- r
	}
	go func() { done <- app.Run(ctx, cfg, c) }()
	select {
	case r := <-started:
		return r, done, nil
	case err := <-done:
		return app.Running{}, nil, fmt.Errorf("the controller: %w", err)
	}
}
