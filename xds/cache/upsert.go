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
	changed := map[string]*changes{}
	mark := func(key, typ, name string) {
		ch := changed[key]
		if ch == nil {
			ch = &changes{}
			changed[key] = ch
		}
		if ch.own == nil {
			ch.own = map[string]map[string]bool{}
		}
		if ch.own[typ] == nil {
			ch.own[typ] = map[string]bool{}
		}
		ch.own[typ][name] = true
	}
	// replace puts the new version b of a resource in slot t[typ][name], reporting whether it
	// changed anything. In place: every reader of a key's tables holds the lock (responses
	// carry the entries, not the tables).
	replace := func(t table, typ, name string, b []byte) bool {
		old := t[typ][name]
		if old != nil && string(old.any.Value) == string(b) {
			return false
		}
		t[typ][name] = c.acquire(typ, b, nil)
		c.release(old)
		return true
	}
	// Replacements of names that are a shared layer's, by layer: which keys ask for each.
	type shared struct {
		keys  map[string]bool
		asked map[int]map[string]bool // replacement -> keys of the layer asking for it
	}
	byLayer := map[*layer]*shared{}
	var layers []*layer
	for ri, r := range rs {
		b := bytes[r.Resource]
		for _, key := range r.Keys {
			v, ok := c.keys[key]
			switch {
			case !ok:
				errs = append(errs, fmt.Errorf("key %q has no configuration yet: Set it first", key))
				continue
			case v.own[r.TypeURL] == nil:
				errs = append(errs, fmt.Errorf("type %s is not served", r.TypeURL))
				continue
			}
			if l := v.shared; l != nil && l.t[r.TypeURL][r.Name] != nil {
				sh := byLayer[l]
				if sh == nil {
					sh = &shared{keys: map[string]bool{}, asked: map[int]map[string]bool{}}
					byLayer[l] = sh
					layers = append(layers, l)
				}
				sh.keys[key] = true
				if sh.asked[ri] == nil {
					sh.asked[ri] = map[string]bool{}
				}
				sh.asked[ri][key] = true
				continue
			}
			if replace(v.own, r.TypeURL, r.Name, b) {
				mark(key, r.TypeURL, r.Name)
			}
		}
	}
	for _, l := range layers {
		sh := byLayer[l]
		everyHolder := true
		for _, keys := range sh.asked {
			everyHolder = everyHolder && len(keys) == len(l.holders)
		}
		if everyHolder {
			// Every key that has the layer gets the same replacements: the layer changes, once.
			// It is no longer what its part marshals to: a later Set of that part makes a layer
			// of its own.
			l.gen++
			if c.layers[l.id] == l {
				delete(c.layers, l.id)
			}
			// What changed in the layer is the same for each of its keys: one change set,
			// and one list of names for their change logs, given to all.
			inLayer := &changes{shared: map[string]map[string]bool{}, sharedNames: map[string][]string{}}
			for ri := range sh.asked {
				r := &rs[ri]
				if replace(l.t, r.TypeURL, r.Name, bytes[r.Resource]) {
					if inLayer.shared[r.TypeURL] == nil {
						inLayer.shared[r.TypeURL] = map[string]bool{}
					}
					if !inLayer.shared[r.TypeURL][r.Name] {
						inLayer.shared[r.TypeURL][r.Name] = true
						inLayer.sharedNames[r.TypeURL] = append(inLayer.sharedNames[r.TypeURL], r.Name)
					}
				}
			}
			if len(inLayer.shared) > 0 {
				for key := range l.holders {
					ch := changed[key]
					if ch == nil {
						changed[key] = inLayer
						continue
					}
					// The key's own replacements were marked before: its change set is its own.
					ch.shared, ch.sharedNames = inLayer.shared, inLayer.sharedNames
				}
			}
			continue
		}
		// Some of its keys only: they stop sharing the layer (its entries become their own),
		// then are patched as keys without one. Rare: the controller patches every key of a
		// shared part alike.
		for key := range sh.keys {
			v := c.keys[key]
			for typ, byName := range l.t {
				for name, e := range byName {
					e.refs++
					c.release(v.own[typ][name])
					v.own[typ][name] = e
				}
			}
			v.shared = nil
			c.let(l, key)
		}
		for ri := range sh.asked {
			r := &rs[ri]
			for _, key := range r.Keys {
				if v := c.keys[key]; v != nil && sh.keys[key] && replace(v.own, r.TypeURL, r.Name, bytes[r.Resource]) {
					mark(key, r.TypeURL, r.Name)
				}
			}
		}
	}
	if len(changed) > 0 && c.Observer != nil {
		c.Observer.Size(c.internedBytes)
	}
	for key, ch := range changed {
		c.notify(key, c.keys[key], ch, started)
	}
	return errors.Join(errs...)
}

// Upsert replaces one resource of key (or adds it): Patch of one resource.
func (c *Cache) Upsert(key, typeURL, name string, m proto.Message) error {
	return c.Patch([]Replacement{{Keys: []string{key}, TypeURL: typeURL, Name: name, Resource: m}})
}
