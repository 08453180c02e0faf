package cache

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
)

// Upsert replaces one resource of key (or adds it), as an incremental publisher does when only
// that resource changed: the cost is that resource and the watches subscribed to it, not the
// key's whole configuration. The key must have been Set before.
func (c *Cache) Upsert(key, typeURL, name string, m proto.Message) error {
	started := time.Now()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return fmt.Errorf("marshaling %s %s: %w", typeURL, name, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cur, ok := c.keys[key]
	if !ok {
		return fmt.Errorf("key %q has no configuration yet: Set it first", key)
	}
	if cur[typeURL] == nil {
		return fmt.Errorf("type %s is not served", typeURL)
	}
	if e := cur[typeURL][name]; e != nil && string(e.any.Value) == string(b) {
		return nil // unchanged
	}
	// Copy-on-write of the type's map: responses being built elsewhere keep theirs.
	byName := make(map[string]*entry, len(cur[typeURL])+1)
	for n, e := range cur[typeURL] {
		byName[n] = e
	}
	c.release(byName[name])
	byName[name] = c.acquire(typeURL, b, nil)
	next := make(map[string]map[string]*entry, len(cur))
	for t, m := range cur {
		next[t] = m
	}
	next[typeURL] = byName
	c.keys[key] = next
	if c.Observer != nil {
		c.Observer.Size(c.internedBytes)
	}
	c.notify(key, next, map[string]map[string]bool{typeURL: {name: true}}, started)
	return nil
}
