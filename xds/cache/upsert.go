package cache

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
)

// Replacement is a new version of one resource for some keys.
type Replacement struct {
	Keys    []string
	TypeURL string
	Name    string
	// Resource is the new version; the same message given for several keys (or in several
	// replacements) is marshaled once.
	Resource proto.Message
}

// Patch replaces single resources of keys (or adds them), as an incremental publisher does when
// only those resources changed: the cost is the replaced resources and the watches subscribed to
// them, not the keys' whole configurations. Every key must have been Set before; a resource
// whose bytes did not change keeps its version. Each key's watches are answered once, for all
// of its replacements.
func (c *Cache) Patch(rs []Replacement) error {
	started := time.Now()
	bytes := make(map[proto.Message][]byte, len(rs))
	for _, r := range rs {
		if _, ok := bytes[r.Resource]; ok {
			continue
		}
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r.Resource)
		if err != nil {
			return fmt.Errorf("marshaling %s %s: %w", r.TypeURL, r.Name, err)
		}
		bytes[r.Resource] = b
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	changed := map[string]map[string]map[string]bool{} // key -> type -> names
	for _, r := range rs {
		b := bytes[r.Resource]
		for _, key := range r.Keys {
			cur, ok := c.keys[key]
			switch {
			case !ok:
				errs = append(errs, fmt.Errorf("key %q has no configuration yet: Set it first", key))
				continue
			case cur[r.TypeURL] == nil:
				errs = append(errs, fmt.Errorf("type %s is not served", r.TypeURL))
				continue
			}
			old := cur[r.TypeURL][r.Name]
			if old != nil && string(old.any.Value) == string(b) {
				continue // unchanged
			}
			// In place: every reader of a key's tables holds the lock (responses carry the
			// entries, not the tables).
			cur[r.TypeURL][r.Name] = c.acquire(r.TypeURL, b, nil)
			c.release(old)
			if changed[key] == nil {
				changed[key] = map[string]map[string]bool{}
			}
			if changed[key][r.TypeURL] == nil {
				changed[key][r.TypeURL] = map[string]bool{}
			}
			changed[key][r.TypeURL][r.Name] = true
		}
	}
	if len(changed) > 0 && c.Observer != nil {
		c.Observer.Size(c.internedBytes)
	}
	for key, names := range changed {
		c.notify(key, c.keys[key], names, started)
	}
	return errors.Join(errs...)
}

// Upsert replaces one resource of key (or adds it): Patch of one resource.
func (c *Cache) Upsert(key, typeURL, name string, m proto.Message) error {
	return c.Patch([]Replacement{{Keys: []string{key}, TypeURL: typeURL, Name: name, Resource: m}})
}
