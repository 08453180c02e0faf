package cache

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/crossgate-io/crossgate/internal/parallel"
	"github.com/crossgate-io/crossgate/xds/resources"
)

// Resolver maps a connecting node to the key of the configuration it may receive. It is where
// identity is enforced: it must derive the key from what the connection proves.
type Resolver func(ctx context.Context, node *corev3.Node) (string, error)

// NodeIDResolver trusts the node ID as the key: for tests and trusted loopback only.
func NodeIDResolver(_ context.Context, node *corev3.Node) (string, error) {
	if node.GetId() == "" {
		return "", errors.New("node has no ID")
	}
	return node.GetId(), nil
}

// Observer is told what the cache does, for metrics. Its methods are called with the cache's
// lock held: they must be quick and must not call the cache.
type Observer interface {
	// Pushed reports a response sent; sinceChange is the time since the Set that caused it, or
	// zero when a request did (a new or reconnecting client).
	Pushed(typeURL string, sinceChange time.Duration)
	// NACKed reports a response a client rejected.
	NACKed(typeURL string)
	// Size reports the bytes of all resources now held, each shared copy counted once.
	Size(bytes int)
}

// entry is one version of one resource: its marshaled form, shared by every key that holds the
// same bytes (intern.go) and every response.
type entry struct {
	version string
	any     *anypb.Any
	key     internKey
	refs    int // key slots holding it (under the cache's lock)
	// delta is the entry as a delta response carries it, made on first use (under the cache's
	// lock) and then shared by every delta response, like any.
	delta *discoveryv3.Resource
}

// Cache implements go-control-plane's cache interface for state-of-the-world streams.
type Cache struct {
	resolve Resolver
	log     *slog.Logger

	mu   sync.Mutex
	keys map[string]*view // what each key serves
	// layers are the shared parts' entries, by part (layer.go).
	layers  map[weak.Pointer[resources.Resources]]*layer
	watches map[string]map[*watch]struct{}      // key -> open watches
	deltas  map[string]map[*deltaWatch]struct{} // key -> open delta watches
	counter uint64

	// NACKs counts rejected responses.
	NACKs atomic.Int64
	// pushes counts responses sent per key and type URL (under mu).
	pushes map[string]int
	// Observer, when set before use, is told of pushes, NACKs and sizes.
	Observer Observer
	// interned holds every entry once, by type and content; internedBytes is their size.
	interned      map[internKey]*entry
	internedBytes int
	// parts remembers the marshaled resources of shared parts while they live.
	parts parts
	// gen counts, per key and type URL, the Sets that changed something of that type.
	gen map[string]map[string]uint64
	// changes holds, per key and type URL, the names each of the latest generations changed.
	changes map[string]map[string][]change
	// nackLogs limits the logging of NACKs, per key and type URL (under mu).
	nackLogs map[string]*nackLog
	// wires holds the encodings of the delta resources the cache shares (wire.go).
	wires wires
}

// PushCount is the number of responses of one type sent for one key.
func (c *Cache) PushCount(key, typeURL string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pushes[key+" "+typeURL]
}

type watch struct {
	key  string
	req  *discoveryv3.DiscoveryRequest
	sub  cachev3.Subscription
	resp chan cachev3.Response
}

// New returns an empty cache.
func New(resolve Resolver, log *slog.Logger) *Cache {
	if log == nil {
		log = slog.Default()
	}
	return &Cache{resolve: resolve, log: log, keys: map[string]*view{}, layers: map[weak.Pointer[resources.Resources]]*layer{}, watches: map[string]map[*watch]struct{}{}, deltas: map[string]map[*deltaWatch]struct{}{}, pushes: map[string]int{}, interned: map[internKey]*entry{}, gen: map[string]map[string]uint64{}, changes: map[string]map[string][]change{}}
}

var typeURLs = []string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.SecretType}

// Set replaces the configuration of key with r. Resources whose bytes did not change keep their
// version; only watches subscribed to a changed (or removed) resource are answered. r's own
// resources are the key's; its shared part (r.Shared, and the parts after it) is a layer held
// once by every key that has the same part (layer.go).
func (c *Cache) Set(key string, r *resources.Resources) error {
	return c.SetAll([]Update{{Key: key, Resources: r}})
}

// Update is the configuration of one key, for SetAll.
type Update struct {
	Key       string
	Resources *resources.Resources
}

// SetAll sets many keys, as Set sets each in turn: a full publish. What they hold is marshaled
// first, on every core: each shared part once, then each key's own resources. A key whose
// resources cannot be marshaled keeps what it had; the error names it, and the others are set.
func (c *Cache) SetAll(updates []Update) error {
	started := time.Now()
	var parts []*resources.Resources
	seen := map[*resources.Resources]bool{}
	for _, u := range updates {
		if u.Resources.Shared == nil {
			continue
		}
		for part := range u.Resources.Shared.Parts() {
			if !seen[part] {
				seen[part] = true
				parts = append(parts, part)
			}
		}
	}
	// Shared: marshaled once for every key that holds it, and remembered while the part lives.
	parallel.Do(len(parts), func(i int) { _, _ = c.parts.get(parts[i]) }) // an error is the key's, below
	type prepared struct {
		own    []marshaled
		shared [][]marshaled
		err    error
	}
	ready := make([]prepared, len(updates))
	parallel.Do(len(updates), func(i int) {
		r := updates[i].Resources
		p := &ready[i]
		if p.own, p.err = marshalPart(r, nil); p.err != nil { // the key's own: marshaled for it alone
			return
		}
		if r.Shared != nil {
			for part := range r.Shared.Parts() {
				ms, err := c.parts.get(part)
				if err != nil {
					p.err = err
					return
				}
				p.shared = append(p.shared, ms)
			}
		}
	})
	var errs []error
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, u := range updates {
		if ready[i].err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", u.Key, ready[i].err))
			continue
		}
		c.set(u.Key, u.Resources, ready[i].own, ready[i].shared, started)
	}
	return errors.Join(errs...)
}

// set replaces key's configuration with r, marshaled as own and shared. Called under c.mu.
func (c *Cache) set(key string, r *resources.Resources, own []marshaled, shared [][]marshaled, started time.Time) {
	prev := c.keys[key]
	if prev == nil {
		prev = &view{} // a new key: it served nothing
	}
	cur := &view{own: newTable()}
	for i := range own {
		m := &own[i]
		if prev := cur.own[m.typ][m.name]; prev != nil {
			c.release(prev) // a name twice in one part: the last wins
		}
		cur.own[m.typ][m.name] = c.acquire(m.typ, m.b, m.sum)
	}
	if r.Shared != nil {
		cur.shared = c.layerFor(r.Shared, shared)
	}
	c.hold(cur.shared, key)
	ch := changes{own: map[string]map[string]bool{}}
	mark := func(typ, name string) {
		if ch.own[typ] == nil {
			ch.own[typ] = map[string]bool{}
		}
		ch.own[typ][name] = true
	}
	// The names of either own table: compared as the key serves them.
	for _, t := range []table{cur.own, prev.own} {
		for typ, byName := range t {
			for name := range byName {
				if prev.get(typ, name) != cur.get(typ, name) {
					mark(typ, name)
				}
			}
		}
	}
	// The shared layer's names: those whose entries differ between the two layers (computed
	// once for all the keys that move alike), unless an own entry decides (compared above).
	if diff := c.layerDiff(prev.shared, cur.shared); len(diff) > 0 {
		ch.shared = diff
	}
	// Release what the key held before, now that the new entries are held (an entry in both
	// is never dropped and made again).
	for _, byName := range prev.own {
		for _, e := range byName {
			c.release(e)
		}
	}
	if prev.shared != cur.shared {
		c.let(prev.shared, key)
	}
	c.keys[key] = cur
	if c.Observer != nil {
		c.Observer.Size(c.internedBytes)
	}
	c.notify(key, cur, &ch, started)
}

// notify answers the watches of key that a change concerns. Work per watch is proportional to
// what changed, not to what the watch subscribes to.
func (c *Cache) notify(key string, cur *view, changed *changes, started time.Time) {
	if c.gen[key] == nil {
		c.gen[key] = map[string]uint64{}
	}
	for _, typ := range typeURLs {
		if changed.any(typ) {
			c.gen[key][typ]++
			c.remember(key, typ, c.gen[key][typ], changed)
		}
	}
	// Make before break (the xDS protocol's "eventual consistency considerations"): a client
	// gets secrets and clusters first, then their endpoints, then the listeners and route
	// configurations that use them, and the removal of clusters last, so that nothing it holds
	// names a cluster it does not have yet (an inline route configuration validates its
	// clusters; a route to a missing cluster answers 503). go-control-plane's streams send
	// responses in the order they are given.
	deltas := sortedWatches(c.deltas[key], func(w *deltaWatch) string { return w.req.GetTypeUrl() })
	var removals []*deltaWatch
	for _, w := range deltas {
		typ := w.req.GetTypeUrl()
		if !changed.any(typ) {
			continue
		}
		to := c.gen[key][typ]
		relevant := relevantChanges(changed, typ, w.sub)
		if len(relevant) == 0 {
			heldBy(w.sub).advanceSynced(to-1, to) // nothing it holds changed
			continue
		}
		if typ == resourcev3.ClusterType {
			kept := relevant[:0:0]
			gone := false
			for _, name := range relevant {
				if cur.get(typ, name) != nil {
					kept = append(kept, name)
				} else {
					gone = true
				}
			}
			if gone {
				if len(kept) == 0 {
					removals = append(removals, w)
					continue
				}
				// The new and changed clusters now; the client stays synced at the previous
				// generation, so its acknowledgement brings the removals (changedSince).
				if c.respondDelta(w, cur, started, kept, to-1, to-1) {
					delete(c.deltas[key], w)
				}
				continue
			}
		}
		if c.respondDelta(w, cur, started, relevant, to-1, to) {
			delete(c.deltas[key], w)
		}
	}
	for _, w := range removals {
		typ := w.req.GetTypeUrl()
		to := c.gen[key][typ]
		if c.respondDelta(w, cur, started, relevantChanges(changed, typ, w.sub), to-1, to) {
			delete(c.deltas[key], w)
		}
	}
	for _, w := range sortedWatches(c.watches[key], func(w *watch) string { return w.req.GetTypeUrl() }) {
		typ := w.req.GetTypeUrl()
		touched := len(relevantChanges(changed, typ, w.sub)) > 0
		if touched && c.respond(w, cur, started) {
			delete(c.watches[key], w)
		}
	}
}

// pushOrder is the order in which a change's types are sent: make before break.
var pushOrder = map[string]int{resourcev3.SecretType: 0, resourcev3.ClusterType: 1, resourcev3.EndpointType: 2, resourcev3.ListenerType: 3, resourcev3.RouteType: 4}

func sortedWatches[W comparable](set map[W]struct{}, typeURL func(W) string) []W {
	out := make([]W, 0, len(set))
	for w := range set {
		out = append(out, w)
	}
	slices.SortFunc(out, func(a, b W) int { return cmp.Compare(pushOrder[typeURL(a)], pushOrder[typeURL(b)]) })
	return out
}

// relevantChanges are the changed names of type typ a subscription covers.
func relevantChanges(changed *changes, typ string, sub cachev3.Subscription) []string {
	if !changed.any(typ) {
		return nil
	}
	var out []string
	wildcard := sub.IsWildcard()
	subscribed := sub.SubscribedResources()
	changed.names(typ, func(name string) {
		if _, ok := subscribed[name]; ok || wildcard {
			out = append(out, name)
		}
	})
	return out
}

// CreateWatch answers at once when the client lacks the current version of something it
// subscribes to, and otherwise waits for a change.
func (c *Cache) CreateWatch(req *cachev3.Request, sub cachev3.Subscription, ch chan cachev3.Response) (func(), error) {
	key, err := c.resolve(context.Background(), req.GetNode())
	if err != nil {
		return nil, err
	}
	if req.GetErrorDetail() != nil {
		c.nacked(req.GetNode().GetId(), key, req.GetTypeUrl(), req.GetErrorDetail().GetMessage())
	}
	w := &watch{key: key, req: req, sub: sub, resp: ch}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur, ok := c.keys[key]; ok && c.stale(w, cur) {
		if c.respond(w, cur, time.Time{}) {
			return func() {}, nil
		}
	}
	if c.watches[key] == nil {
		c.watches[key] = map[*watch]struct{}{}
	}
	c.watches[key][w] = struct{}{}
	return func() {
		c.mu.Lock()
		delete(c.watches[key], w)
		c.mu.Unlock()
	}, nil
}

// stale reports whether the client lacks the current version of a resource it subscribes to,
// or still holds one that no longer exists. A NACKed version is what the server last returned,
// so it is not stale: it is not sent again. A type's first request is always answered when the
// key's configuration is known: in state-of-the-world, a listener or cluster left out of the
// answer tells the client it does not exist.
func (c *Cache) stale(w *watch, cur *view) bool {
	typ := w.req.GetTypeUrl()
	returned := w.sub.ReturnedResources()
	if w.req.GetResponseNonce() == "" && len(returned) == 0 {
		return true
	}
	if w.sub.IsWildcard() {
		if len(returned) != cur.count(typ) {
			return true
		}
		stale := false
		cur.each(typ, func(name string, e *entry) {
			stale = stale || returned[name] != e.version
		})
		return stale
	}
	for name := range w.sub.SubscribedResources() {
		e := cur.get(typ, name)
		v, has := returned[name]
		switch {
		case e == nil && !has:
			continue
		case e == nil || !has || v != e.version:
			return true
		}
	}
	return false
}

// respond sends the subscribed resources of the watch's type; it reports false (keep waiting)
// when the channel is full. changed is when the Set that caused it began (zero: a request).
func (c *Cache) respond(w *watch, cur *view, changed time.Time) bool {
	typ := w.req.GetTypeUrl()
	out := &discoveryv3.DiscoveryResponse{TypeUrl: typ}
	returned := map[string]string{}
	pick := func(name string, e *entry) {
		out.Resources = append(out.Resources, e.any)
		returned[name] = e.version
	}
	if w.sub.IsWildcard() {
		cur.each(typ, pick)
	} else {
		for name := range w.sub.SubscribedResources() {
			if e := cur.get(typ, name); e != nil {
				pick(name, e)
			}
		}
	}
	c.counter++
	out.VersionInfo = strconv.FormatUint(c.counter, 36)
	select {
	case w.resp <- &response{req: w.req, resp: out, returned: returned}:
		c.pushed(w.key, typ, changed)
		return true
	default:
		return false
	}
}

// pushed accounts for a response sent; changed is when the Set that caused it began (zero: a
// request did).
func (c *Cache) pushed(key, typeURL string, changed time.Time) {
	c.pushes[key+" "+typeURL]++
	if c.Observer != nil {
		var since time.Duration
		if !changed.IsZero() {
			since = time.Since(changed)
		}
		c.Observer.Pushed(typeURL, since)
	}
}

// Fetch is not supported: crossgate serves streams only.
func (c *Cache) Fetch(context.Context, *cachev3.Request) (cachev3.Response, error) {
	return nil, errors.New("fetch is not supported; use a stream")
}

// response is a prebuilt DiscoveryResponse whose resources are shared marshaled copies.
type response struct {
	req      *discoveryv3.DiscoveryRequest
	resp     *discoveryv3.DiscoveryResponse
	returned map[string]string
}

func (r *response) GetDiscoveryResponse() (*discoveryv3.DiscoveryResponse, error) { return r.resp, nil }
func (r *response) GetRequest() *discoveryv3.DiscoveryRequest                     { return r.req }
func (r *response) GetVersion() (string, error)                                   { return r.resp.VersionInfo, nil }

func (r *response) GetResponseVersion() string { return r.resp.VersionInfo }

func (r *response) GetReturnedResources() map[string]string { return r.returned }

func (r *response) GetContext() context.Context { return context.Background() }

// NACK logging: a client chooses its error message and how often it NACKs, so each message is
// cut to nackMessageMax bytes and each key and type logs at most once per nackLogEvery, saying
// how many it left out meanwhile. Every NACK is counted.
const (
	nackMessageMax = 1024
	nackLogEvery   = 10 * time.Second
)

type nackLog struct {
	last       time.Time
	suppressed int
}

func (c *Cache) nacked(node, key, typeURL, msg string) {
	c.NACKs.Add(1)
	c.mu.Lock()
	if c.Observer != nil {
		c.Observer.NACKed(typeURL)
	}
	if c.nackLogs == nil {
		c.nackLogs = map[string]*nackLog{}
	}
	l := c.nackLogs[key+" "+typeURL]
	if l == nil {
		l = &nackLog{}
		c.nackLogs[key+" "+typeURL] = l
	}
	now := time.Now()
	if !l.last.IsZero() && now.Sub(l.last) < nackLogEvery {
		l.suppressed++
		c.mu.Unlock()
		return
	}
	suppressed := l.suppressed
	l.last, l.suppressed = now, 0
	c.mu.Unlock()
	if len(msg) > nackMessageMax {
		msg = msg[:nackMessageMax] + fmt.Sprintf("... (%d bytes)", len(msg))
	}
	c.log.Warn("xDS update rejected", "node", truncate(node, 256), "key", key, "type", truncate(typeURL, 256), "error", msg, "notLoggedSinceLast", suppressed)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
