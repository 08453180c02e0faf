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
// main sets it up (the first call in a process sets it: controller-runtime's logger is global).
func Start(ctx context.Context, cfg *rest.Config, c app.Config) (app.Running, <-chan error, error) {
	if c.Log != nil {
		ctrl.SetLogger(logr.FromSlogHandler(c.Log.Handler()))
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
