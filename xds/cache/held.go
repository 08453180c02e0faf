package cache

import (
	"maps"
	"strconv"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

// held is the map of the versions a client holds, name -> version: go-control-plane's stream
// state (Subscription.ReturnedResources), which its server replaces with a response's
// GetReturnedResources when the response is sent. The cache keeps one more thing there, under
// a name no resource can have (syncedKey): the generation of the key's resources of that type
// the client is known to hold entirely, so that re-arming a watch after an ACK costs O(1)
// instead of a comparison of everything held.
//
// This is the one place that relies on go-control-plane's stream state, and on how its server
// uses it: the cache changes the map in place only under the cache's lock while the stream's
// watch is open, and the server's stream cancels that watch (under the same lock, via the
// cancel function) before it reads or replaces the map, so the two never touch it at once. A
// go-control-plane upgrade must re-check that order in pkg/server/delta/v3/server.go (and sotw).
type held map[string]string

// heldBy is the held map of a stream's subscription (nil when the server gives none).
func heldBy(sub cachev3.Subscription) held { return held(sub.ReturnedResources()) }

// syncedKey is a name no resource can have (names are never empty and never start with NUL).
const syncedKey = "\x00crossgate/synced-generation"

// isResource reports whether a name in the map is a resource's, not the cache's own mark.
func isResource(name string) bool { return name != syncedKey }

// syncedAt is the generation the client is known to hold entirely (0: unknown).
func (h held) syncedAt() uint64 {
	g, _ := strconv.ParseUint(h[syncedKey], 36, 64)
	return g
}

// setSynced records that the client holds generation to entirely.
func (h held) setSynced(to uint64) { h[syncedKey] = strconv.FormatUint(to, 36) }

// advanceSynced records that a client synced at from is now synced at to.
func (h held) advanceSynced(from, to uint64) {
	if h != nil && h.syncedAt() == from {
		h.setSynced(to)
	}
}

// mark is the synced mark as it was, to restore when a response is not sent.
type mark struct {
	value string
	had   bool
}

func (h held) mark() mark {
	v, ok := h[syncedKey]
	return mark{v, ok}
}

func (h held) restore(m mark) {
	if m.had {
		h[syncedKey] = m.value
	} else {
		delete(h, syncedKey)
	}
}

// copyMark copies the synced mark of other into h.
func (h held) copyMark(other held) { h[syncedKey] = other[syncedKey] }

// resources is a copy of the map without the cache's mark (for the config dump).
func (h held) resources() map[string]string {
	out := maps.Clone(map[string]string(h))
	if out == nil {
		out = map[string]string{}
	}
	delete(out, syncedKey)
	return out
}
