package cache

import (
	"context"
	"maps"
	"strconv"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

type deltaWatch struct {
	key  string
	req  *discoveryv3.DeltaDiscoveryRequest
	sub  cachev3.Subscription
	resp chan cachev3.DeltaResponse
}

// CreateDeltaWatch answers at once with what the client lacks (new or changed versions of what
// it subscribes to, and removals of what it holds), and otherwise waits for a change. A version
// the client NACKed is what it was last sent: it is not sent again.
func (c *Cache) CreateDeltaWatch(req *cachev3.DeltaRequest, sub cachev3.Subscription, ch chan cachev3.DeltaResponse) (func(), error) {
	key, err := c.resolve(context.Background(), req.GetNode())
	if err != nil {
		return nil, err
	}
	if req.GetErrorDetail() != nil {
		c.nacked(req.GetNode().GetId(), key, req.GetTypeUrl(), req.GetErrorDetail().GetMessage())
	}
	w := &deltaWatch{key: key, req: req, sub: sub, resp: ch}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur, ok := c.keys[key]; ok {
		typ := req.GetTypeUrl()
		gen := c.gen[key][typ]
		var names []string
		from := gen
		if at := heldBy(sub).syncedAt(); at == gen && gen > 0 {
			// The client holds everything up to now (an ACK, or a change of subscription):
			// only newly subscribed names can be missing. Re-arming an ACK is O(1).
			names = req.GetResourceNamesSubscribe()
			if names == nil {
				names = []string{}
			}
		} else if since, ok := c.changedSince(key, typ, at, gen); ok && at > 0 {
			// Changes came while the client was not waiting (between a response and its ACK):
			// what they changed, of what it subscribes to, and newly subscribed names.
			names = append(relevantChanges(&changes{own: map[string]map[string]bool{typ: since}}, typ, sub), req.GetResourceNamesSubscribe()...)
			from = at
		}
		if c.respondDelta(w, cur, time.Time{}, names, from, gen) {
			return func() {}, nil
		}
	}
	if c.deltas[key] == nil {
		c.deltas[key] = map[*deltaWatch]struct{}{}
	}
	c.deltas[key][w] = struct{}{}
	return func() {
		c.mu.Lock()
		delete(c.deltas[key], w)
		c.mu.Unlock()
	}, nil
}

// respondDelta sends the difference between what the client holds and the current resources,
// looking only at names when given (the names a change touched), at everything otherwise. The
// client's map of versions is updated in place, so a response costs what it carries, not what
// the client holds; it is rolled back if the response cannot be sent. A client synced at from
// is then synced at to. It reports false (keep waiting) when there is no difference or the
// channel is full.
func (c *Cache) respondDelta(w *deltaWatch, cur *view, changed time.Time, names []string, from, to uint64) bool {
	typ := w.req.GetTypeUrl()
	known := heldBy(w.sub)
	if known == nil {
		return false // the server always gives a map; without one there is nothing to track
	}
	orig, fresh, want := known, false, 0
	if names == nil {
		want = cur.count(typ)
		if !w.sub.IsWildcard() {
			want = len(w.sub.SubscribedResources())
		}
		if len(known) < want/2 {
			// Most of it is to be sent (a first sync): a map of the final size, not one grown
			// step by step. It replaces the stream's when the response is processed.
			grown := make(held, want+1)
			maps.Copy(grown, known)
			known, fresh = grown, true
		}
	}
	out := &discoveryv3.DeltaDiscoveryResponse{TypeUrl: typ}
	type undo struct {
		name, version string
		had           bool
	}
	var undos []undo
	// A first sync of a client that holds nothing: no name is in its map until put there, and
	// nearly every subscribed name is to be sent.
	empty := fresh && len(orig) == 0
	if fresh {
		out.Resources = make([]*discoveryv3.Resource, 0, min(cur.count(typ), want))
	}
	consider := func(name string) {
		if !isResource(name) {
			return
		}
		e := cur.get(typ, name)
		var v string
		var has bool
		if !empty {
			v, has = known[name]
		}
		switch {
		case e == nil && has:
			out.RemovedResources = append(out.RemovedResources, name)
			if !fresh {
				undos = append(undos, undo{name, v, true})
			}
			delete(known, name)
		case e != nil && (!has || v != e.version):
			out.Resources = append(out.Resources, e.deltaResource(&c.wires, name))
			if !fresh {
				undos = append(undos, undo{name, v, has})
			}
			known[name] = e.version
		}
	}
	if names != nil {
		for _, name := range names {
			consider(name)
		}
	} else if w.sub.IsWildcard() {
		cur.each(typ, func(name string, _ *entry) { consider(name) })
		for name := range known {
			if cur.get(typ, name) == nil {
				consider(name) // deletes from known while ranging: allowed in Go
			}
		}
	} else {
		for name := range w.sub.SubscribedResources() {
			consider(name)
		}
	}
	prevSynced := known.mark()
	if names == nil {
		known.setSynced(to) // a full comparison: now synced
	} else {
		known.advanceSynced(from, to)
	}
	if len(out.Resources) == 0 && len(out.RemovedResources) == 0 {
		if fresh {
			orig.copyMark(known) // nothing to send: what it holds is current
		}
		return false
	}
	c.counter++
	out.SystemVersionInfo = strconv.FormatUint(c.counter, 36)
	select {
	case w.resp <- &deltaResponse{req: w.req, resp: out, next: known}:
		c.pushed(w.key, typ, changed)
		return true
	default:
		if fresh {
			return false // the stream's map was not touched
		}
		for i := len(undos) - 1; i >= 0; i-- { // not sent: the client still holds what it held
			if u := undos[i]; u.had {
				known[u.name] = u.version
			} else {
				delete(known, u.name)
			}
		}
		known.restore(prevSynced)
		return false
	}
}

type deltaResponse struct {
	req  *discoveryv3.DeltaDiscoveryRequest
	resp *discoveryv3.DeltaDiscoveryResponse
	next map[string]string
}

func (r *deltaResponse) GetDeltaDiscoveryResponse() (*discoveryv3.DeltaDiscoveryResponse, error) {
	return r.resp, nil
}
func (r *deltaResponse) GetDeltaRequest() *discoveryv3.DeltaDiscoveryRequest { return r.req }
func (r *deltaResponse) GetSystemVersion() (string, error)                   { return r.resp.SystemVersionInfo, nil }

func (r *deltaResponse) GetResponseVersion() string              { return r.resp.SystemVersionInfo }
func (r *deltaResponse) GetNextVersionMap() map[string]string    { return r.next }
func (r *deltaResponse) GetReturnedResources() map[string]string { return r.next }
func (r *deltaResponse) GetContext() context.Context             { return context.Background() }

// change is what one generation of a key's resources of one type changed.
type change struct {
	gen   uint64
	names []string // nil when too many to keep: a client synced before it compares everything
}

// Bounds of the change log: generations kept per key and type (at least changeLogLength, at most
// twice that), names kept per generation.
const (
	changeLogLength = 64
	changeLogNames  = 256
)

// remember logs what generation gen of key's resources of type typ changed.
func (c *Cache) remember(key, typ string, gen uint64, changed *changes) {
	var names []string
	switch n := len(changed.own[typ]) + len(changed.shared[typ]); {
	case n > changeLogNames:
	case n == len(changed.shared[typ]) && changed.sharedNames != nil:
		names = changed.sharedNames[typ] // shared by the layer's keys, never modified
	default:
		names = make([]string, 0, n)
		changed.names(typ, func(name string) { names = append(names, name) })
	}
	if c.changes[key] == nil {
		c.changes[key] = map[string][]change{}
	}
	log := append(c.changes[key][typ], change{gen, names})
	if len(log) > 2*changeLogLength {
		// Trimmed to the latest changeLogLength once it holds twice that: a copy every
		// changeLogLength changes, not one per change.
		log = append(log[:0:0], log[len(log)-changeLogLength:]...)
	}
	c.changes[key][typ] = log
}

// changedSince gathers the names changed by generations after from, up to to, when the log
// still holds them all.
func (c *Cache) changedSince(key, typ string, from, to uint64) (map[string]bool, bool) {
	log := c.changes[key][typ]
	if from >= to || len(log) == 0 || log[0].gen > from+1 || log[len(log)-1].gen != to {
		return nil, false
	}
	out := map[string]bool{}
	for _, ch := range log {
		if ch.gen <= from {
			continue
		}
		if ch.names == nil {
			return nil, false
		}
		for _, name := range ch.names {
			out[name] = true
		}
	}
	return out, true
}
