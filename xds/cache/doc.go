// Package cache is crossgate's xDS cache: it holds, per proxy key (an identity's sidecar or
// proxyless configuration, or a gateway), the current resources as marshaled bytes, and answers
// go-control-plane's server streams.
//
// Unlike go-control-plane's SnapshotCache: each resource has its own version, derived from its
// bytes, and one marshaled copy per key, shared by every stream and every response of that key
// (a delta response's resources are handed to gRPC as those bytes: the wires of wire.go, used by
// the server's codec); a change wakes only the watches subscribed to a changed resource; and a
// NACKed version is never sent again (the NACK is logged and counted), the next change is.
//
// Keys do not share copies: two identities whose outbound configuration is the same (every
// identity in permissive mode) each hold and marshal their own. Interning by content across
// keys is issue 20's work.
//
// The cache reads xds/resources, never the builder (xds/translate): hack/layout holds it to that.
//
// A change reaches a client make-before-break, as the xDS protocol's eventual consistency
// considerations ask: secrets, clusters and endpoints before the listeners and route
// configurations that use them, and a delta client's cluster removals after those.
//
// It serves state-of-the-world and delta streams.
package cache
