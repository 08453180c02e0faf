package sandbox

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"k8s.io/client-go/rest"
)

// waitFor polls check until it succeeds, the process exits, or timeout passes.
func waitFor(ctx context.Context, p *process, timeout time.Duration, check func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		if p.exited() {
			if p.portTaken() {
				return fmt.Errorf("%s: %w", p.name, errAddrInUse)
			}
			return p.exitError()
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		last = check(cctx)
		cancel()
		if last == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("waiting for %s: %w", p.name, ctx.Err())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s (last check: %w); the end of %s:\n%s",
				p.name, timeout, last, p.logPath, p.logTail(15))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// httpGetOK succeeds when GET url answers 200; cfg, when given, supplies TLS and credentials.
func httpGetOK(ctx context.Context, url string, cfg *rest.Config) error {
	c := http.DefaultClient
	if cfg != nil {
		var err error
		if c, err = rest.HTTPClientFor(cfg); err != nil {
			return err
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	return nil
}
