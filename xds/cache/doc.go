// Package cache is crossgate's xDS cache: it holds, per proxy key (an identity's sidecar or
// proxyless configuration, or a gateway), the current resources as marshaled bytes, and answers
// go-control-plane's server streams.
//
// Unlike go-control-plane's SnapshotCache: each resource has its own version, derived from its
// bytes, and one marshaled copy, interned by content (intern.go): every key holding the same
// bytes (the outbound configuration of every identity in permissive mode, of callers of equal
// access in policy mode) holds the one entry, and every stream and response shares it (a delta
// response's resources are handed to gRPC as those bytes: the wires of wire.go, used by the
// server's codec). A shared part of a key's resources (resources.Resources.Shared, one pointer
// for every identity of an outbound set) is marshaled once, by the first key's Set. A change
// wakes only the watches subscribed to a changed resource; and a NACKed version is never sent
// again (the NACK is logged and counted), the next change is.
//
// Patch (upsert.go) replaces single resources in many keys at once, as the controller's
// incremental path does for endpoint changes: each new resource is marshaled once and interned,
// each key's slot points to the one entry, and each key's watches are answered once, for what
// they subscribe to; its cost is the replaced resources times the keys holding them.
//
// What is still per key: each key's map from names to entries, built on every Set, so Set costs
// O(resources of the key) even when they are all shared (about 0.1 s per key at 97k resources),
// and a full publish Sets every key.
//
// The cache reads xds/resources, never the builder (xds/translate): hack/layout holds it to that.
//
// A change reaches a client make-before-break, as the xDS protocol's eventual consistency
// considerations ask: secrets, clusters and endpoints before the listeners and route
// configurations that use them, and a delta client's cluster removals after those.
//
// It serves state-of-the-world and delta streams.
package cache
