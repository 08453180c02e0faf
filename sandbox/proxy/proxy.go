package proxy

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/crossgate-io/crossgate/sandbox/network"
	"github.com/crossgate-io/crossgate/xds/simulate"
)

// Role is what the stand-in stands in for.
type Role int

const (
	// Sidecar is a caller's sidecar, outbound: it takes the application's requests as an HTTP
	// proxy does (absolute URI or Host header), resolves the host as the application's DNS would,
	// and sends each where the sidecar's configuration says for that destination.
	Sidecar Role = iota
	// Gateway is a member's gateway: it takes requests on the LoadBalancer port and sends them
	// where the gateway's listener on ListenerPort says.
	Gateway
	// Inbound is a pod's sidecar, inbound: it takes the connections arriving at the pod's
	// address (mTLS from mesh callers, plaintext from others) and hands them to the application
	// as the sidecar's inbound listener says.
	Inbound
)

// Network is the sandbox's network as the stand-in needs it.
type Network interface {
	// Resolve is the application's DNS: a Service's name (name, name.ns, name.ns.svc, ...) to
	// its ClusterIP; an IP is itself.
	Resolve(ctx context.Context, host string) (string, error)
	// Route is kube-proxy and the pod network: where a connection to ip:port goes (a ClusterIP
	// to one of its endpoints, a pod IP to the loopback address it stands for).
	Route(ctx context.Context, addr string) (string, error)
}

// Options configure a stand-in proxy.
type Options struct {
	Role Role
	XDS  XDSOptions
	// ListenerPort is the gateway listener's port in the xDS configuration (80); the stand-in
	// itself listens wherever it is served.
	ListenerPort uint32
	// PodIP is the pod's address (Sidecar, Inbound); Namespace the pod's, for short names.
	PodIP, Namespace string
	// AppAddress is where the application listens (Inbound): the sidecar's inbound clusters
	// send to 127.0.0.1:<port>, which is the application in the pod (its one port).
	AppAddress string
	Network    Network
	Log        *slog.Logger
}

// Proxy is a running stand-in.
type Proxy struct {
	opts Options
	cfg  *config
	cert tls.Certificate
	root *x509.CertPool
	// transports by upstream protocol, TLS and ALPN.
	mu         sync.Mutex
	transports map[string]*http.Transport
	// hellos are the ALPN protocols offered in the ClientHello of inbound TLS connections the
	// proxy terminates, by connection, until the HTTP server takes the connection (ConnContext).
	hellos    sync.Map
	localityW map[string]float64 // smooth weighted round robin state
	endpointN map[string]int     // round robin over a locality's endpoints
	// Outlier detection, by cluster|endpoint.
	failures     map[string]*failureCount
	ejectedUntil map[string]time.Time
}

type failureCount struct{ fivexx, gateway uint32 }

// Start subscribes to the proxy's configuration. Ready is closed once it holds listeners.
func Start(ctx context.Context, o Options) (*Proxy, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	o.XDS.Log = o.Log
	if o.ListenerPort == 0 {
		o.ListenerPort = 80
	}
	if o.Network == nil {
		o.Network = loopbackNetwork{}
	}
	pair, err := tls.X509KeyPair(o.XDS.Certificate.CertPEM, o.XDS.Certificate.KeyPEM)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(o.XDS.Certificate.RootPEM)
	p := &Proxy{
		opts: o, cfg: newConfig(), cert: pair, root: pool, transports: map[string]*http.Transport{},
		localityW: map[string]float64{}, endpointN: map[string]int{}, failures: map[string]*failureCount{}, ejectedUntil: map[string]time.Time{},
	}
	if err := p.cfg.subscribe(ctx, o.XDS); err != nil {
		return nil, err
	}
	return p, nil
}

// loopbackNetwork knows no Services: IPs are themselves, pod IPs their loopback addresses.
type loopbackNetwork struct{}

func (loopbackNetwork) Resolve(_ context.Context, host string) (string, error) {
	if net.ParseIP(host) != nil {
		return host, nil
	}
	return "", fmt.Errorf("cannot resolve %s", host)
}

func (loopbackNetwork) Route(_ context.Context, addr string) (string, error) {
	return network.LoopbackAddr(addr), nil
}

// Ready is closed once the proxy holds its configuration.
func (p *Proxy) Ready() <-chan struct{} { return p.cfg.ready }

// Updates counts the configuration updates received.
func (p *Proxy) Updates() int {
	p.cfg.mu.RLock()
	defer p.cfg.mu.RUnlock()
	return p.cfg.updates
}

// Server returns an HTTP server for the proxy that speaks HTTP/1.1 and HTTP/2 (over TLS by ALPN,
// or h2c in plaintext).
func (p *Proxy) Server() *http.Server {
	var ps http.Protocols
	ps.SetHTTP1(true)
	ps.SetHTTP2(true)
	ps.SetUnencryptedHTTP2(true)
	return &http.Server{
		Handler: p, Protocols: &ps, ReadHeaderTimeout: 10 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if alpn, ok := p.hellos.LoadAndDelete(c); ok {
				ctx = context.WithValue(ctx, offeredKey{}, alpn)
			}
			if port := listenerPort(c); port != 0 {
				ctx = context.WithValue(ctx, listenerPortKey{}, port)
			}
			return ctx
		},
	}
}

// offeredKey keys the ALPN protocols a TLS client offered in a connection's context;
// listenerPortKey the listener port in the configuration it arrived at.
type (
	offeredKey      struct{}
	listenerPortKey struct{}
)

// Decide is where the request goes, per the proxy's configuration, as xds/simulate says Envoy
// would decide.
func (p *Proxy) Decide(r *http.Request) *simulate.Result {
	req := simulate.Request{Host: r.Host, Path: r.URL.RequestURI(), Method: r.Method, Headers: map[string]string{}, Protocol: simulate.HTTP1}
	if r.ProtoMajor == 2 {
		req.Protocol = simulate.HTTP2
	}
	for k, v := range r.Header {
		req.Headers[strings.ToLower(k)] = strings.Join(v, ",")
	}
	if r.TLS != nil {
		req.TLS, req.SNI, req.Source = true, r.TLS.ServerName, peerIdentity(r)
		if offered, ok := r.Context().Value(offeredKey{}).([]string); ok {
			req.ALPN = offered // what the ClientHello offered, which picked the filter chain
		} else if r.TLS.NegotiatedProtocol != "" {
			req.ALPN = []string{r.TLS.NegotiatedProtocol}
		}
	}
	switch p.opts.Role {
	case Sidecar:
		host := r.Host
		if r.URL.Host != "" {
			host = r.URL.Host
		}
		port := uint32(80)
		name := host
		if h, ps, err := net.SplitHostPort(host); err == nil {
			n, _ := strconv.ParseUint(ps, 10, 16)
			name, port = h, uint32(n)
		}
		ip, err := p.opts.Network.Resolve(r.Context(), name)
		if err != nil {
			return &simulate.Result{Denied: true, Status: http.StatusBadGateway, DenyReason: "the application cannot resolve " + name + ": " + err.Error()}
		}
		req.PodIP, req.DestinationIP, req.Port, req.Host = p.opts.PodIP, ip, port, host
	case Gateway:
		req.Port = p.opts.ListenerPort
		if port, ok := r.Context().Value(listenerPortKey{}).(uint32); ok {
			req.Port = port
		}
	case Inbound:
		// The port the connection arrived at: the pod's.
		port := uint32(0)
		if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			if _, ps, err := net.SplitHostPort(a.String()); err == nil {
				n, _ := strconv.ParseUint(ps, 10, 16)
				port = uint32(n)
			}
		}
		req.Inbound, req.PodIP, req.DestinationIP, req.Port = true, p.opts.PodIP, p.opts.PodIP, port
	}
	req.Headers[":authority"] = req.Host
	return p.cfg.proxy().Simulate(req)
}

// ServeHTTP forwards one request as Envoy would: to a cluster by weight, a priority by the
// priorities' load, a locality by its effective weight, an endpoint in turn, with the protocol,
// TLS and ALPN the cluster's configuration selects; it retries as the route's policy says and
// ejects endpoints as the cluster's outlier detection enforces.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	res := p.Decide(r)
	switch {
	case res.Denied && res.Status != 0:
		http.Error(w, res.DenyReason, int(res.Status))
		return
	case res.Denied:
		// Envoy closes or resets the connection: no HTTP answer.
		p.opts.Log.Debug("connection closed", "reason", res.DenyReason)
		hijackClose(w)
		return
	case res.DirectResponse != 0:
		applyHeaders(w.Header(), res.ResponseHeaderOps)
		if res.Location != "" {
			w.Header().Set("Location", res.Location)
		}
		w.WriteHeader(int(res.DirectResponse))
		return
	}
	cl := p.pickCluster(res.Clusters)
	if cl == nil || cl.Missing {
		http.Error(w, "no cluster", http.StatusServiceUnavailable)
		return
	}
	if cl.OriginalDestination != "" {
		_, _ = p.forward(w, r, cl, cl.OriginalDestination, res, func(int, error) bool { return false })
		return
	}
	p.mirror(r, res)
	if res.Timeout > 0 {
		// The route's timeout covers the request and its retries; when it fires before the
		// answer's headers Envoy answers 504 "upstream request timeout", after them it resets
		// the stream (router.cc onUpstreamTimeout).
		ctx, cancel := context.WithTimeout(r.Context(), res.Timeout)
		defer cancel()
		r = r.WithContext(ctx)
	}
	retryable := retryOn(res.Retry)
	attempts := 1
	if res.Retry != "" {
		attempts += int(res.Retries)
	}
	tried, triedPrio := map[string]bool{}, map[int]bool{}
	for attempt := range attempts {
		prio, ep := p.choose(cl, attempt > 0 && res.RetryOtherPriority, attempt > 0 && res.RetryOtherHost, tried, triedPrio)
		if ep == "" {
			break
		}
		tried[ep], triedPrio[prio] = true, true
		last := attempt == attempts-1
		status, err := p.forward(w, r, cl, ep, res, func(status int, err error) bool { return !last && retryable(status, err) })
		p.observe(cl, ep, status, err)
		if last || errors.Is(err, errTimeout) || !retryable(status, err) {
			return
		}
	}
	http.Error(w, "no healthy upstream", http.StatusServiceUnavailable)
}

// hijackClose closes the client's connection without an answer, as Envoy does when no filter
// chain matches or a network filter refuses.
func hijackClose(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if c, _, err := hj.Hijack(); err == nil {
			_ = c.Close()
			return
		}
	}
	panic(http.ErrAbortHandler) // HTTP/2: reset the stream
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

// choose picks the priority and endpoint of one attempt: a priority by the priorities' load
// (simulate's model of Envoy's, ejected endpoints unhealthy), and in it a locality by its
// effective weight and an endpoint in turn. A retry skips the endpoints tried (previous_hosts)
// or the priorities tried (previous_priorities).
func (p *Proxy) choose(cl *simulate.Cluster, otherPriority, otherHost bool, tried map[string]bool, triedPrio map[int]bool) (int, string) {
	healthy := func(ep string) bool { return !p.ejected(cl.Name, ep) }
	loads, panicking := cl.PriorityLoad(healthy)
	order := make([]int, 0, len(loads))
	total := 0.0
	for i, l := range loads {
		if otherPriority && triedPrio[i] {
			continue
		}
		total += l
		order = append(order, i)
	}
	if total > 0 {
		// A priority by its load: the first whose cumulative load passes a random draw.
		x, acc := rand.Float64()*total, 0.0
		for j, i := range order {
			acc += loads[i]
			if x < acc {
				order[0], order[j] = order[j], order[0]
				break
			}
		}
	}
	for _, i := range order {
		use := healthy
		if panicking[i] {
			use = nil // panic: every host of the priority
		}
		skip := func(ep string) bool { return (otherHost || otherPriority) && tried[ep] }
		if ep := p.pickEndpoint(cl, i, use, skip); ep != "" {
			return i, ep
		}
	}
	return 0, ""
}

func (p *Proxy) ejected(cluster, ep string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return time.Now().Before(p.ejectedUntil[cluster+"|"+ep])
}

// observe feeds outlier detection as the cluster configures it: consecutive 5xx (connection
// failures count as 503, split_external_local_origin_errors being off) and consecutive gateway
// failures (502, 503, 504), each ejecting only as often as its enforcing_* says, and never more
// than max_ejection_percent of the cluster's hosts.
func (p *Proxy) observe(cl *simulate.Cluster, ep string, status int, err error) {
	o := cl.Outlier
	if o == nil {
		return
	}
	if err != nil {
		status = 503
	}
	k := cl.Name + "|" + ep
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.failures[k]
	if f == nil {
		f = &failureCount{}
		p.failures[k] = f
	}
	if status < 500 {
		*f = failureCount{}
		return
	}
	f.fivexx++
	if status == 502 || status == 503 || status == 504 {
		f.gateway++
	} else {
		f.gateway = 0
	}
	enforce := func(pct uint32) bool { return pct >= 100 || (pct > 0 && rand.Uint32N(100) < pct) }
	eject := (o.Consecutive5xx > 0 && f.fivexx >= o.Consecutive5xx && enforce(o.Enforcing5xx)) ||
		(o.ConsecutiveGatewayFailure > 0 && f.gateway >= o.ConsecutiveGatewayFailure && enforce(o.EnforcingGatewayFailure))
	if !eject {
		return
	}
	hosts, ejected := 0, 0
	now := time.Now()
	for _, pr := range cl.Priorities {
		for _, l := range pr.Localities {
			for _, e := range l.Endpoints {
				hosts++
				if now.Before(p.ejectedUntil[cl.Name+"|"+e]) {
					ejected++
				}
			}
		}
	}
	if hosts > 0 && 100*(ejected+1) > int(o.MaxEjectionPercent)*hosts && ejected > 0 {
		return
	}
	p.ejectedUntil[k] = now.Add(o.BaseEjectionTime)
	*f = failureCount{}
}

// errRetry marks a response held back so that the request is retried; errTimeout an attempt the
// route's timeout cut short.
var (
	errRetry   = errors.New("retrying")
	errTimeout = errors.New("the route's timeout expired")
)

// forward sends r to ep as the cluster says. An answer that holdBack accepts (a failure the
// route retries) is not written to w but returned, so the caller can retry; every other answer is
// written.
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, cl *simulate.Cluster, ep string, res *simulate.Result, holdBack func(status int, err error) bool) (int, error) {
	addr, err := p.dialAddress(r.Context(), ep)
	if err != nil {
		if !holdBack(0, err) {
			http.Error(w, "upstream connect error: "+err.Error(), http.StatusServiceUnavailable)
		}
		return 0, err
	}
	up := cl.Upstream
	if up.Protocol == simulate.TCP || up.Protocol == "ALPN" {
		up.Protocol = simulate.HTTP1
	}
	status := 0
	var failed error
	scheme := "http"
	if up.TLS {
		scheme = "https"
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = scheme, addr
			pr.Out.URL.Path, pr.Out.URL.RawPath, pr.Out.URL.RawQuery = res.Path, "", ""
			if i := strings.IndexByte(res.Path, '?'); i >= 0 {
				pr.Out.URL.Path, pr.Out.URL.RawQuery = res.Path[:i], res.Path[i+1:]
			}
			pr.Out.Host = res.Host
			if pr.Out.Host == "" {
				pr.Out.Host = r.URL.Host
			}
			pr.Out.RequestURI = ""
			applyHeaders(pr.Out.Header, cl.RequestHeaderOps) // the chosen cluster's, then the route's
			applyHeaders(pr.Out.Header, res.RequestHeaderOps)
		},
		Transport: p.transport(cl.Name, up),
		ModifyResponse: func(resp *http.Response) error {
			status = resp.StatusCode
			if holdBack(resp.StatusCode, nil) {
				return errRetry
			}
			applyHeaders(resp.Header, res.ResponseHeaderOps)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			failed = err
			if errors.Is(err, errRetry) {
				return
			}
			if errors.Is(r.Context().Err(), context.DeadlineExceeded) {
				failed = errTimeout
				http.Error(w, "upstream request timeout", http.StatusGatewayTimeout)
				return
			}
			if !holdBack(0, err) {
				http.Error(w, "upstream connect error or disconnect/reset before headers: "+err.Error(), http.StatusServiceUnavailable)
			}
		},
	}
	rp.ServeHTTP(w, r)
	if failed != nil && !errors.Is(failed, errRetry) {
		return status, failed
	}
	return status, nil
}

// dialAddress is where a connection to an endpoint goes in the sandbox: 127.0.0.1:<port> of an
// inbound cluster is the pod's application; anything else goes through the sandbox's network.
func (p *Proxy) dialAddress(ctx context.Context, ep string) (string, error) {
	if host, _, err := net.SplitHostPort(ep); err == nil && host == "127.0.0.1" && p.opts.Role == Inbound {
		return p.opts.AppAddress, nil
	}
	return p.opts.Network.Route(ctx, ep)
}

// transport is a cluster's connection pool for an upstream protocol: HTTP/1.1 or HTTP/2 (h2c
// without TLS), with mTLS offering the ALPN, sending the server name, and accepting the server
// certificates the cluster's configuration gives.
func (p *Proxy) transport(cluster string, up simulate.Upstream) *http.Transport {
	key := fmt.Sprintf("%s|%s|%v|%v|%s", cluster, up.Protocol, up.TLS, up.ALPN, up.SNI)
	p.mu.Lock()
	defer p.mu.Unlock()
	if t := p.transports[key]; t != nil {
		return t
	}
	var protos http.Protocols
	switch {
	case up.Protocol == simulate.HTTP2 && up.TLS:
		protos.SetHTTP2(true)
	case up.Protocol == simulate.HTTP2:
		protos.SetUnencryptedHTTP2(true)
	default:
		protos.SetHTTP1(true)
	}
	t := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		Protocols:           &protos,
		MaxIdleConnsPerHost: 16, IdleConnTimeout: 30 * time.Second,
	}
	if up.TLS {
		t.TLSClientConfig = p.upstreamTLS(up)
	}
	p.transports[key] = t
	return t
}

// upstreamTLS originates mTLS with the proxy's certificate, offering the upstream's ALPN and
// sending its server name; the server's chain must verify against the set's root, and its
// SPIFFE identity must be one the cluster accepts (simulate.Upstream.AcceptsServer).
func (p *Proxy) upstreamTLS(up simulate.Upstream) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{p.cert}, NextProtos: up.ALPN, ServerName: up.SNI,
		InsecureSkipVerify: true, // replaced by the checks below: no host name to match
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the upstream presented no certificate")
			}
			opts := x509.VerifyOptions{Roots: p.root, Intermediates: x509.NewCertPool()}
			for _, c := range cs.PeerCertificates[1:] {
				opts.Intermediates.AddCert(c)
			}
			if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
				return err
			}
			for _, u := range cs.PeerCertificates[0].URIs {
				if u.Scheme == "spiffe" && up.AcceptsServer(u.String()) {
					return nil
				}
			}
			return fmt.Errorf("the upstream's identity %v is not one the cluster accepts", cs.PeerCertificates[0].URIs)
		},
	}
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
	total, best := 0.0, -1
	for i, c := range cs {
		k := "cluster/" + c.Name
		p.localityW[k] += float64(c.Weight)
		total += float64(c.Weight)
		if best < 0 || p.localityW[k] > p.localityW["cluster/"+cs[best].Name] {
			best = i
		}
	}
	p.localityW["cluster/"+cs[best].Name] -= total
	return &cs[best]
}

// pickEndpoint chooses a locality of priority prio by its effective weight (simulate's model:
// locality weights only with locality weighted balancing, otherwise every host weighs the same),
// smooth weighted round robin, and an endpoint in it in turn, skipping those in skip. healthy
// nil: panic mode, every host.
func (p *Proxy) pickEndpoint(cl *simulate.Cluster, prio int, healthy func(string) bool, skip func(string) bool) string {
	pr := cl.Priorities[prio]
	weights := cl.LocalityWeights(prio, healthy)
	type cand struct {
		name string
		w    float64
		eps  []string
	}
	var cands []cand
	for i, l := range pr.Localities {
		var eps []string
		for _, e := range l.Endpoints {
			if !skip(e) && (healthy == nil || healthy(e)) {
				eps = append(eps, e)
			}
		}
		if len(eps) > 0 && weights[i] > 0 {
			cands = append(cands, cand{l.Name, weights[i], eps})
		}
	}
	if len(cands) == 0 {
		return ""
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	key := func(c cand) string { return fmt.Sprintf("%s/%d/%s", cl.Name, pr.Priority, c.name) }
	total, best := 0.0, 0
	for i, c := range cands {
		p.localityW[key(c)] += c.w
		total += c.w
		if p.localityW[key(c)] > p.localityW[key(cands[best])] {
			best = i
		}
	}
	p.localityW[key(cands[best])] -= total
	c := cands[best]
	n := p.endpointN[key(c)]
	p.endpointN[key(c)] = n + 1
	return c.eps[n%len(c.eps)]
}

// acceptTLS is the handling of a TLS connection arriving at a gateway's port or at a sidecar's
// pod. The model picks the filter chain by the ClientHello's server name and ALPN, as
// tls_inspector and Envoy's filter chain match do. A chain that terminates TLS gets the
// handshake, presenting the chain's certificates (a sidecar's: its own, in base; a gateway's
// HTTPS listener's: those it names, from SDS) and agreeing on the protocol Envoy's server would
// pick; the connection returned is then served as HTTP. From any other chain the connection
// goes on, bytes untouched, where the chain's tcp_proxy sends it (a TLS route's backend, the
// application's own TLS), or is closed, as Envoy does when no filter chain matches or the
// cluster is missing.
func (p *Proxy) acceptTLS(c net.Conn, br *bufio.Reader, base *tls.Config) net.Conn {
	sni, alpn, err := peekHello(c, br)
	if err != nil {
		p.opts.Log.Debug("connection closed", "reason", err)
		_ = c.Close()
		return nil
	}
	req := simulate.Request{TLS: true, SNI: sni, ALPN: alpn, Protocol: simulate.TCP, Port: cmp.Or(listenerPort(c), p.opts.ListenerPort)}
	if p.opts.Role == Inbound {
		req.Inbound, req.PodIP, req.DestinationIP, req.Port = true, p.opts.PodIP, p.opts.PodIP, localPort(c)
	}
	hello := req
	hello.Hello = true
	res := p.cfg.proxy().Simulate(hello)
	if !res.TerminatesTLS {
		defer c.Close()
		if res.Denied {
			p.opts.Log.Debug("connection closed", "sni", sni, "reason", res.DenyReason)
			return nil
		}
		p.passThrough(c, br, req)
		return nil
	}
	cfg := base.Clone()
	if p.opts.Role == Gateway {
		cfg = &tls.Config{MinVersion: tls.VersionTLS12} // an HTTPS listener asks for no client certificate
		for _, name := range res.Certificates {
			cert, err := p.cfg.certificate(name)
			if err != nil {
				p.opts.Log.Debug("connection closed", "sni", sni, "reason", err)
				_ = c.Close()
				return nil
			}
			cfg.Certificates = append(cfg.Certificates, cert)
		}
	}
	cfg.NextProtos = nil // Go's server would refuse a client that offers none of its protocols
	if res.ALPN != "" {
		cfg.NextProtos = []string{res.ALPN}
	}
	tc := tls.Server(c, cfg)
	p.hellos.Store(tc, alpn)
	return tc
}

// peekHello reads the ClientHello at the head of br, waiting for it at most 10 s.
func peekHello(c net.Conn, br *bufio.Reader) (sni string, alpn []string, err error) {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer func() { _ = c.SetReadDeadline(time.Time{}) }()
	return PeekClientHello(br)
}

// localPort is the port a connection arrived at.
func localPort(c net.Conn) uint32 {
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
		return uint32(a.Port)
	}
	return 0
}

// passThrough sends a connection whose TLS the proxy does not terminate, bytes untouched, to an
// endpoint of the cluster the model gives it (tcp_proxy); it leaves the connection closed when
// the model refuses it or gives no such cluster. The caller closes c.
func (p *Proxy) passThrough(c net.Conn, br *bufio.Reader, req simulate.Request) {
	sni := req.SNI
	res := p.cfg.proxy().Simulate(req)
	if res.Denied || res.DirectResponse != 0 {
		p.opts.Log.Debug("connection closed", "sni", sni, "reason", res.DenyReason)
		return
	}
	cl := p.pickCluster(res.Clusters)
	if cl == nil || cl.Missing || cl.Upstream.TLS || cl.Upstream.Protocol != simulate.TCP {
		p.opts.Log.Debug("connection closed: no cluster passes it through", "sni", sni)
		return
	}
	_, ep := p.choose(cl, false, false, nil, nil)
	if ep == "" {
		p.opts.Log.Debug("connection closed: no healthy endpoint", "sni", sni, "cluster", cl.Name)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addr, err := p.dialAddress(ctx, ep)
	if err != nil {
		return
	}
	up, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		p.opts.Log.Debug("upstream connect error", "sni", sni, "endpoint", ep, "error", err)
		return
	}
	defer up.Close()
	go func() {
		_, _ = io.Copy(up, br) // the ClientHello first: it was only peeked
		closeWrite(up)
	}()
	_, _ = io.Copy(c, up) // until the upstream closes; then both connections are closed
}

// closeWrite half-closes a TCP connection, as tcp_proxy passes a half-close on.
func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

// applyHeaders makes a route's header changes, as the model says Envoy makes them: removals
// first, then each addition, appended to the values there are or replacing them.
func applyHeaders(h http.Header, ops simulate.HeaderOps) {
	for _, n := range ops.Remove {
		h.Del(n)
	}
	for _, a := range ops.Add {
		_, present := h[http.CanonicalHeaderKey(a.Name)]
		switch {
		case present && a.IfAbsent, !present && a.IfPresent:
		case a.Append:
			h.Add(a.Name, a.Value)
		default:
			h.Set(a.Name, a.Value)
		}
	}
}

// mirror sends, for each of the route's mirrors that samples this request, a copy of it to an
// endpoint of the mirror's cluster, and drops the answer (fire and forget, as Envoy's shadow
// writer). The body, if any, is read first and given back to the request.
func (p *Proxy) mirror(r *http.Request, res *simulate.Result) {
	if len(res.Mirrors) == 0 {
		return
	}
	var body []byte
	if r.Body != nil && r.Body != http.NoBody {
		body, _ = io.ReadAll(io.LimitReader(r.Body, 1<<20))
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	for _, m := range res.Mirrors {
		if m.Cluster.Missing || rand.Uint32N(1_000_000) >= m.PerMillion {
			continue
		}
		cl := m.Cluster
		_, ep := p.choose(&cl, false, false, nil, nil)
		if ep == "" {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		addr, err := p.dialAddress(ctx, ep)
		if err != nil {
			cancel()
			continue
		}
		scheme := "http"
		if cl.Upstream.TLS {
			scheme = "https"
		}
		u := *r.URL
		u.Scheme, u.Host, u.Path, u.RawPath, u.RawQuery = scheme, addr, res.Path, "", ""
		if i := strings.IndexByte(res.Path, '?'); i >= 0 {
			u.Path, u.RawQuery = res.Path[:i], res.Path[i+1:]
		}
		out, err := http.NewRequestWithContext(ctx, r.Method, u.String(), bytes.NewReader(body))
		if err != nil {
			cancel()
			continue
		}
		out.Header = r.Header.Clone()
		applyHeaders(out.Header, res.RequestHeaderOps)
		out.Host = m.Host
		up := cl.Upstream
		if up.Protocol == simulate.TCP || up.Protocol == "ALPN" {
			up.Protocol = simulate.HTTP1
		}
		t := p.transport(cl.Name, up)
		go func() {
			defer cancel()
			if resp, err := t.RoundTrip(out); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			}
		}()
	}
}

// ListenerPorts are the ports of the listeners the proxy's configuration holds (Envoy binds
// each), sorted.
func (p *Proxy) ListenerPorts() []uint32 {
	p.cfg.mu.RLock()
	defer p.cfg.mu.RUnlock()
	var out []uint32
	if p.cfg.res == nil {
		return nil
	}
	for _, l := range p.cfg.res.Listeners {
		if port := l.GetAddress().GetSocketAddress().GetPortValue(); port != 0 && !slices.Contains(out, port) {
			out = append(out, port)
		}
	}
	slices.Sort(out)
	return out
}
