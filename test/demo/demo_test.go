//go:build integration

// Package demo asserts the walkthrough on the sandbox: `crossgate sandbox up` (separate
// processes: API servers, one crossgate-controller per cluster, stand-in gateways), the
// walkthrough replayed with kubectl, sandbox apps and the HTTP probe, and the nine behaviours of
// shared/reference/fsm-behaviour.md checked with their distributions.
package demo

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crossgate-io/crossgate/sandbox"
	"github.com/crossgate-io/crossgate/sandbox/demo"
	"github.com/crossgate-io/crossgate/sandbox/probe"
)

const requests = 300

func build(t *testing.T) string {
	t.Helper()
	bin, err := sandbox.BuildCommands(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

func within(t *testing.T, o *demo.Outcome, cluster string, lo, hi float64) {
	t.Helper()
	share := float64(o.Counts[cluster]) / float64(len(o.Answers))
	if share < lo || share > hi {
		t.Errorf("behaviour %d: %s answered %.0f%% (%d of %d), want %.0f-%.0f%%: %v", o.Behaviour, cluster, share*100, o.Counts[cluster], len(o.Answers), lo*100, hi*100, o.Counts)
	}
}

func only(t *testing.T, o *demo.Outcome, key string) {
	t.Helper()
	if o.Counts[key] != len(o.Answers) {
		t.Errorf("behaviour %d (%s): %v, want all %d %s", o.Behaviour, o.Title, o.Counts, len(o.Answers), key)
	}
}

func TestWalkthrough(t *testing.T) {
	bin := build(t)
	dir := filepath.Join(t.TempDir(), "sandbox")
	binDir, err := sandbox.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	cli := func(args ...string) (string, error) {
		cmd := exec.Command(bin, append(args, "--dir", dir)...)
		cmd.Env = append(os.Environ(), "CROSSGATE_BIN_DIR="+binDir)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	base, err := sandbox.FreeGatewayPorts(3)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := cli("sandbox", "up", "--gateway-port", fmt.Sprint(base)); err != nil {
		t.Fatalf("sandbox up: %v\n%s", err, out)
	}
	st, err := sandbox.ReadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	pids := st.Pids()
	defer func() {
		if out, err := cli("sandbox", "down"); err != nil {
			t.Errorf("sandbox down: %v\n%s", err, out)
		}
		for _, p := range pids {
			if syscall.Kill(p, 0) == nil {
				t.Errorf("process %d still runs after sandbox down", p)
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
		}
	}()

	var narration bytes.Buffer
	env := &demo.Env{State: st, Kubectl: filepath.Join(binDir, "kubectl"), Crossgate: bin, Out: &narration, Requests: requests, GRPC: true}
	ctx := context.Background()
	err = env.Run(ctx, func(o *demo.Outcome) error {
		t.Logf("behaviour %d, %s: %v", o.Behaviour, o.Title, o.Counts)
		switch o.Behaviour {
		case 1: // the direct path through each gateway answers from its own cluster
			if o.Counts["cluster-1"] != 2 || o.Counts["cluster-3"] != 2 {
				t.Errorf("direct access through the gateways: %v", o.Counts)
			}
		case 2:
			if len(o.Counts) != 3 {
				t.Errorf("cluster-2's imports: %v", o.Counts)
			}
		case 3, 7:
			only(t, o, "failed")
		case 4:
			within(t, o, "cluster-1", 0.40, 0.60)
			within(t, o, "cluster-3", 0.40, 0.60)
		case 5, 8:
			only(t, o, "cluster-2")
		case 6, 9:
			for _, c := range []string{"cluster-1", "cluster-2", "cluster-3"} {
				within(t, o, c, 1.0/3-0.15, 1.0/3+0.15)
			}
		}
		if o.Behaviour >= 3 && o.Behaviour <= 6 {
			// The same calls through grpc-go's own xDS client, the stand-in gateways between.
			t.Logf("behaviour %d over gRPC: %v", o.Behaviour, o.GRPCCounts)
			g := &demo.Outcome{Behaviour: o.Behaviour, Title: o.Title + " (gRPC)", Answers: o.GRPCAnswers, Counts: o.GRPCCounts}
			switch o.Behaviour {
			case 3:
				only(t, g, "failed")
			case 4:
				within(t, g, "cluster-1", 0.40, 0.60)
				within(t, g, "cluster-3", 0.40, 0.60)
			case 5:
				only(t, g, "cluster-2")
			case 6:
				for _, c := range []string{"cluster-1", "cluster-2", "cluster-3"} {
					within(t, g, c, 1.0/3-0.15, 1.0/3+0.15)
				}
			}
		}
		if t.Failed() {
			return fmt.Errorf("behaviour %d failed", o.Behaviour)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%v\nthe narration so far:\n%s", err, narration.String())
	}

	// A proxyless gRPC server (real grpc-go) behind cluster-1's stand-in gateway, called by
	// grpc-go's client from cluster-2: the gateway speaks HTTP/2 with mTLS to it, as its
	// configuration says.
	counts, err := env.ProxylessBehindGateway(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("a proxyless gRPC server behind cluster-1's gateway: %v", counts)
	if counts["cluster-1"] != requests {
		t.Errorf("calls to the proxyless server behind cluster-1's gateway: %v, want all from cluster-1", counts)
	}

	// Identity across clusters (issue 18): cluster-1 in policy mode admits curl/curl only. Calls
	// reach it through its gateway as mTLS from the caller's proxy (or grpc-go) to the workload's,
	// so it sees who calls: curl/curl is answered by the three clusters, curl/other (whom
	// cluster-2 lets call) never by cluster-1; a plain request with httpbin's mesh name does
	// not reach httpbin.
	id, err := env.ProducerPolicy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cluster-1 admits curl/curl only: curl %v, other %v; over gRPC: curl %v, other %v; plaintext to its gateway: %d",
		id.Curl, id.Other, id.CurlGRPC, id.OtherGRPC, id.Plaintext)
	for name, counts := range map[string]map[string]int{"curl/curl": id.Curl, "curl/curl over gRPC": id.CurlGRPC} {
		if counts["failed"] > 0 || counts["cluster-1"] == 0 || counts["cluster-2"] == 0 || counts["cluster-3"] == 0 {
			t.Errorf("%s: %v, want answers from the three clusters and no failure", name, counts)
		}
	}
	for name, counts := range map[string]map[string]int{"curl/other": id.Other, "curl/other over gRPC": id.OtherGRPC} {
		if counts["cluster-1"] > 0 || counts["failed"] == 0 || counts["cluster-2"] == 0 || counts["cluster-3"] == 0 {
			t.Errorf("%s: %v, want cluster-1 to refuse it and cluster-2 and cluster-3 to answer", name, counts)
		}
	}
	if id.Plaintext != http.StatusNotFound {
		t.Errorf("a plain HTTP request with httpbin's mesh name through cluster-1's gateway: status %d, want 404 (no route)", id.Plaintext)
	}

	// An HTTPS listener added to cluster-1's Gateway: its Service gets the port, the sandbox's
	// loopback load balancer serves it at the Gateway's address, and the stand-in gateway
	// terminates TLS with the listener's certificate and routes to httpbin (which admits its
	// gateway in policy mode: httpbin is exported).
	hs, err := env.HTTPSListener(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("https://httpbin.example.com:8443/ at %v: %q, certificate for %v", hs.Addresses, hs.Answer, hs.Names)
	if !slices.Equal(hs.Addresses, []string{sandbox.LoadBalancerIP(1)}) {
		t.Errorf("cluster-1's Gateway addresses %v, want its load balancer's %s", hs.Addresses, sandbox.LoadBalancerIP(1))
	}
	if !strings.Contains(hs.Answer, "cluster-1") || !slices.Equal(hs.Names, []string{"httpbin.example.com"}) {
		t.Errorf("HTTPS through cluster-1's gateway: %q with a certificate for %v", hs.Answer, hs.Names)
	}

	// Killing cluster-1's app while ActiveActive traffic runs (its pods deleted without a grace
	// period, as when their node fails): after 2 s no call fails and none goes to cluster-1.
	caller, err := env.NewCaller(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer caller.Close()
	if err := env.KillApp(ctx, "cluster-1", "httpbin", "httpbin"); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	var before, after []probe.Answer
	for time.Since(killed) < 5*time.Second {
		a := caller.Get(ctx, "http://httpbin.httpbin:8080/")
		if time.Since(killed) > 2*time.Second {
			after = append(after, a)
		} else {
			before = append(before, a)
		}
	}
	_, first := probe.Summary(before)
	var summary string
	counts, summary = probe.Summary(after)
	t.Logf("in the 2 s after cluster-1's app was killed: %s; from 2 s to 5 s: %s", first, summary)
	if counts["failed"] > 0 || counts["cluster-1"] > 0 || counts["cluster-2"] == 0 || counts["cluster-3"] == 0 {
		t.Errorf("after cluster-1's app was killed: %s", summary)
	}
}
