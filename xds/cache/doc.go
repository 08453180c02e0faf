// Package cache is crossgate's xDS cache: it holds, per proxy key (an identity's sidecar or
// proxyless configuration, or a gateway), the current resources as marshaled bytes, and answers
// go-control-plane's server streams.
//
// Unlike go-control-plane's SnapshotCache: each resource has its own version, derived from its
// bytes, and one marshaled copy, interned by content (intern.go), which every key, stream and
// response shares (a delta response's resources are handed to gRPC as those bytes: the wires of
// wire.go, used by the server's codec). A key serves its own resources and, when its
// configuration has a shared part (resources.Resources.Shared: one pointer for every identity
// of an outbound set, every identity in permissive mode), that part's layer (layer.go), held once
// for every key that has the part: a shared part is marshaled once, by the first key's Set, and
// its entries are tabled once; an endpoint resource that two shared parts hold (an outbound set's
// sidecar and proxyless parts) is marshaled once too. A key's Set costs what its own part holds
// plus what changed in the shared part (the difference between its old and new layer, computed
// once for all keys that move alike), not the whole shared part. SetAll, the controller's full
// publish, marshals every key's resources on every core before setting the keys one after
// another under the cache's lock. A change wakes only the watches subscribed to a
// changed resource; and a NACKed version is never sent again (the NACK is logged and counted),
// the next change is.
//
// Patch (upsert.go) replaces single resources in many keys at once, as the controller's
// incremental path does for endpoint changes: each new resource is marshaled once and interned;
// a resource of a shared layer that every key of the layer gets is replaced in the layer, once;
// each key's watches are answered once, for what they subscribe to. A replacement for some keys
// of a layer only gives those keys a copy of the layer of their own (the controller never asks
// for that: it patches every key of a shared part alike).
//
// The cache reads xds/resources, never the builder (xds/translate): hack/layout holds it to that.
//
// A change reaches a client make-before-break, as the xDS protocol's eventual consistency
// considerations ask: secrets, clusters and endpoints before the listeners and route
// configurations that use them, and a delta client's cluster removals after those.
//
// It serves state-of-the-world and delta streams.
package cache
