package server

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/crossgate-io/crossgate/xds/cache"
)

// ConfigDump is the answer of the config dump endpoint: what the server serves to one node,
// and what each of its open subscriptions was last sent.
type ConfigDump struct {
	Node string `json:"node"`
	Key  string `json:"key"`
	// Known is false when nothing was ever published for the node's key.
	Known     bool               `json:"known"`
	Resources []ConfigDumpEntry  `json:"resources"`
	Streams   []ConfigDumpStream `json:"streams"`
}

// ConfigDumpEntry is one resource; Resource is its JSON (absent for secrets).
type ConfigDumpEntry struct {
	Type     string          `json:"type"`
	Name     string          `json:"name"`
	Version  string          `json:"version"`
	Resource json.RawMessage `json:"resource,omitempty"`
}

// ConfigDumpStream is one open subscription.
type ConfigDumpStream struct {
	Node  string            `json:"node"`
	Type  string            `json:"type"`
	Delta bool              `json:"delta"`
	Held  map[string]string `json:"held"`
}

// ConfigDumpPath serves ConfigDump for ?node=<node ID>. It shows every identity's
// configuration, so it is served on a loopback address only (DefaultDebugAddress, see
// CheckLoopback), never beside the metrics: reaching it takes a port-forward into the
// controller's pod, which RBAC grants to the cluster's administrators (pods/portforward).
const ConfigDumpPath = "/debug/config"

// DefaultDebugAddress is where ConfigDumpPath is served unless told otherwise.
const DefaultDebugAddress = "127.0.0.1:9091"

// CheckLoopback refuses an address whose host is not a loopback IP or localhost.
func CheckLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%q is not a loopback address: %s shows every identity's configuration, so it is served on 127.0.0.1, ::1 or localhost only", addr, ConfigDumpPath)
}

// ConfigDumpHandler serves what c holds for a node ID, resolved to its key by resolve. Private
// keys are never included: secrets are listed by name and version only.
func ConfigDumpHandler(c *cache.Cache, resolve cache.Resolver) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("node")
		if id == "" {
			http.Error(w, "query parameter node: want a node ID, such as sidecar~namespace/serviceaccount\n", http.StatusBadRequest)
			return
		}
		key, err := resolve(r.Context(), &corev3.Node{Id: id})
		if err != nil {
			http.Error(w, "node "+id+": "+err.Error()+"\n", http.StatusBadRequest)
			return
		}
		res, streams, known := c.Dump(key)
		out := ConfigDump{Node: id, Key: key, Known: known, Resources: []ConfigDumpEntry{}, Streams: []ConfigDumpStream{}}
		for _, x := range res {
			e := ConfigDumpEntry{Type: x.Type, Name: x.Name, Version: x.Version}
			if x.Any != nil {
				b, err := protojson.Marshal(x.Any)
				if err != nil {
					http.Error(w, "encoding "+x.Name+": "+err.Error()+"\n", http.StatusInternalServerError)
					return
				}
				e.Resource = b
			}
			out.Resources = append(out.Resources, e)
		}
		for _, s := range streams {
			out.Streams = append(out.Streams, ConfigDumpStream{Node: s.Node, Type: s.Type, Delta: s.Delta, Held: s.Held})
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
	})
}
