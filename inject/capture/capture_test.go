package capture

import (
	"net/netip"
	"strings"
	"testing"
)

func TestSidecarCapture(t *testing.T) {
	pod := netip.MustParseAddr("10.2.2.7")
	rules := Sidecar()
	app, proxy := 0, ProxyUID
	for _, c := range []struct {
		name string
		conn Connection
		want Verdict
	}{
		{"the application's outgoing connection", Connection{Local: true, UID: app, Destination: netip.MustParseAddr("10.97.0.30"), DestinationPort: 8080}, Verdict{Redirected: true, Port: 15001}},
		{"the sidecar's own outgoing connection", Connection{Local: true, UID: proxy, Destination: netip.MustParseAddr("10.2.3.4"), DestinationPort: 8080}, Verdict{Port: 8080}},
		{"the sidecar connecting to its own pod", Connection{Local: true, UID: proxy, Destination: pod, DestinationPort: 8080}, Verdict{Redirected: true, Port: 15006}},
		{"the application connecting to its own pod", Connection{Local: true, UID: app, Destination: pod, DestinationPort: 8080}, Verdict{Port: 8080}},
		{"anything to 127.0.0.1", Connection{Local: true, UID: app, Destination: netip.MustParseAddr("127.0.0.1"), DestinationPort: 8080}, Verdict{Port: 8080}},
		{"the sidecar's inbound passthrough", Connection{Local: true, UID: proxy, Source: netip.MustParseAddr("127.0.0.6"), Destination: pod, DestinationPort: 9090}, Verdict{Port: 9090}},
		{"an incoming connection", Connection{Destination: pod, DestinationPort: 8080}, Verdict{Redirected: true, Port: 15006}},
		{"kubelet's probe on the probe port", Connection{Destination: pod, DestinationPort: 15020}, Verdict{Port: 15020}},
	} {
		c.conn.PodAddresses = []netip.Addr{pod}
		got := Evaluate(rules, c.conn)
		if got.Redirected != c.want.Redirected || got.Port != c.want.Port {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
	script := Script(rules)
	for _, line := range []string{
		"iptables -t nat -N CROSSGATE_OUT",
		"iptables -t nat -A CROSSGATE_OUT -o lo ! -d 127.0.0.1/32 -m owner --uid-owner 1337 -j REDIRECT --to-ports 15006",
		"iptables -t nat -A CROSSGATE_OUT -o lo -m owner ! --uid-owner 1337 -j RETURN",
		"iptables -t nat -A CROSSGATE_IN -p tcp --dport 15020 -j RETURN",
		"iptables -t nat -A PREROUTING -p tcp -j CROSSGATE_IN",
	} {
		if !strings.Contains(script, line+"\n") {
			t.Errorf("the script lacks %q:\n%s", line, script)
		}
	}
}
