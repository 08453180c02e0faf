package translate

import (
	"bytes"
	"testing"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
)

// The server name appended to the shared bytes of an upstream TLS context gives exactly the
// bytes a marshal of the context with that sni gives, and leaves the shared bytes alone.
func TestSNIAppendedAsMarshaled(t *testing.T) {
	for _, src := range []certSource{viaSDS, viaProvider} {
		peers := Peers{exact: []string{"httpbin/httpbin"}}
		plain := upstreamTLS(src, "example.org", peers, "", alwaysHTTP2).GetTypedConfig()
		before := bytes.Clone(plain.Value)
		got := upstreamTLS(src, "example.org", peers, "8080.httpbin.httpbin.svc.clusterset.local", alwaysHTTP2).GetTypedConfig()
		common := commonTLS(src, "example.org", peers.matchers("example.org"))
		if src == viaSDS {
			common.AlpnProtocols = meshALPN(alwaysHTTP2)
		}
		want, err := proto.MarshalOptions{Deterministic: true}.Marshal(&tlsv3.UpstreamTlsContext{
			CommonTlsContext: common,
			Sni:              "8080.httpbin.httpbin.svc.clusterset.local",
		})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Value, want) {
			t.Errorf("source %d: appended sni gives other bytes than a marshal", src)
		}
		ctx := &tlsv3.UpstreamTlsContext{}
		if err := got.UnmarshalTo(ctx); err != nil || ctx.GetSni() != "8080.httpbin.httpbin.svc.clusterset.local" || ctx.GetCommonTlsContext() == nil {
			t.Errorf("source %d: unmarshaled %v, %v", src, ctx, err)
		}
		if again := upstreamTLS(src, "example.org", peers, "", alwaysHTTP2).GetTypedConfig(); !bytes.Equal(again.Value, before) {
			t.Errorf("source %d: the shared bytes changed", src)
		}
	}
}
