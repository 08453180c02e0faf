package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/crossgate-io/crossgate/sandbox/network"
	"github.com/crossgate-io/crossgate/xds/identity"
	"github.com/crossgate-io/crossgate/xds/simulate"
)

// Role is what the stand-in stands in for.
type Role int

const (
	// Sidecar is a caller's sidecar: it takes requests as an HTTP proxy would (absolute URI or
	// Host header) and sends them where the caller's outbound configuration says.
	Sidecar Role = iota
	// Gateway is a member's gateway: it takes requests on the LoadBalancer port and sends them
	// where the gateway's listener on ListenerPort says.
	Gateway
)

// Options configure a stand-in proxy.
type Options struct {
	Role Role
	XDS  XDSOptions
	// ListenerPort is the gateway listener's port in the xDS configuration (80); the stand-in
	// itself listens wherever it is served.
	ListenerPort uint32
	Log          *slog.Logger
}

// Proxy is a running stand-in.
type Proxy struct {
	opts      Options
	cfg       *config
	plain     *http.Transport
	h2tls     *http.Transport // gRPC to proxyless servers, which require mTLS
	mu        sync.Mutex
	localityW map[string]int // smooth weighted round robin state, by cluster/priority/locality
	endpointN map[string]int // round robin over a locality's endpoints
	// Outlier detection, by cluster|endpoint.
	failures     map[string]int
	ejectedUntil map[string]time.Time
}

// Start subscribes to the proxy's configuration. Ready is closed once it holds listeners and
// clusters.
func Start(ctx context.Context, o Options) (*Proxy, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	o.XDS.Log = o.Log
	if o.ListenerPort == 0 {
		o.ListenerPort = 80
	}
	dial := func(ctx context.Context, netw, addr string) (net.Conn, error) {
		// The sandbox network: pod IPs stand for loopback addresses.
		return (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, netw, network.LoopbackAddr(addr))
	}
	p := &Proxy{opts: o, cfg: newConfig(), localityW: map[string]int{}, endpointN: map[string]int{},
		failures: map[string]int{}, ejectedUntil: map[string]time.Time{},
		plain: &http.Transport{DialContext: dial, MaxIdleConnsPerHost: 16, IdleConnTimeout: 30 * time.Second},
	}
	if err := p.cfg.subscribe(ctx, o.XDS); err != nil {
		return nil, err
	}
	tlsCfg, err := upstreamTLS(o.XDS.Certificate)
	if err != nil {
		return nil, err
	}
	var h2 http.Protocols
	h2.SetHTTP2(true)
	p.h2tls = &http.Transport{DialContext: dial, TLSClientConfig: tlsCfg, Protocols: &h2, ForceAttemptHTTP2: true}
	return p, nil
}

// upstreamTLS is the client side of mTLS to a proxyless gRPC server: the proxy's certificate,
// and the server's chain checked against the set's root (identities are SPIFFE URIs, not host
// names).
func upstreamTLS(cert *identity.Certificate) (*tls.Config, error) {
	pair, err := tls.X509KeyPair(cert.CertPEM, cert.KeyPEM)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(cert.RootPEM)
	return &tls.Config{
		MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}, NextProtos: []string{"h2"},
		InsecureSkipVerify: true, // replaced by the chain check below: no host name to match
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the upstream presented no certificate")
			}
			opts := x509.VerifyOptions{Roots: pool, Intermediates: x509.NewCertPool()}
			for _, c := range cs.PeerCertificates[1:] {
				opts.Intermediates.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(opts)
			return err
		},
	}, nil
}

// Ready is closed once the proxy holds its configuration.
func (p *Proxy) Ready() <-chan struct{} { return p.cfg.ready }

// Updates counts the configuration updates received.
func (p *Proxy) Updates() int {
	p.cfg.mu.RLock()
	defer p.cfg.mu.RUnlock()
	return p.cfg.updates
}

// Server returns an HTTP server for the proxy that speaks HTTP/1.1 and h2c.
func (p *Proxy) Server() *http.Server {
	var ps http.Protocols
	ps.SetHTTP1(true)
	ps.SetHTTP2(true)
	ps.SetUnencryptedHTTP2(true)
	return &http.Server{Handler: p, Protocols: &ps, ReadHeaderTimeout: 10 * time.Second}
}

// Decide is where the request goes, per the proxy's configuration.
func (p *Proxy) Decide(r *http.Request) *simulate.Result {
	req := simulate.Request{Host: r.Host, Path: r.URL.Path, Method: r.Method, Headers: map[string]string{}}
	for k, v := range r.Header {
		req.Headers[strings.ToLower(k)] = strings.Join(v, ",")
	}
	req.Headers[":authority"] = r.Host
	req.TLS, req.Source = r.TLS != nil, peerIdentity(r)
	switch p.opts.Role {
	case Sidecar:
		host := r.Host
		if r.URL.Host != "" {
			host = r.URL.Host
		}
		port := uint32(80)
		if _, ps, err := net.SplitHostPort(host); err == nil {
			n, _ := strconv.ParseUint(ps, 10, 16)
			port = uint32(n)
		}
		req.Port, req.Host = port, host
		req.Headers[":authority"] = host
	case Gateway:
		req.Port = p.opts.ListenerPort
	}
	return simulate.Simulate(p.cfg.current(), req)
}

// ServeHTTP forwards one request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	res := p.Decide(r)
	switch {
	case res.Denied && strings.Contains(strings.ToLower(res.DenyReason), "rbac"):
		http.Error(w, "RBAC: access denied ("+res.DenyReason+")", http.StatusForbidden)
		return
	case res.Denied:
		http.Error(w, "no route: "+res.DenyReason, http.StatusNotFound)
		return
	case res.DirectResponse != 0:
		w.WriteHeader(int(res.DirectResponse))
		return
	}
	cl := p.pickCluster(res.Clusters)
	if cl == nil || cl.Missing {
		http.Error(w, "no cluster", http.StatusServiceUnavailable)
		return
	}
	retryable := retryOn(res.Retry)
	attempts := 1
	if res.Retry != "" {
		attempts = 2 // num_retries 1
	}
	tried, triedPrio := map[string]bool{}, map[int]bool{}
	for attempt := range attempts {
		prio, ep := p.choose(cl, attempt > 0 && res.RetryOtherPriority, tried, triedPrio)
		if ep == "" {
			break
		}
		tried[ep], triedPrio[prio] = true, true
		last := attempt == attempts-1
		status, err := p.forward(w, r, ep, res.Path, func(status int, err error) bool { return !last && retryable(status, err) })
		p.observe(cl, ep, err != nil || status == 502 || status == 503 || status == 504)
		if last || !retryable(status, err) {
			return
		}
	}
	http.Error(w, "no healthy upstream", http.StatusServiceUnavailable)
}

// retryOn turns a retry_on list into a predicate on an upstream's answer.
func retryOn(on string) func(status int, err error) bool {
	set := map[string]bool{}
	for _, s := range strings.Split(on, ",") {
		set[strings.TrimSpace(s)] = true
	}
	return func(status int, err error) bool {
		switch {
		case err != nil:
			return set["connect-failure"] || set["reset"] || set["refused-stream"]
		case status >= 500 && set["5xx"]:
			return true
		case (status == 502 || status == 503 || status == 504) && set["gateway-error"]:
			return true
		}
		return false
	}
}

// choose picks the priority and endpoint of one attempt, as Envoy's load balancer would: the
// first priority with an endpoint that is not ejected, a locality by weight, an endpoint in turn.
// A retry skips the endpoints tried (previous_hosts), or with otherPriority the priorities tried
// (previous_priorities). When every endpoint is ejected, ejections are ignored (panic mode).
func (p *Proxy) choose(cl *simulate.Cluster, otherPriority bool, tried map[string]bool, triedPrio map[int]bool) (int, string) {
	for _, ignoreEjected := range []bool{false, true} {
		for i, prio := range cl.Priorities {
			if otherPriority && triedPrio[i] {
				continue
			}
			skip := func(ep string) bool { return tried[ep] || (!ignoreEjected && p.ejected(cl.Name, ep)) }
			if ep := p.pickEndpoint(cl.Name, prio, skip); ep != "" {
				return i, ep
			}
		}
	}
	return 0, ""
}

func (p *Proxy) ejected(cluster, ep string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return time.Now().Before(p.ejectedUntil[cluster+"|"+ep])
}

// observe feeds outlier detection: consecutive gateway failures eject an endpoint.
func (p *Proxy) observe(cl *simulate.Cluster, ep string, gatewayFailure bool) {
	if cl.EjectAfterGatewayFailures == 0 {
		return
	}
	k := cl.Name + "|" + ep
	p.mu.Lock()
	defer p.mu.Unlock()
	if !gatewayFailure {
		delete(p.failures, k)
		return
	}
	p.failures[k]++
	if p.failures[k] >= int(cl.EjectAfterGatewayFailures) {
		p.ejectedUntil[k] = time.Now().Add(cl.EjectFor)
		p.failures[k] = 0
	}
}

// errRetry marks a response held back so that the request is retried.
var errRetry = errors.New("retrying on the next priority")

// forward sends r to ep. An answer that holdBack accepts (a failure the route retries) is not
// written to w but returned, so the caller can retry; every other answer is written.
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, ep, path string, holdBack func(status int, err error) bool) (int, error) {
	status := 0
	var failed error
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host, pr.Out.URL.Path, pr.Out.URL.RawPath = "http", ep, path, ""
			pr.Out.Host = r.Host
			if pr.Out.Host == "" {
				pr.Out.Host = r.URL.Host
			}
			pr.Out.RequestURI = ""
		},
		Transport: p.plain,
		ModifyResponse: func(resp *http.Response) error {
			status = resp.StatusCode
			if holdBack(resp.StatusCode, nil) {
				return errRetry
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			failed = err
			if errors.Is(err, errRetry) {
				return
			}
			if !holdBack(0, err) {
				http.Error(w, "upstream connect error: "+err.Error(), http.StatusServiceUnavailable)
			}
		},
	}
	if r.ProtoMajor == 2 {
		// gRPC: proxyless gRPC servers require mTLS, as Envoy's upstream TLS gives them. (The
		// stand-in sends HTTP/1.1 in plaintext: sandbox apps take it without a sidecar.)
		rp.Transport = p.h2tls
		pr := rp.Rewrite
		rp.Rewrite = func(x *httputil.ProxyRequest) { pr(x); x.Out.URL.Scheme = "https" }
	}
	rp.ServeHTTP(w, r)
	if failed != nil && !errors.Is(failed, errRetry) {
		return status, failed
	}
	return status, nil
}

// pickCluster chooses among weighted clusters (smooth weighted round robin).
func (p *Proxy) pickCluster(cs []simulate.Cluster) *simulate.Cluster {
	if len(cs) == 0 {
		return nil
	}
	if len(cs) == 1 {
		return &cs[0]
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	total, best := 0, -1
	for i, c := range cs {
		k := "cluster/" + c.Name
		p.localityW[k] += int(c.Weight)
		total += int(c.Weight)
		if best < 0 || p.localityW[k] > p.localityW["cluster/"+cs[best].Name] {
			best = i
		}
	}
	p.localityW["cluster/"+cs[best].Name] -= total
	return &cs[best]
}

// pickEndpoint chooses a locality by weight (smooth weighted round robin, as Envoy's locality
// weighted balancing does) and an endpoint in it by round robin, skipping those in skip.
func (p *Proxy) pickEndpoint(cluster string, prio simulate.Priority, skip func(string) bool) string {
	var locs []simulate.Locality
	for _, l := range prio.Localities {
		var eps []string
		for _, e := range l.Endpoints {
			if !skip(e) {
				eps = append(eps, e)
			}
		}
		if len(eps) > 0 {
			l.Endpoints = eps
			locs = append(locs, l)
		}
	}
	if len(locs) == 0 {
		return ""
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	key := func(l simulate.Locality) string { return fmt.Sprintf("%s/%d/%s", cluster, prio.Priority, l.Name) }
	total, best := 0, 0
	for i, l := range locs {
		w := max(int(l.Weight), 1)
		p.localityW[key(l)] += w
		total += w
		if p.localityW[key(l)] > p.localityW[key(locs[best])] {
			best = i
		}
	}
	p.localityW[key(locs[best])] -= total
	l := locs[best]
	n := p.endpointN[key(l)]
	p.endpointN[key(l)] = n + 1
	return l.Endpoints[n%len(l.Endpoints)]
}
