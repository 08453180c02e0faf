// Package cache is crossgate's xDS cache: it holds, per proxy key (an identity's sidecar or
// proxyless configuration, or a gateway), the current resources as marshaled bytes, and answers
// go-control-plane's server streams.
//
// Unlike go-control-plane's SnapshotCache: each resource has its own version and one marshaled
// copy, shared by every key and every response that carries it; a change wakes only the watches
// subscribed to a changed resource; and a NACKed version is never sent again (the NACK is logged
// and counted), the next change is.
//
// A change reaches a client make-before-break, as the xDS protocol's eventual consistency
// considerations ask: secrets, clusters and endpoints before the listeners and route
// configurations that use them, and a delta client's cluster removals after those.
//
// It serves state-of-the-world and delta streams.
package cache
