// Package probe sends requests as a workload of a sandbox cluster would, through its stand-in
// sidecar, and reports which cluster answered each.
package probe

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/crossgate-io/crossgate/sandbox"
	"github.com/crossgate-io/crossgate/sandbox/proxy"
	"github.com/crossgate-io/crossgate/wellknown"
	"github.com/crossgate-io/crossgate/xds/identity"
)

// Options of a probe.
type Options struct {
	// Config reaches the caller's cluster (for the root CA); XDS is its controller's xDS address.
	Config *rest.Config
	XDS    string
	// Namespace and ServiceAccount are the caller's identity (curl/curl).
	Namespace, ServiceAccount string
	Log                       *slog.Logger
}

// Answer is the outcome of one request.
type Answer struct {
	// Cluster that answered ("cluster-1"), from the answer's "Hi, I am from <cluster>".
	Cluster string
	// Body is the answer, or what went wrong.
	Body   string
	Status int
	Err    error
}

// Failed reports whether the request got no answer from an app.
func (a Answer) Failed() bool { return a.Cluster == "" }

func (a Answer) String() string {
	switch {
	case a.Err != nil:
		return "failed: " + a.Err.Error()
	case a.Cluster == "":
		return fmt.Sprintf("failed: %d %s", a.Status, a.Body)
	}
	return a.Body
}

var fromCluster = regexp.MustCompile(`I am from (\S+?)[ !]`)

// Caller is a caller's stand-in sidecar, ready to send requests.
type Caller struct {
	proxy  *proxy.Proxy
	client *http.Client
	stop   func()
}

// NewCaller starts the caller's sidecar and waits for its configuration.
func NewCaller(ctx context.Context, o Options) (*Caller, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	cl, err := client.New(o.Config, client.Options{Scheme: sandbox.Scheme})
	if err != nil {
		return nil, err
	}
	var root corev1.Secret
	if err := cl.Get(ctx, client.ObjectKey{Namespace: sandbox.SystemNamespace, Name: sandbox.RootSecret}, &root); err != nil {
		return nil, fmt.Errorf("reading the cluster's root CA: %w", err)
	}
	ca, err := identity.LoadCA(sandbox.TrustDomain, root.Data[identity.SecretCertKey], root.Data[identity.SecretKeyKey])
	if err != nil {
		return nil, err
	}
	cert, err := ca.Issue(o.Namespace, o.ServiceAccount, time.Hour)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithCancel(ctx)
	p, err := proxy.Start(pctx, proxy.Options{
		Role: proxy.Sidecar, Log: o.Log, Namespace: o.Namespace,
		Network: &sandbox.ClusterNetwork{Client: cl, Namespace: o.Namespace},
		XDS:     proxy.XDSOptions{Address: o.XDS, Node: wellknown.Sidecar(o.Namespace, o.ServiceAccount).String(), Certificate: cert},
	})
	if err != nil {
		cancel()
		return nil, err
	}
	select {
	case <-p.Ready():
	case <-time.After(10 * time.Second):
		cancel()
		return nil, fmt.Errorf("the sidecar of %s/%s got no configuration from %s within 10s (does ServiceAccount %s/%s exist?)", o.Namespace, o.ServiceAccount, o.XDS, o.Namespace, o.ServiceAccount)
	}
	// Let the rest of the configuration (routes, endpoints) arrive.
	for last, quiet := p.Updates(), time.Now(); time.Since(quiet) < 200*time.Millisecond; time.Sleep(20 * time.Millisecond) {
		if n := p.Updates(); n != last {
			last, quiet = n, time.Now()
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		return nil, err
	}
	srv := p.Server()
	go func() { _ = srv.Serve(ln) }()
	proxyURL := &url.URL{Scheme: "http", Host: ln.Addr().String()}
	return &Caller{
		proxy:  p,
		client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL), DisableKeepAlives: true}},
		stop:   func() { _ = srv.Close(); cancel() },
	}, nil
}

// Close stops the sidecar.
func (c *Caller) Close() { c.stop() }

// Get sends one GET as curl would.
func (c *Caller) Get(ctx context.Context, target string) Answer {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return Answer{Err: err}
	}
	req.Header.Set("User-Agent", "curl/8.10.1")
	resp, err := c.client.Do(req)
	if err != nil {
		return Answer{Err: err}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	a := Answer{Status: resp.StatusCode, Body: strings.TrimSpace(string(b))}
	if m := fromCluster.FindStringSubmatch(a.Body); resp.StatusCode == http.StatusOK && m != nil {
		a.Cluster = m[1]
	}
	return a
}

// Summary counts answers by cluster ("failed" for the rest), as "cluster-1 15, cluster-3 15".
func Summary(answers []Answer) (map[string]int, string) {
	n := map[string]int{}
	for _, a := range answers {
		if a.Failed() {
			n["failed"]++
		} else {
			n[a.Cluster]++
		}
	}
	var keys []string
	for k := range n {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, n[k]))
	}
	return n, strings.Join(parts, ", ")
}
