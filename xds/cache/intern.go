package cache

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"weak"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/crossgate-io/crossgate/internal/parallel"
	"github.com/crossgate-io/crossgate/xds/resources"
)

// Interning: every entry the cache serves is held once, by type and content. Keys whose
// resources have the same bytes (the outbound configuration of every identity in permissive
// mode, of every caller of equal access in policy mode) hold one entry: one marshaled copy, one
// version, one delta encoding (wire.go). refs counts the key slots holding an entry; when it
// drops to zero the entry leaves the table and its delta encoding is retired.

type internKey struct {
	typ string
	sum [sha256.Size]byte
}

// acquire returns the entry of (typ, b), shared when one exists, holding one more reference.
// sum, when not nil, is b's SHA-256, already computed. Called under c.mu. The version is derived
// from the bytes, not from a counter: a restarted control plane gives an unchanged resource the
// version it had, so a delta client reconnecting with initial_resource_versions is sent only
// what changed while it was away, not everything it holds.
func (c *Cache) acquire(typ string, b []byte, sum *[sha256.Size]byte) *entry {
	if sum == nil {
		s := sha256.Sum256(b)
		sum = &s
	}
	k := internKey{typ, *sum}
	if e := c.interned[k]; e != nil {
		e.refs++
		return e
	}
	e := &entry{version: hex.EncodeToString(sum[:8]), any: &anypb.Any{TypeUrl: typ, Value: b}, key: k, refs: 1}
	c.interned[k] = e
	c.internedBytes += len(b)
	return e
}

// release drops one reference to e (nil: none). Called under c.mu.
func (c *Cache) release(e *entry) {
	if e == nil {
		return
	}
	if e.refs--; e.refs > 0 {
		return
	}
	delete(c.interned, e.key)
	c.internedBytes -= len(e.any.Value)
	e.retire(&c.wires)
}

// marshaled is one resource of a part, marshaled.
type marshaled struct {
	typ, name string
	b         []byte
	sum       *[sha256.Size]byte // nil: not computed yet
}

// parts remembers the marshaled resources of shared parts (resources.Resources.Shared, one
// pointer for every identity of an outbound set) while the part is alive: the first key's Set
// marshals a shared part, the others' reuse the bytes, and the entry is dropped when the
// publisher lets go of the part (a weak pointer and a cleanup).
//
// Shared parts may also share resources: the proxyless part of an outbound set holds the same
// endpoint resources (the same messages) as the sidecar part. endpoints remembers the marshaled
// endpoints of every remembered part by message, so that each is marshaled and hashed once.
type parts struct {
	mu        sync.Mutex
	m         map[weak.Pointer[resources.Resources]][]marshaled
	endpoints map[*endpointv3.ClusterLoadAssignment]keptEndpoint
}

// keptEndpoint is a marshaled endpoint resource and the part whose entry holds it.
type keptEndpoint struct {
	m    marshaled
	part weak.Pointer[resources.Resources]
}

func (p *parts) get(part *resources.Resources) ([]marshaled, error) {
	wp := weak.Make(part)
	p.mu.Lock()
	got, ok := p.m[wp]
	var known []marshaled
	if !ok {
		known = make([]marshaled, len(part.Endpoints))
		for i, e := range part.Endpoints {
			known[i] = p.endpoints[e].m
		}
	}
	p.mu.Unlock()
	if ok {
		return got, nil
	}
	out, err := marshalPart(part, known)
	if err != nil {
		return nil, err
	}
	parallel.Do(chunks(len(out)), func(c int) {
		for i := c * chunk; i < min(len(out), (c+1)*chunk); i++ {
			if out[i].sum == nil {
				s := sha256.Sum256(out[i].b)
				out[i].sum = &s
			}
		}
	})
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[weak.Pointer[resources.Resources]][]marshaled{}
		p.endpoints = map[*endpointv3.ClusterLoadAssignment]keptEndpoint{}
	}
	if got, ok := p.m[wp]; ok {
		return got, nil // another Set marshaled it meanwhile
	}
	p.m[wp] = out
	first := len(out) - len(part.Endpoints) - len(part.Secrets) // marshalPart's order
	for i, e := range part.Endpoints {
		if _, ok := p.endpoints[e]; !ok {
			p.endpoints[e] = keptEndpoint{out[first+i], wp}
		}
	}
	eps := slices.Clone(part.Endpoints) // as they are now: a patch may replace one in place
	runtime.AddCleanup(part, func(wp weak.Pointer[resources.Resources]) {
		p.mu.Lock()
		delete(p.m, wp)
		for _, e := range eps {
			if p.endpoints[e].part == wp {
				delete(p.endpoints, e)
			}
		}
		p.mu.Unlock()
	}, wp)
	return out, nil
}

// marshalPart marshals the resources of one part (not of its Shared part), deterministically;
// a large part (a shared outbound set: tens of thousands of resources) on every core. known[i],
// when it holds bytes, is part.Endpoints[i] already marshaled (and hashed). The result lists
// listeners, routes, clusters, endpoints and secrets, in that order.
func marshalPart(part *resources.Resources, known []marshaled) ([]marshaled, error) {
	type item struct {
		typ, name string
		m         proto.Message // nil: done
		done      marshaled
	}
	items := make([]item, 0, len(part.Listeners)+len(part.Routes)+len(part.Clusters)+len(part.Endpoints)+len(part.Secrets))
	for _, x := range part.Listeners {
		items = append(items, item{typ: resourcev3.ListenerType, name: x.Name, m: x})
	}
	for _, x := range part.Routes {
		items = append(items, item{typ: resourcev3.RouteType, name: x.Name, m: x})
	}
	for _, x := range part.Clusters {
		items = append(items, item{typ: resourcev3.ClusterType, name: x.Name, m: x})
	}
	for i, x := range part.Endpoints {
		if i < len(known) && known[i].b != nil {
			items = append(items, item{m: nil, done: known[i]})
			continue
		}
		items = append(items, item{typ: resourcev3.EndpointType, name: x.ClusterName, m: x})
	}
	for _, x := range part.Secrets {
		items = append(items, item{typ: resourcev3.SecretType, name: x.Name, m: x})
	}
	out := make([]marshaled, len(items))
	errs := make([]error, chunks(len(items)))
	parallel.Do(len(errs), func(c int) {
		for i := c * chunk; i < min(len(items), (c+1)*chunk); i++ {
			if items[i].m == nil {
				out[i] = items[i].done
				continue
			}
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(items[i].m)
			if err != nil {
				errs[c] = fmt.Errorf("marshaling %s %s: %w", items[i].typ, items[i].name, err)
				return
			}
			out[i] = marshaled{typ: items[i].typ, name: items[i].name, b: b}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// chunk is how many resources one goroutine marshals or hashes at a time: enough that a part
// of a few resources (a key's own) stays on the caller's goroutine.
const chunk = 256

func chunks(n int) int { return (n + chunk - 1) / chunk }
