package cache

import (
	"sort"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// Resource is one resource served to a key, as Dump reports it.
type Resource struct {
	Type    string
	Name    string
	Version string
	// Any is the resource; nil for secrets, whose private keys are never dumped.
	Any *anypb.Any
}

// Stream is an open subscription of a key: the stream waits for changes, having been sent
// Held (name to version) of type Type.
type Stream struct {
	Node  string
	Type  string
	Delta bool
	Held  map[string]string
}

// Dump is what the cache serves to key, and what each open subscription of key was last sent
// (a subscription is open again only once the client answered the previous response).
func (c *Cache) Dump(key string) (resources []Resource, streams []Stream, known bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cur, known := c.keys[key]
	for _, t := range typeURLs {
		if cur == nil {
			break
		}
		cur.each(t, func(name string, e *entry) {
			r := Resource{Type: t, Name: name, Version: e.version, Any: e.any}
			if t == resourcev3.SecretType {
				r.Any = nil
			}
			resources = append(resources, r)
		})
	}
	sort.Slice(resources, func(i, j int) bool {
		if resources[i].Type != resources[j].Type {
			return resources[i].Type < resources[j].Type
		}
		return resources[i].Name < resources[j].Name
	})
	for w := range c.watches[key] {
		streams = append(streams, Stream{Node: w.req.GetNode().GetId(), Type: w.req.GetTypeUrl(), Held: heldBy(w.sub).resources()})
	}
	for w := range c.deltas[key] {
		streams = append(streams, Stream{Node: w.req.GetNode().GetId(), Type: w.req.GetTypeUrl(), Delta: true, Held: heldBy(w.sub).resources()})
	}
	sort.Slice(streams, func(i, j int) bool {
		if streams[i].Node != streams[j].Node {
			return streams[i].Node < streams[j].Node
		}
		return streams[i].Type < streams[j].Type
	})
	return resources, streams, known
}
