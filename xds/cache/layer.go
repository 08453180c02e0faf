package cache

import (
	"weak"

	"github.com/crossgate-io/crossgate/xds/resources"
)

// Layers: the resources a key holds are its own table and, when its configuration has a shared
// part (resources.Resources.Shared: one pointer for every identity of an outbound set, every
// identity in permissive mode), that part's layer, held once by every key that has the part. So
// a key's Set costs what its own part holds and what changed in its shared part, not the whole
// shared part: the difference between two layers is computed once, by the first key that moves
// from one to the other, and the keys after it reuse it. Before layers, each key held a table
// of every name it served: at 1k identities sharing a 40k-resource part, 40M slots and 1 minute
// of Sets per full publish (B1, permissive).

// table is a set of resources by type URL and name.
type table map[string]map[string]*entry

func newTable() table {
	t := make(table, len(typeURLs))
	for _, typ := range typeURLs {
		t[typ] = map[string]*entry{}
	}
	return t
}

// layer is a shared part's entries. Its fields are used under the cache's lock.
type layer struct {
	id      weak.Pointer[resources.Resources]
	t       table
	holders map[string]bool // the keys whose view has this layer
	// gen counts the changes of the layer in place (Patch).
	gen uint64
	// next is the difference from this layer to its successor, computed by the first key that
	// moved from one to the other (at generations gens of the two): by type URL, the names whose
	// entries differ.
	next     *layer
	nextGens [2]uint64
	nextDiff map[string]map[string]bool
	// all is every name of the layer, the difference from no layer to it (at generation allGen).
	all    map[string]map[string]bool
	allGen uint64
}

// view is what a key serves: its own entries and a shared layer (nil: none). A name in both is
// the layer's (the shared part comes last, and the last part wins).
type view struct {
	own    table
	shared *layer
}

func (v *view) get(typ, name string) *entry {
	if v.shared != nil {
		if e := v.shared.t[typ][name]; e != nil {
			return e
		}
	}
	return v.own[typ][name]
}

// each calls f for every resource of type typ the key serves.
func (v *view) each(typ string, f func(name string, e *entry)) {
	var shared map[string]*entry
	if v.shared != nil {
		shared = v.shared.t[typ]
		for name, e := range shared {
			f(name, e)
		}
	}
	for name, e := range v.own[typ] {
		if shared[name] == nil {
			f(name, e)
		}
	}
}

// count is the number of resources of type typ the key serves.
func (v *view) count(typ string) int {
	if v.shared == nil {
		return len(v.own[typ])
	}
	shared := v.shared.t[typ]
	n := len(shared)
	for name := range v.own[typ] {
		if shared[name] == nil {
			n++
		}
	}
	return n
}

// changes are the names of a key's resources a Set or Patch changed, by type URL: the key's own
// (own), and those of its shared layer (shared, the layers' memoized difference: never modified).
// A name may be listed although its entry, once both are looked at, is the same (a name in the
// own table and the layer): that costs a comparison, never a wrong answer.
type changes struct {
	own, shared map[string]map[string]bool
	// sharedNames, when set, lists shared's names by type, made once for every key that a
	// Patch of a layer changed alike: its change log keeps that list rather than a copy.
	sharedNames map[string][]string
}

func (ch *changes) any(typ string) bool { return len(ch.own[typ]) > 0 || len(ch.shared[typ]) > 0 }

// names calls f for each changed name of type typ (a name in both sets twice).
func (ch *changes) names(typ string, f func(name string)) {
	for name := range ch.own[typ] {
		f(name)
	}
	for name := range ch.shared[typ] {
		if !ch.own[typ][name] {
			f(name)
		}
	}
}

// layerFor returns the layer of shared part p, made from ms (its marshaled resources, the parts
// after it included, in order) when there is none yet. Called under c.mu.
func (c *Cache) layerFor(p *resources.Resources, ms [][]marshaled) *layer {
	id := weak.Make(p)
	if l := c.layers[id]; l != nil {
		return l
	}
	sizes := map[string]int{}
	for _, part := range ms {
		for i := range part {
			sizes[part[i].typ]++
		}
	}
	l := &layer{id: id, t: make(table, len(typeURLs)), holders: map[string]bool{}}
	for _, typ := range typeURLs {
		l.t[typ] = make(map[string]*entry, sizes[typ]) // sized: tens of thousands in a permissive mesh
	}
	for _, part := range ms {
		for i := range part {
			m := &part[i]
			if old := l.t[m.typ][m.name]; old != nil {
				c.release(old) // a name in two shared parts: the last wins
			}
			l.t[m.typ][m.name] = c.acquire(m.typ, m.b, m.sum)
		}
	}
	c.layers[id] = l
	return l
}

// hold records that key's view has l; let records that it no longer has it, and drops the layer
// (releasing its entries) when no key has it. Called under c.mu.
func (c *Cache) hold(l *layer, key string) {
	if l != nil {
		l.holders[key] = true
	}
}

func (c *Cache) let(l *layer, key string) {
	if l == nil {
		return
	}
	delete(l.holders, key)
	if len(l.holders) > 0 {
		return
	}
	if c.layers[l.id] == l {
		delete(c.layers, l.id)
	}
	for _, byName := range l.t {
		for _, e := range byName {
			c.release(e)
		}
	}
	l.t, l.next, l.nextDiff, l.all = nil, nil, nil, nil
}

// layerDiff is the difference between layers a and b (either may be nil), by type URL: the
// names whose entries differ. It is memoized on a, for the next key moving from a to b.
// Called under c.mu.
func (c *Cache) layerDiff(a, b *layer) map[string]map[string]bool {
	if a == b {
		return nil
	}
	if a != nil && b != nil && a.next == b && a.nextDiff != nil && a.nextGens == [2]uint64{a.gen, b.gen} {
		return a.nextDiff
	}
	if a == nil && b.all != nil && b.allGen == b.gen {
		return b.all // a key new to the layer: every key after the first reuses it
	}
	out := map[string]map[string]bool{}
	add := func(typ, name string) {
		if out[typ] == nil {
			size := 0
			if a == nil {
				size = len(b.t[typ]) // every name of b
			}
			out[typ] = make(map[string]bool, size)
		}
		out[typ][name] = true
	}
	var at, bt table
	if a != nil {
		at = a.t
	}
	if b != nil {
		bt = b.t
	}
	for typ, byName := range bt {
		for name, e := range byName {
			if at[typ][name] != e { // interned: equal bytes are one entry
				add(typ, name)
			}
		}
	}
	for typ, byName := range at {
		for name := range byName {
			if bt[typ][name] == nil {
				add(typ, name)
			}
		}
	}
	switch {
	case a != nil && b != nil:
		a.next, a.nextGens, a.nextDiff = b, [2]uint64{a.gen, b.gen}, out
	case a == nil:
		b.all, b.allGen = out, b.gen
	}
	return out
}
