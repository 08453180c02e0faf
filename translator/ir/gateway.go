package ir

// Gateway is one Gateway object of crossgate's class: the proxy of a cluster's ingress.
type Gateway struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Identity the gateway proxy runs as.
	Identity Identity `json:"identity"`
	// Listeners, one per distinct port, sorted by port.
	Listeners []Listener `json:"listeners,omitempty"`
	// Certificates are those the HTTPS listeners terminate TLS with, sorted by name.
	Certificates []Certificate `json:"certificates,omitempty"`
}

// Certificate is a certificate chain and its private key, from a Secret of type
// kubernetes.io/tls. The PEM is not part of the IR's JSON: the IR is printed (goldens, the
// debug endpoint) and a private key must not be.
type Certificate struct {
	// Name is deterministic: <namespace>/<name> of the Secret.
	Name    string `json:"name"`
	CertPEM []byte `json:"-"`
	KeyPEM  []byte `json:"-"`
}

// Terminate is an HTTPS listener: TLS whose server name the listener's hostname takes is
// terminated with its certificates, and the HTTP inside routed by its virtual hosts.
type Terminate struct {
	// Name is deterministic: https/<port>/<listener name>.
	Name string `json:"name"`
	// Hostname is the server name taken (exact, or "*.suffix"); "" takes any.
	Hostname string `json:"hostname,omitempty"`
	// Certificates name the Gateway's Certificates the listener presents.
	Certificates []string `json:"certificates"`
	// VirtualHosts are sorted by their first hostname; "*" comes last.
	VirtualHosts []VirtualHost `json:"virtualHosts,omitempty"`
}

// Listener is one port of the gateway with the virtual hosts routed on it.
type Listener struct {
	// Name is deterministic: the port, "http-<port>".
	Name string `json:"name"`
	Port uint32 `json:"port"`
	// Protocol is HTTP when the port has an HTTP listener (plaintext HTTP is served, and TLS
	// passed through by its server name), TLS when it has TLS or HTTPS listeners only.
	Protocol Protocol `json:"protocol"`
	// VirtualHosts are sorted by their first hostname; "*" comes last.
	VirtualHosts []VirtualHost `json:"virtualHosts,omitempty"`
	// Passthrough are the TLS routes of the port (TLS listeners in Passthrough mode): a
	// connection whose TLS server name matches a route's hostnames goes, still encrypted, to the
	// route's backends. Sorted by name.
	Passthrough []TLSRoute `json:"passthrough,omitempty"`
	// Terminate are the HTTPS listeners of the port, sorted by name.
	Terminate []Terminate `json:"terminate,omitempty"`
}

// TLSRoute is one TLSRoute attached to a TLS listener in Passthrough mode.
type TLSRoute struct {
	// Name is deterministic: tlsroute/<ns>/<name>.
	Name string `json:"name"`
	// Hostnames are the server names the route takes (exact, or "*.suffix"), sorted; no two
	// routes of a port share one (the older route keeps it).
	Hostnames []string `json:"hostnames"`
	// Backends share the connections by weight; an invalid backend's share is refused.
	Backends []Backend `json:"backends"`
}

// VirtualHost is a set of hostnames sharing routes.
type VirtualHost struct {
	// Name is deterministic: the hostname.
	Name      string   `json:"name"`
	Hostnames []string `json:"hostnames"`
	// Routes in match order (Gateway API precedence); none for a listener's hostname that no
	// route of that listener names (its requests get a 404: listener isolation).
	Routes []Route `json:"routes,omitempty"`
}

// PathMatchType is how a route matches the path.
type PathMatchType string

const (
	PathExact  PathMatchType = "Exact"
	PathPrefix PathMatchType = "PathPrefix"
	PathRegex  PathMatchType = "RegularExpression"
)

// Route is one match of one HTTPRoute rule.
type Route struct {
	// Name is deterministic: httproute/<ns>/<name>/rule/<i>/match/<j>.
	Name    string        `json:"name"`
	Path    PathMatch     `json:"path"`
	Method  string        `json:"method,omitempty"`
	Headers []HeaderMatch `json:"headers,omitempty"`
	// QueryParams must all match, each the first value of its parameter in the request's query
	// string (names are case-sensitive), sorted by name.
	QueryParams []QueryParamMatch `json:"queryParams,omitempty"`
	// TimeoutMillis, when not 0, is how long the gateway waits for the backend's whole answer
	// (HTTPRoute timeouts) before it answers 504 itself; 0 waits without limit.
	TimeoutMillis int64 `json:"timeoutMillis,omitempty"`
	// Rewrite, when set, rewrites the path before forwarding.
	Rewrite *PathRewrite `json:"rewrite,omitempty"`
	// HostRewrite, when set, replaces the Host (URLRewrite's hostname).
	HostRewrite string `json:"hostRewrite,omitempty"`
	// RequestHeaders change the request before it is forwarded (RequestHeaderModifier), and
	// ResponseHeaders the response before it is returned (ResponseHeaderModifier).
	RequestHeaders  *HeaderModifier `json:"requestHeaders,omitempty"`
	ResponseHeaders *HeaderModifier `json:"responseHeaders,omitempty"`
	// Backends share the requests by weight. A backend that does not resolve keeps its weight
	// and answers 500, as Gateway API requires.
	Backends []Backend `json:"backends,omitempty"`
	// DirectResponse, when non-zero, answers with this status instead of forwarding.
	DirectResponse uint32 `json:"directResponse,omitempty"`
	// Redirect, when set, answers with a redirect instead of forwarding (RequestRedirect).
	Redirect *Redirect `json:"redirect,omitempty"`
	// Mirrors get a copy of a share of the requests, whose answers are dropped (RequestMirror).
	Mirrors []Mirror `json:"mirrors,omitempty"`
}

// Redirect is a RequestRedirect filter: what the Location keeps of the request, and what it
// replaces. Port 0 is no port given: the listener derives one (Gateway API: the scheme's
// well-known port when a scheme is given, else the listener's).
type Redirect struct {
	Scheme   string       `json:"scheme,omitempty"`
	Hostname string       `json:"hostname,omitempty"`
	Port     uint32       `json:"port,omitempty"`
	Path     *PathRewrite `json:"path,omitempty"`
	// StatusCode is 301, 302 (the default), 303, 307 or 308.
	StatusCode uint32 `json:"statusCode"`
}

// Mirror is a RequestMirror filter: the backend that gets copies, and which share of the
// requests, in millionths.
type Mirror struct {
	Backend Backend `json:"backend"`
	// PerMillion of the requests are copied (1,000,000: all).
	PerMillion uint32 `json:"perMillion"`
}

// HeaderModifier changes headers: Remove first, then Set (replacing any value) and Add
// (appending to the values there are), as Gateway API's HTTPHeaderFilter says. Names are lower
// case.
type HeaderModifier struct {
	Set    []Header `json:"set,omitempty"`
	Add    []Header `json:"add,omitempty"`
	Remove []string `json:"remove,omitempty"`
}

// Header is a header's name and value.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// PathMatch is the path condition of a route.
type PathMatch struct {
	Type  PathMatchType `json:"type"`
	Value string        `json:"value"`
}

// PathRewrite replaces the matched prefix, or the whole path.
type PathRewrite struct {
	ReplacePrefixMatch *string `json:"replacePrefixMatch,omitempty"`
	ReplaceFullPath    *string `json:"replaceFullPath,omitempty"`
}

// Backend is one weighted destination of a route.
type Backend struct {
	// Cluster names the upstream: ServiceKey(ns, name, port); empty when Invalid.
	Cluster string `json:"cluster,omitempty"`
	Weight  uint32 `json:"weight"`
	// Invalid backends did not resolve; their share of requests gets a 500.
	Invalid bool `json:"invalid,omitempty"`
	// Protocol of the Service port (HTTP or HTTP2; any for a TLS route's backend).
	Protocol Protocol `json:"protocol,omitempty"`
	// Endpoints of the Service port (local pods), sorted.
	Endpoints []Endpoint `json:"endpoints,omitempty"`
	// Plaintext is set for a Service outside the mesh (its namespace was not added): its pods
	// have no proxy to terminate mTLS, so an HTTP route's gateway speaks plaintext to them.
	Plaintext bool `json:"plaintext,omitempty"`
	// RequestHeaders change a request sent to this backend (the backendRef's
	// RequestHeaderModifier), before the route's own changes.
	RequestHeaders *HeaderModifier `json:"requestHeaders,omitempty"`
}

// QueryParamMatch is one query parameter condition: the parameter, by its exact name, with a
// value equal to Exact or matching the RE2 expression Regex.
type QueryParamMatch struct {
	Name  string `json:"name"`
	Exact string `json:"exact,omitempty"`
	Regex string `json:"regex,omitempty"`
}
