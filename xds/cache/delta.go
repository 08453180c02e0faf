package cache

import (
	"context"
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
		c.NACKs.Add(1)
		c.log.Warn("xDS update rejected", "node", req.GetNode().GetId(), "key", key, "type", req.GetTypeUrl(),
			"error", req.GetErrorDetail().GetMessage())
		if c.Observer != nil {
			c.mu.Lock()
			c.Observer.NACKed(req.GetTypeUrl())
			c.mu.Unlock()
		}
	}
	w := &deltaWatch{key: key, req: req, sub: sub, resp: ch}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur, ok := c.keys[key]; ok && c.respondDelta(w, cur, time.Time{}) {
		return func() {}, nil
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

// respondDelta sends the difference between what the client holds and the current resources;
// it reports false (keep waiting) when there is none or the channel is full.
func (c *Cache) respondDelta(w *deltaWatch, cur map[string]map[string]*entry, changed time.Time) bool {
	typ := w.req.GetTypeUrl()
	known := w.sub.ReturnedResources()
	out := &discoveryv3.DeltaDiscoveryResponse{TypeUrl: typ}
	next := make(map[string]string, len(known))
	for name, v := range known {
		next[name] = v
	}
	consider := func(name string) {
		e := cur[typ][name]
		v, has := known[name]
		switch {
		case e == nil && has:
			out.RemovedResources = append(out.RemovedResources, name)
			delete(next, name)
		case e != nil && (!has || v != e.version):
			out.Resources = append(out.Resources, &discoveryv3.Resource{Name: name, Version: e.version, Resource: e.any})
			next[name] = e.version
		}
	}
	if w.sub.IsWildcard() {
		for name := range cur[typ] {
			consider(name)
		}
		for name := range known {
			if _, ok := cur[typ][name]; !ok {
				consider(name)
			}
		}
	} else {
		for name := range w.sub.SubscribedResources() {
			consider(name)
		}
	}
	if len(out.Resources) == 0 && len(out.RemovedResources) == 0 {
		return false
	}
	c.counter++
	out.SystemVersionInfo = strconv.FormatUint(c.counter, 36)
	select {
	case w.resp <- &deltaResponse{req: w.req, resp: out, next: next}:
		c.Pushes.Add(1)
		c.pushes[w.key+" "+typ]++
		if c.Observer != nil {
			var since time.Duration
			if !changed.IsZero() {
				since = time.Since(changed)
			}
			c.Observer.Pushed(typ, since)
		}
		return true
	default:
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
func (r *deltaResponse) GetResponseVersion() string                          { return r.resp.SystemVersionInfo }
func (r *deltaResponse) GetNextVersionMap() map[string]string                { return r.next }
func (r *deltaResponse) GetReturnedResources() map[string]string             { return r.next }
func (r *deltaResponse) GetContext() context.Context                         { return context.Background() }
