// Package demo replays the multi-cluster walkthrough (shared/seed/multi-cluster-walkthrough.txt)
// on a running sandbox: the walkthrough's own YAML applied with kubectl, a sandbox app standing
// in for each Deployment's pod, and `crossgate probe` standing in for `kubectl exec curl`. Each
// step reports its outcome, so `make demo` prints it and the sandbox test asserts it.
package demo

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/crossgate-io/crossgate/sandbox"
	"github.com/crossgate-io/crossgate/sandbox/probe"
	"github.com/crossgate-io/crossgate/sandbox/walkthrough"
)

// Env is a running sandbox and the tools a walkthrough step uses.
type Env struct {
	State *sandbox.SetState
	// Kubectl and Crossgate are the binaries the steps run.
	Kubectl, Crossgate string
	// Out receives the walkthrough's narration and each step's outcome.
	Out io.Writer
	// Requests is how many requests each probe sends (the walkthrough's loops send a few;
	// the tests send more to measure distributions).
	Requests int
	// GRPC repeats behaviours 3-6 with `crossgate probe --grpc`: grpc-go's own xDS client as
	// the caller, through the same gateways.
	GRPC bool
}

// Outcome is what a probing step saw.
type Outcome struct {
	// Behaviour is the number of the behaviour in fsm-behaviour.md (1-9).
	Behaviour int
	Title     string
	Answers   []probe.Answer
	Counts    map[string]int
	// GRPCAnswers and GRPCCounts are the same calls through grpc-go's xDS client, when asked.
	GRPCAnswers []probe.Answer
	GRPCCounts  map[string]int
}

func (e *Env) say(format string, args ...any) { fmt.Fprintf(e.Out, format+"\n", args...) }

func (e *Env) cluster(name string) *sandbox.ClusterState {
	for i := range e.State.Clusters {
		if e.State.Clusters[i].Name == name {
			return &e.State.Clusters[i]
		}
	}
	return nil
}

// Kubectl runs kubectl against one cluster with stdin, echoing the command as the walkthrough
// shows it.
func (e *Env) kubectl(ctx context.Context, cluster, stdin string, args ...string) (string, error) {
	e.say("$ kubectl --context %s %s", cluster, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, e.Kubectl, append([]string{"--kubeconfig", e.State.Kubeconfig, "--context", cluster}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	text := strings.TrimRight(out.String()+errb.String(), "\n")
	if text != "" {
		e.say("%s", indent(text))
	}
	if err != nil {
		return out.String(), fmt.Errorf("kubectl %s on %s: %w: %s", strings.Join(args, " "), cluster, err, errb.String())
	}
	return out.String(), nil
}

func indent(s string) string { return "  " + strings.ReplaceAll(s, "\n", "\n  ") }

func render(file, cluster string) (string, error) {
	return walkthrough.Render(file, map[string]string{
		"CLUSTER_NAME": cluster, "NAMESPACE_MESH": "httpbin", "HOST_IP": "127.0.0.1", "FSM_NAMESPACE": sandbox.MeshNamespace,
	}, "")
}

// apply renders a walkthrough manifest for a cluster and applies it there.
func (e *Env) apply(ctx context.Context, cluster, file, namespace string) error {
	text, err := render(file, cluster)
	if err != nil {
		return err
	}
	args := []string{"apply", "-f", "-"}
	if namespace != "" {
		args = []string{"apply", "-n", namespace, "-f", "-"}
	}
	_, err = e.kubectl(ctx, cluster, text, args...)
	return err
}

// createNamespace is `kubectl create namespace` followed by `fsm namespace add`, which crossgate
// does with the injection label. A namespace that the federation already created for imports
// is fine.
func (e *Env) createNamespace(ctx context.Context, cluster, ns string) error {
	if _, err := e.kubectl(ctx, cluster, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: "+ns+"\n", "apply", "-f", "-"); err != nil {
		return err
	}
	_, err := e.kubectl(ctx, cluster, "", "label", "namespace", ns, "crossgate.io/inject=enabled", "--overwrite")
	return err
}

// StartApp deploys the sandbox app standing in for the walkthrough's Deployment, and waits
// until it is available.
func (e *Env) StartApp(ctx context.Context, cluster, ns, name, sa string, labels string, extra ...string) error {
	args := append([]string{"sandbox", "app", "--cluster", cluster, "-n", ns, "--name", name, "--service-account", sa, "-l", labels, "--port", "8080"}, extra...)
	e.say("$ crossgate %s", strings.Join(args, " "))
	out, err := exec.CommandContext(ctx, e.Crossgate, append(args, "--dir", e.State.Dir)...).CombinedOutput()
	e.say("%s", strings.TrimRight(string(out), "\n"))
	if err != nil {
		return fmt.Errorf("crossgate sandbox app: %w: %s", err, out)
	}
	return nil
}

// KillApp takes an app's pods away at once, as the failure of their node would: its Deployment
// is scaled to zero and its pods are deleted without a grace period.
func (e *Env) KillApp(ctx context.Context, cluster, ns, name string) error {
	if _, err := e.kubectl(ctx, cluster, "", "scale", "deployment", name, "-n", ns, "--replicas=0"); err != nil {
		return err
	}
	out, err := e.kubectl(ctx, cluster, "", "get", "deployment", name, "-n", ns, "-o", "jsonpath={.spec.selector.matchLabels}")
	if err != nil {
		return err
	}
	var labels map[string]string
	if err := json.Unmarshal([]byte(out), &labels); err != nil {
		return fmt.Errorf("the selector of deployment %s/%s: %w", ns, name, err)
	}
	var sel []string
	for k, v := range labels {
		sel = append(sel, k+"="+v)
	}
	slices.Sort(sel)
	_, err = e.kubectl(ctx, cluster, "", "delete", "pods", "-n", ns, "-l", strings.Join(sel, ","), "--grace-period=0", "--force")
	return err
}

// NewCaller starts curl's stand-in sidecar in cluster-2.
func (e *Env) NewCaller(ctx context.Context) (*probe.Caller, error) {
	c := e.cluster("cluster-2")
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return nil, err
	}
	return probe.NewCaller(ctx, probe.Options{Config: cfg, XDS: c.XDS, Namespace: "curl", ServiceAccount: "curl"})
}

// Probe is `kubectl exec curl -- curl -s http://httpbin.httpbin:8080/`, Requests times.
func (e *Env) Probe(ctx context.Context, behaviour int, title string) (*Outcome, error) {
	time.Sleep(time.Second) // the walkthrough waits a moment after each change, too
	caller, err := e.NewCaller(ctx)
	if err != nil {
		return nil, err
	}
	defer caller.Close()
	if waited, ok := settle(ctx, behaviour, func() probe.Answer { return caller.Get(ctx, "http://httpbin.httpbin:8080/") }); !ok {
		e.say("(the answers did not settle within %v: counting anyway)", waited.Round(time.Millisecond))
	} else if waited > 0 {
		e.say("(settled after another %v)", waited.Round(time.Millisecond))
	}
	e.say("$ crossgate probe --cluster cluster-2 --as curl/curl -n %d http://httpbin.httpbin:8080/", e.Requests)
	o := &Outcome{Behaviour: behaviour, Title: title}
	for range e.Requests {
		a := caller.Get(ctx, "http://httpbin.httpbin:8080/")
		o.Answers = append(o.Answers, a)
		e.say("  %s", a)
	}
	var summary string
	o.Counts, summary = probe.Summary(o.Answers)
	e.say("=> %d. %s: %s\n", behaviour, title, summary)
	if e.GRPC && behaviour >= 3 && behaviour <= 6 {
		gc, err := e.grpcCaller(ctx, "httpbin.httpbin:8080")
		if err != nil {
			return nil, err
		}
		defer gc.Close()
		if waited, ok := settle(ctx, behaviour, func() probe.Answer { return gc.Call(ctx) }); !ok {
			e.say("(the gRPC answers did not settle within %v: counting anyway)", waited.Round(time.Millisecond))
		}
		e.say("$ crossgate probe --grpc --cluster cluster-2 --as curl/curl -n %d http://httpbin.httpbin:8080/", e.Requests)
		for range e.Requests {
			a := gc.Call(ctx)
			o.GRPCAnswers = append(o.GRPCAnswers, a)
			e.say("  %s", a)
		}
		o.GRPCCounts, summary = probe.Summary(o.GRPCAnswers)
		e.say("=> %d. over gRPC (grpc-go's xDS client): %s\n", behaviour, summary)
	}
	return o, nil
}

// settleWithin bounds the wait for the answers to reflect the last change.
const settleWithin = 15 * time.Second

// settled tells whether a batch of answers shows what behaviour n leads to once the change has
// reached the caller's proxy: only which clusters answer, not in which proportion (that is what
// the counted requests that follow measure).
func settled(n int, counts map[string]int) bool {
	has := func(keys ...string) bool {
		if len(counts) != len(keys) {
			return false
		}
		for _, k := range keys {
			if counts[k] == 0 {
				return false
			}
		}
		return true
	}
	switch n {
	case 3, 7:
		return has("failed")
	case 4:
		return has("cluster-1", "cluster-3")
	case 5, 8:
		return has("cluster-2")
	case 6, 9:
		return has("cluster-1", "cluster-2", "cluster-3")
	case proxylessStep:
		return has("cluster-1")
	}
	return true
}

// proxylessStep names the calls of ProxylessBehindGateway for settle: cluster-1 answers all.
const proxylessStep = 100

// settle makes uncounted calls, in batches of 20, until a batch shows the behaviour's clusters
// (settled), for at most settleWithin. The walkthrough's `sleep 1` is a person's "wait a
// moment"; on a loaded machine a change can take longer to reach the caller, and grpc-go's
// weighted_target picks only among localities whose connections are already up, so a new
// channel answers from the nearest one first. It returns how long it waited and whether the
// answers settled.
func settle(ctx context.Context, n int, call func() probe.Answer) (time.Duration, bool) {
	start := time.Now()
	for {
		counts := map[string]int{}
		for range 20 {
			a := call()
			k := a.Cluster
			if a.Failed() {
				k = "failed"
			}
			counts[k]++
		}
		if settled(n, counts) {
			return time.Since(start), true
		}
		if time.Since(start) > settleWithin || ctx.Err() != nil {
			return time.Since(start), false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// direct is `curl -s http://HOST:PORT/<cluster>/httpbin-mesh` against a member's gateway. The
// gateway's configuration follows the export within moments, as the walkthrough's `sleep 1`
// allows; a slow machine may need more, so an answer other than 200 is retried for up to 10 s.
func (e *Env) direct(ctx context.Context, cluster, path string) (string, error) {
	url := fmt.Sprintf("http://127.0.0.1:%d%s", e.cluster(cluster).GatewayPort, path)
	e.say("$ curl -s %s", url)
	deadline := time.Now().Add(10 * time.Second)
	for {
		body, err := e.get(ctx, url)
		if err == nil || time.Now().After(deadline) {
			e.say("  %s", body)
			return body, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (e *Env) get(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	body := strings.TrimSpace(string(b))
	if resp.StatusCode != http.StatusOK {
		return body, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return body, nil
}

// Step is one checkpoint of the walkthrough; Run calls check after each, so a test can assert
// and stop at the first failure.
type Step func(o *Outcome) error

// Run replays the walkthrough: the discovery and communication guide (behaviours 1-6), then
// the access-control guide (7-9). check is called with each behaviour's outcome.
func (e *Env) Run(ctx context.Context, check Step) error {
	if e.Requests == 0 {
		e.Requests = 3
	}
	if check == nil {
		check = func(*Outcome) error { return nil }
	}
	e.say("# Multi-cluster services discovery & communication\n\n## The members (crossgate sandbox up joined them, kubeconfigs in Secrets)")
	if _, err := e.kubectl(ctx, "control-plane", "", "wait", "--for=condition=Managed", "clusters", "--all", "--timeout=60s"); err != nil {
		return err
	}
	if _, err := e.kubectl(ctx, "control-plane", "", "get", "clusters"); err != nil {
		return err
	}

	e.say("\n## Deploy httpbin in cluster-1 and cluster-3, curl in cluster-2")
	for _, c := range []string{"cluster-1", "cluster-3"} {
		if err := e.createNamespace(ctx, c, "httpbin"); err != nil {
			return err
		}
		if err := e.apply(ctx, c, "httpbin-services.yaml", "httpbin"); err != nil {
			return err
		}
		// As the walkthrough's Deployment: ServiceAccount httpbin, the identity the exports
		// declare, which callers of other clusters check.
		if _, err := e.kubectl(ctx, c, "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: httpbin\n", "apply", "-n", "httpbin", "-f", "-"); err != nil {
			return err
		}
		if err := e.StartApp(ctx, c, "httpbin", "httpbin", "httpbin", "app=pipy"); err != nil {
			return err
		}
	}
	if err := e.createNamespace(ctx, "cluster-2", "curl"); err != nil {
		return err
	}
	curl := "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: curl\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: curl\n  labels:\n    app: curl\n    service: curl\nspec:\n  ports:\n  - name: http\n    port: 80\n  selector:\n    app: curl\n"
	if _, err := e.kubectl(ctx, "cluster-2", curl, "apply", "-n", "curl", "-f", "-"); err != nil {
		return err
	}

	e.say("\n## Export the services of cluster-1 and cluster-3")
	for _, c := range []string{"cluster-1", "cluster-3"} {
		if err := e.apply(ctx, c, "serviceexport-any.yaml", ""); err != nil {
			return err
		}
	}
	time.Sleep(time.Second)
	o := &Outcome{Behaviour: 1, Title: "the gateways serve the exports' paths", Counts: map[string]int{}}
	for _, c := range []string{"cluster-1", "cluster-3"} {
		if _, err := e.kubectl(ctx, c, "", "get", "serviceexports.flomesh.io", "-A"); err != nil {
			return err
		}
		for _, path := range []string{"/" + c + "/httpbin-mesh", "/" + c + "/httpbin-mesh-" + c} {
			body, err := e.direct(ctx, c, path)
			a := probe.Answer{Body: body, Err: err}
			if err == nil && strings.Contains(body, "from "+c+" ") {
				a.Cluster = c
				o.Counts[c]++
			} else {
				o.Counts["failed"]++
			}
			o.Answers = append(o.Answers, a)
		}
	}
	if _, err := e.kubectl(ctx, "cluster-1", "", "get", "httproutes", "-n", "httpbin", "httpbin.direct", "-o", "yaml"); err != nil {
		return err
	}
	e.say("=> 1. %s: %v\n", o.Title, o.Counts)
	if err := check(o); err != nil {
		return err
	}

	e.say("## The imports in cluster-2")
	list, err := e.kubectl(ctx, "cluster-2", "", "get", "serviceimports", "-A")
	if err != nil {
		return err
	}
	spec, err := e.kubectl(ctx, "cluster-2", "", "get", "serviceimports", "httpbin", "-n", "httpbin", "-o", "jsonpath={.spec}")
	if err != nil {
		return err
	}
	o = &Outcome{Behaviour: 2, Title: "cluster-2 imports httpbin, httpbin-cluster-1 and httpbin-cluster-3", Counts: map[string]int{}}
	for _, n := range []string{"httpbin ", "httpbin-cluster-1 ", "httpbin-cluster-3 "} {
		if strings.Contains(list, n) {
			o.Counts[strings.TrimSpace(n)]++
		}
	}
	o.Answers = []probe.Answer{{Body: spec}}
	e.say("=> 2. %s: %v\n", o.Title, o.Counts)
	if err := check(o); err != nil {
		return err
	}

	steps := []struct {
		behaviour int
		title     string
		before    func() error
	}{
		{3, "no GlobalTrafficPolicy: the request fails", nil},
		{4, "FailOver without a local httpbin: cluster-1 and cluster-3 alternate", func() error {
			e.say("## Routing type FailOver")
			return e.apply(ctx, "cluster-2", "gtp-failover.yaml", "httpbin")
		}},
		{5, "httpbin deployed in cluster-2: every answer from cluster-2", func() error {
			e.say("## Deploy httpbin in cluster-2")
			if err := e.createNamespace(ctx, "cluster-2", "httpbin"); err != nil {
				return err
			}
			if err := e.apply(ctx, "cluster-2", "httpbin-services.yaml", "httpbin"); err != nil {
				return err
			}
			return e.StartApp(ctx, "cluster-2", "httpbin", "httpbin", "default", "app=pipy")
		}},
		{6, "ActiveActive: cluster-1, cluster-2 and cluster-3 in turn", func() error {
			e.say("## Routing type ActiveActive")
			return e.apply(ctx, "cluster-2", "gtp-activeactive.yaml", "httpbin")
		}},
		{7, "policy mode in cluster-2: the request fails", func() error {
			e.say("# Access control\n\n## The exports declare ServiceAccount httpbin")
			for _, c := range []string{"cluster-1", "cluster-3"} {
				if err := e.apply(ctx, c, "serviceexport-httpbin.yaml", ""); err != nil {
					return err
				}
			}
			e.say("## Switch cluster-2 to policy mode")
			_, err := e.kubectl(ctx, "cluster-2", "", "patch", "meshconfig", sandbox.MeshConfigName, "-n", sandbox.MeshNamespace,
				"-p", `{"spec":{"traffic":{"enablePermissiveTrafficPolicyMode":false}}}`, "--type=merge")
			return err
		}},
		{8, "TrafficTarget curl-to-httpbin: only cluster-2 (its httpbin runs as default)", func() error {
			return e.apply(ctx, "cluster-2", "curl-to-httpbin.yaml", "httpbin")
		}},
		{9, "TrafficTarget curl-to-ext-httpbin: all three clusters", func() error {
			if _, err := e.kubectl(ctx, "cluster-2", "", "get", "serviceimports", "httpbin", "-n", "httpbin", "-o", "jsonpath={.spec.serviceAccountName}"); err != nil {
				return err
			}
			return e.apply(ctx, "cluster-2", "curl-to-ext-httpbin.yaml", "httpbin")
		}},
	}
	for _, s := range steps {
		if s.before != nil {
			if err := s.before(); err != nil {
				return err
			}
		}
		o, err := e.Probe(ctx, s.behaviour, s.title)
		if err != nil {
			return err
		}
		if err := check(o); err != nil {
			return err
		}
	}
	return nil
}

// ProxylessBehindGateway runs a proxyless gRPC server (grpc-go with xDS, no sidecar) as the Service
// grpc/echo of cluster-1, exports it, sends cluster-2's callers there (FailOver, and a
// TrafficTarget for curl: cluster-2 is in policy mode after the walkthrough), and calls it
// Requests times from cluster-2 through grpc-go's xDS client: each call crosses cluster-1's
// stand-in gateway, which must speak HTTP/2 with mTLS to the server, as the gateway's cluster
// configuration says (Envoy would speak HTTP/1.1 without it, and the call would fail).
func (e *Env) ProxylessBehindGateway(ctx context.Context) (map[string]int, error) {
	for _, c := range []string{"cluster-1", "cluster-2"} {
		if err := e.createNamespace(ctx, c, "grpc"); err != nil {
			return nil, err
		}
	}
	if _, err := e.kubectl(ctx, "cluster-1", `apiVersion: v1
kind: Service
metadata: {name: echo, namespace: grpc}
spec:
  ports: [{name: grpc, port: 8080, targetPort: 8080}]
  selector: {app: echo}
---
apiVersion: flomesh.io/v1alpha1
kind: ServiceExport
metadata: {name: echo, namespace: grpc}
spec:
  serviceAccountName: echo
  rules: [{portNumber: 8080, path: /cluster-1/echo, pathType: Prefix}]
`, "apply", "-f", "-"); err != nil {
		return nil, err
	}
	// cluster-2 is in policy mode by now: curl may call echo's gRPC methods.
	if _, err := e.kubectl(ctx, "cluster-2", `apiVersion: flomesh.io/v1alpha1
kind: GlobalTrafficPolicy
metadata: {name: echo, namespace: grpc}
spec:
  lbType: FailOver
  targets: [{clusterKey: default/default/default/cluster-1}]
---
apiVersion: specs.smi-spec.io/v1alpha4
kind: HTTPRouteGroup
metadata: {name: echo-grpc, namespace: grpc}
spec:
  matches:
  - {name: test-service, pathRegex: "/grpc.testing.TestService/.*", methods: ["POST"]}
---
apiVersion: access.smi-spec.io/v1alpha3
kind: TrafficTarget
metadata: {name: curl-to-echo, namespace: grpc}
spec:
  destination: {kind: ServiceAccount, name: echo, namespace: grpc}
  rules: [{kind: HTTPRouteGroup, name: echo-grpc, matches: [test-service]}]
  sources: [{kind: ServiceAccount, name: curl, namespace: curl}]
`, "apply", "-f", "-"); err != nil {
		return nil, err
	}
	if err := e.StartApp(ctx, "cluster-1", "grpc", "echo", "echo", "app=echo", "--proxyless"); err != nil {
		return nil, err
	}
	gc, err := e.grpcCaller(ctx, "echo.grpc:8080")
	if err != nil {
		return nil, err
	}
	defer gc.Close()
	settle(ctx, proxylessStep, func() probe.Answer { return gc.Call(ctx) })
	var answers []probe.Answer
	for range e.Requests {
		answers = append(answers, gc.Call(ctx))
	}
	counts, summary := probe.Summary(answers)
	e.say("=> a proxyless gRPC server behind cluster-1's gateway, called from cluster-2: %s", summary)
	return counts, nil
}

// grpcCaller is curl/curl of cluster-2 as a proxyless gRPC client of target (host:port).
type grpcCaller struct {
	*probe.GRPCCaller
	dir string
}

func (g *grpcCaller) Close() { g.GRPCCaller.Close(); _ = os.RemoveAll(g.dir) }

func (e *Env) grpcCaller(ctx context.Context, target string) (*grpcCaller, error) {
	return e.grpcCallerAs(ctx, target, "curl")
}

// IdentityOutcome is what ProducerPolicy saw.
type IdentityOutcome struct {
	// Counts of the HTTP calls (through each caller's stand-in sidecar) and the gRPC calls
	// (grpc-go's xDS client) of curl/curl and curl/other of cluster-2, by answering cluster.
	Curl, Other, CurlGRPC, OtherGRPC map[string]int
	// Plaintext is the status cluster-1's gateway answers a plain HTTP request with the mesh
	// Host httpbin.httpbin:8080 (0 when it closes the connection).
	Plaintext int
}

// ProducerPolicy runs after the walkthrough (cluster-2 in policy mode, ActiveActive over the
// three clusters): cluster-1 switches to policy mode with the walkthrough's curl-to-httpbin (only
// curl/curl may call its httpbin), and cluster-2 lets a second identity, curl/other, call httpbin
// everywhere. Calls cross the gateways as mTLS between the caller's proxy and the workload's, so
// cluster-1 sees who calls: curl/curl is answered by the three clusters, curl/other by cluster-2
// and cluster-3 only, over HTTP and over gRPC. A plain HTTP request to cluster-1's gateway with
// httpbin's mesh name gets no answer from httpbin.
func (e *Env) ProducerPolicy(ctx context.Context) (*IdentityOutcome, error) {
	e.say("# Identity across clusters\n\n## cluster-2 lets curl/other call httpbin too, and both make gRPC calls")
	// The gRPC calls are POSTs: a route group of their own, since httpbin-route allows GET only.
	grpcRoute := `apiVersion: specs.smi-spec.io/v1alpha4
kind: HTTPRouteGroup
metadata: {name: grpc-route, namespace: httpbin}
spec:
  matches:
  - {name: unary, pathRegex: /grpc.testing.TestService/UnaryCall, methods: [POST]}
`
	target := func(name, sa, source string, rules string) string {
		return fmt.Sprintf(`---
kind: TrafficTarget
apiVersion: access.smi-spec.io/v1alpha3
metadata: {name: %s, namespace: httpbin}
spec:
  destination: {kind: ServiceAccount, name: %s, namespace: httpbin}
  rules: [%s]
  sources: [{kind: ServiceAccount, name: %s, namespace: curl}]
`, name, sa, rules, source)
	}
	const get, unary = "{kind: HTTPRouteGroup, name: httpbin-route, matches: [all]}", "{kind: HTTPRouteGroup, name: grpc-route, matches: [unary]}"
	other := "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: other, namespace: curl}\n---\n" + grpcRoute +
		target("other-to-httpbin", "default", "other", get+", "+unary) + target("other-to-ext-httpbin", "httpbin", "other", get+", "+unary) +
		target("curl-grpc-to-httpbin", "default", "curl", unary) + target("curl-grpc-to-ext-httpbin", "httpbin", "curl", unary)
	if _, err := e.kubectl(ctx, "cluster-2", other, "apply", "-f", "-"); err != nil {
		return nil, err
	}
	e.say("## cluster-1 switches to policy mode: only curl/curl may call its httpbin")
	// Its httpbin runs as ServiceAccount httpbin: the walkthrough's curl-to-ext-httpbin (and the
	// route group of curl-to-httpbin).
	for _, f := range []string{"curl-to-httpbin.yaml", "curl-to-ext-httpbin.yaml"} {
		if err := e.apply(ctx, "cluster-1", f, "httpbin"); err != nil {
			return nil, err
		}
	}
	if _, err := e.kubectl(ctx, "cluster-1", grpcRoute+target("curl-grpc-to-ext-httpbin", "httpbin", "curl", unary), "apply", "-f", "-"); err != nil {
		return nil, err
	}
	if _, err := e.kubectl(ctx, "cluster-1", "", "patch", "meshconfig", sandbox.MeshConfigName, "-n", sandbox.MeshNamespace,
		"-p", `{"spec":{"traffic":{"enablePermissiveTrafficPolicyMode":false}}}`, "--type=merge"); err != nil {
		return nil, err
	}
	out := &IdentityOutcome{}
	for _, sa := range []string{"curl", "other"} {
		c := e.cluster("cluster-2")
		cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
		if err != nil {
			return nil, err
		}
		caller, err := probe.NewCaller(ctx, probe.Options{Config: cfg, XDS: c.XDS, Namespace: "curl", ServiceAccount: sa})
		if err != nil {
			return nil, err
		}
		counts, err := e.identityCalls(ctx, "curl/"+sa, sa == "other", func() probe.Answer { return caller.Get(ctx, "http://httpbin.httpbin:8080/") })
		caller.Close()
		if err != nil {
			return nil, err
		}
		gc, err := e.grpcCallerAs(ctx, "httpbin.httpbin:8080", sa)
		if err != nil {
			return nil, err
		}
		grpcCounts, err := e.identityCalls(ctx, "curl/"+sa+" over gRPC", sa == "other", func() probe.Answer { return gc.Call(ctx) })
		gc.Close()
		if err != nil {
			return nil, err
		}
		if sa == "curl" {
			out.Curl, out.CurlGRPC = counts, grpcCounts
		} else {
			out.Other, out.OtherGRPC = counts, grpcCounts
		}
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/", e.cluster("cluster-1").GatewayPort)
	e.say("$ curl -s -H 'Host: httpbin.httpbin:8080' %s", url)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Host = "httpbin.httpbin:8080"
	if resp, err := http.DefaultClient.Do(req); err == nil {
		out.Plaintext = resp.StatusCode
		_ = resp.Body.Close()
	}
	e.say("  %d", out.Plaintext)
	return out, nil
}

// identityCalls makes Requests calls and counts them by answering cluster. For a caller that
// cluster-1 refuses, the calls are counted once one fails (cluster-1's policy has reached its
// proxy), or after 15 s.
func (e *Env) identityCalls(ctx context.Context, who string, refused bool, call func() probe.Answer) (map[string]int, error) {
	for deadline := time.Now().Add(settleWithin); refused && time.Now().Before(deadline) && !call().Failed(); {
		time.Sleep(100 * time.Millisecond)
	}
	e.say("$ crossgate probe --cluster cluster-2 --as %s -n %d http://httpbin.httpbin:8080/", who, e.Requests)
	var answers []probe.Answer
	for range e.Requests {
		a := call()
		answers = append(answers, a)
		e.say("  %s", a)
	}
	counts, summary := probe.Summary(answers)
	e.say("=> %s: %s\n", who, summary)
	return counts, ctx.Err()
}

// grpcCallerAs is curl/<sa> of cluster-2 as a proxyless gRPC client of target (host:port).
func (e *Env) grpcCallerAs(ctx context.Context, target, sa string) (*grpcCaller, error) {
	c := e.cluster("cluster-2")
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(e.State.Dir, "probe-grpc-")
	if err != nil {
		return nil, err
	}
	gc, err := probe.NewGRPCCaller(ctx, probe.Options{Config: cfg, XDS: c.XDS, Namespace: "curl", ServiceAccount: sa}, dir, target)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return &grpcCaller{gc, dir}, nil
}

// HTTPSOutcome is what HTTPSListener saw.
type HTTPSOutcome struct {
	// Addresses are the Gateway's status.addresses; Answer what https://httpbin.example.com:8443/
	// answered through cluster-1's load balancer address, with the certificate's names.
	Addresses []string
	Answer    string
	Names     []string
}

// HTTPSListener adds an HTTPS listener (port 8443, hostname httpbin.example.com, a Secret of
// type kubernetes.io/tls) to cluster-1's Gateway and an HTTPRoute to httpbin on it, and calls
// it over TLS at the Gateway's load balancer address, where the sandbox's loopback load balancer
// serves every port of the gateway's Service.
func (e *Env) HTTPSListener(ctx context.Context) (*HTTPSOutcome, error) {
	e.say("# An HTTPS listener on cluster-1's gateway")
	certPEM, keyPEM, err := sandbox.SelfSigned("httpbin.example.com", 24*time.Hour)
	if err != nil {
		return nil, err
	}
	secret := fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata: {name: httpbin-example-cert, namespace: %s}
type: kubernetes.io/tls
data: {tls.crt: %s, tls.key: %s}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: httpbin-https, namespace: httpbin}
spec:
  parentRefs: [{name: %s, namespace: %s, sectionName: https}]
  hostnames: [httpbin.example.com]
  rules: [{backendRefs: [{name: httpbin, port: 8080}]}]
`, sandbox.SystemNamespace, base64.StdEncoding.EncodeToString(certPEM), base64.StdEncoding.EncodeToString(keyPEM), sandbox.GatewayName, sandbox.SystemNamespace)
	if _, err := e.kubectl(ctx, "cluster-1", secret, "apply", "-f", "-"); err != nil {
		return nil, err
	}
	listener := `[{"op": "add", "path": "/spec/listeners/-", "value": {"name": "https", "port": 8443, "protocol": "HTTPS", "hostname": "httpbin.example.com",
  "tls": {"certificateRefs": [{"name": "httpbin-example-cert"}]}, "allowedRoutes": {"namespaces": {"from": "All"}}}}]`
	if _, err := e.kubectl(ctx, "cluster-1", "", "patch", "gateway", sandbox.GatewayName, "-n", sandbox.SystemNamespace, "--type=json", "-p", listener); err != nil {
		return nil, err
	}
	out := &HTTPSOutcome{}
	addrs, err := e.kubectl(ctx, "cluster-1", "", "get", "gateway", sandbox.GatewayName, "-n", sandbox.SystemNamespace, "-o", "jsonpath={.status.addresses[*].value}")
	if err != nil {
		return nil, err
	}
	out.Addresses = strings.Fields(addrs)
	ip := sandbox.LoadBalancerIP(1)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", net.JoinHostPort(ip, "8443"))
		},
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, ForceAttemptHTTP2: true,
	}
	defer tr.CloseIdleConnections()
	e.say("$ curl -s --resolve httpbin.example.com:8443:%s https://httpbin.example.com:8443/", ip)
	// The Service's new port, the stand-in's listener there and the certificate by SDS follow
	// within moments; a slow machine may take longer, so a failure is retried for up to 20 s.
	var last error
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://httpbin.example.com:8443/", nil)
		if err != nil {
			return nil, err
		}
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			last = err
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			last = fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
			continue
		}
		out.Answer, out.Names = strings.TrimSpace(string(b)), resp.TLS.PeerCertificates[0].DNSNames
		e.say("  %s", out.Answer)
		return out, nil
	}
	return out, fmt.Errorf("https://httpbin.example.com:8443/ at %s: %w", ip, last)
}
