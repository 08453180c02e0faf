// Package capture is the traffic capture the sidecar injector installs in a pod: the iptables
// rules of its init container, as data. The injector renders them into the init container's
// script; xds/simulate evaluates them to say where a connection of the pod goes (which of the
// sidecar's listeners, or straight to its destination). One definition serves both, so what the
// tests model is what the pod runs.
//
// It imports the standard library and the IR's well-known ports only.
package capture

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/crossgate-io/crossgate/translator/ir"
)

// ProxyUID is the user the sidecar runs as; its own connections are not captured. It is not 101,
// the user of the official nginx images (and of Envoy's): an application running as the proxy's
// user would escape capture (Istio uses 1337 for the same reason).
const ProxyUID = 1337

// Sidecar are the rules the injector installs in every pod it gives a sidecar.
func Sidecar() []Rule {
	return Rules(Options{
		ProxyUID:            ProxyUID,
		OutboundPort:        ir.OutboundCapturePort,
		InboundPort:         ir.InboundCapturePort,
		ExcludeInboundPorts: []int{ir.AdminPort, ir.ProbePort},
		PassthroughSource:   netip.MustParseAddr(ir.InboundPassthroughSource),
	})
}

// Chains of the nat table the rules use.
const (
	Output      = "OUTPUT"     // connections a process of the pod opens
	Prerouting  = "PREROUTING" // connections arriving at the pod
	OutChain    = "CROSSGATE_OUT"
	InChain     = "CROSSGATE_IN"
	Return      = "RETURN"
	Redirect    = "REDIRECT"
	LoopbackDev = "lo"
)

// Rule is one rule of the nat table: its matches (empty: any) and its target.
type Rule struct {
	Chain string
	// TCP restricts the rule to TCP (-p tcp).
	TCP bool
	// Source and Destination are prefixes (-s, -d); NotDestination negates Destination.
	Source, Destination netip.Prefix
	NotDestination      bool
	// OutInterface is the interface a connection leaves by (-o), for locally generated ones.
	OutInterface string
	// OwnerUID, when set, matches the UID of the process that opened the connection (-m owner
	// --uid-owner); NotOwner negates it.
	OwnerUID *int
	NotOwner bool
	// DestinationPort (--dport), 0 for any.
	DestinationPort int
	// Jump is the target: RETURN, REDIRECT, or a chain.
	Jump string
	// ToPort is REDIRECT's --to-ports.
	ToPort int
}

// Options are the ports and the user that capture is built around.
type Options struct {
	// ProxyUID is the user the sidecar runs as: its own connections are not captured.
	ProxyUID int
	// OutboundPort and InboundPort are the sidecar's capture listeners.
	OutboundPort, InboundPort int
	// ExcludeInboundPorts reach the pod's processes directly (the sidecar's admin and probe
	// ports).
	ExcludeInboundPorts []int
	// PassthroughSource is the address the sidecar connects from when it passes an incoming
	// connection through to the application: such connections are not captured again.
	PassthroughSource netip.Addr
}

// Rules are the capture rules, in the order they are installed:
//
//   - outgoing TCP goes to the outbound capture port, except the sidecar's own connections and
//     those to 127.0.0.1;
//   - the sidecar's connections to the pod's own address (it picked its own pod as an endpoint
//     of a Service the application called) go to the inbound capture port, so that the
//     application gets them as any other caller's, through the inbound listener; the
//     application's own connections to its pod's address are left alone (Istio's
//     istio-iptables does the same, "appN => Envoy (client) => Envoy (server) => appN");
//   - incoming TCP goes to the inbound capture port, except the excluded ports.
//
// Locally generated packets to the pod's own address leave by the loopback interface and never
// traverse PREROUTING (the nat decision is taken once, in OUTPUT), hence the "lo" rules.
//
// Capture is IPv4 only: no ip6tables rules are installed, so a pod's IPv6 connections bypass the
// sidecar (finding K11 of the Envoy review). Dual-stack clusters would need the same rules for
// ip6tables and bracketed IPv6 domains in the route configurations; crossgate does not support
// IPv6 yet, and says so in README.
func Rules(o Options) []Rule {
	uid := o.ProxyUID
	loopback := netip.MustParsePrefix("127.0.0.1/32")
	out := []Rule{
		{Chain: OutChain, Source: netip.PrefixFrom(o.PassthroughSource, o.PassthroughSource.BitLen()), OutInterface: LoopbackDev, Jump: Return},
		{Chain: OutChain, OutInterface: LoopbackDev, Destination: loopback, NotDestination: true, OwnerUID: &uid, Jump: Redirect, ToPort: o.InboundPort},
		{Chain: OutChain, OutInterface: LoopbackDev, OwnerUID: &uid, NotOwner: true, Jump: Return},
		{Chain: OutChain, OwnerUID: &uid, Jump: Return},
		{Chain: OutChain, Destination: loopback, Jump: Return},
		{Chain: OutChain, TCP: true, Jump: Redirect, ToPort: o.OutboundPort},
		{Chain: Output, TCP: true, Jump: OutChain},
	}
	for _, p := range o.ExcludeInboundPorts {
		out = append(out, Rule{Chain: InChain, TCP: true, DestinationPort: p, Jump: Return})
	}
	return append(out,
		Rule{Chain: InChain, TCP: true, Jump: Redirect, ToPort: o.InboundPort},
		Rule{Chain: Prerouting, TCP: true, Jump: InChain},
	)
}

// Script is the shell script that installs rules with iptables.
func Script(rules []Rule) string {
	var b strings.Builder
	b.WriteString("set -e\n")
	created := map[string]bool{Output: true, Prerouting: true}
	for _, r := range rules {
		if !created[r.Chain] {
			created[r.Chain] = true
			b.WriteString("iptables -t nat -N " + r.Chain + "\n")
		}
		b.WriteString("iptables -t nat " + strings.Join(r.Args(), " ") + "\n")
	}
	return b.String()
}

// Args are the rule's iptables arguments (-A CHAIN ...).
func (r Rule) Args() []string {
	a := []string{"-A", r.Chain}
	if r.TCP {
		a = append(a, "-p", "tcp")
	}
	if r.Source.IsValid() {
		a = append(a, "-s", r.Source.String())
	}
	if r.OutInterface != "" {
		a = append(a, "-o", r.OutInterface)
	}
	if r.Destination.IsValid() {
		if r.NotDestination {
			a = append(a, "!")
		}
		a = append(a, "-d", r.Destination.String())
	}
	if r.DestinationPort != 0 {
		a = append(a, "--dport", strconv.Itoa(r.DestinationPort))
	}
	if r.OwnerUID != nil {
		a = append(a, "-m", "owner")
		if r.NotOwner {
			a = append(a, "!")
		}
		a = append(a, "--uid-owner", strconv.Itoa(*r.OwnerUID))
	}
	a = append(a, "-j", r.Jump)
	if r.Jump == Redirect {
		a = append(a, "--to-ports", strconv.Itoa(r.ToPort))
	}
	return a
}

// Connection is a TCP connection as the nat table sees its first packet.
type Connection struct {
	// Local is set for a connection a process of the pod opens (OUTPUT), unset for one arriving
	// at the pod (PREROUTING).
	Local bool
	// UID of the process that opens it (Local only).
	UID int
	// Source, when known, and the destination the connection was opened to.
	Source          netip.Addr
	Destination     netip.Addr
	DestinationPort int
	// PodAddresses are the pod's own addresses: a local connection to one of them, or to
	// 127.0.0.0/8, leaves by the loopback interface.
	PodAddresses []netip.Addr
}

// Verdict is where the connection goes.
type Verdict struct {
	// Redirected is set when a REDIRECT took the connection: it reaches the pod on Port, and
	// its original destination stays readable (SO_ORIGINAL_DST). Otherwise it goes to its
	// destination unchanged.
	Redirected bool
	Port       int
	// Rule is the index of the rule that decided, -1 when none did (the chain's policy).
	Rule int
}

// Evaluate runs a connection through the rules as the kernel's nat table does: the built-in
// chain of its direction, rules in order, a jump to a chain and back on RETURN or at its end, the
// first REDIRECT final (iptables(8), iptables-extensions(8): REDIRECT, owner).
func Evaluate(rules []Rule, c Connection) Verdict {
	chain := Prerouting
	if c.Local {
		chain = Output
	}
	if v, done := walk(rules, chain, c, 0); done {
		return v
	}
	return Verdict{Port: c.DestinationPort, Rule: -1}
}

func walk(rules []Rule, chain string, c Connection, depth int) (Verdict, bool) {
	if depth > 8 {
		return Verdict{}, false
	}
	for i, r := range rules {
		if r.Chain != chain || !r.matches(c) {
			continue
		}
		switch r.Jump {
		case Return:
			return Verdict{Port: c.DestinationPort, Rule: i}, false
		case Redirect:
			return Verdict{Redirected: true, Port: r.ToPort, Rule: i}, true
		default:
			if v, done := walk(rules, r.Jump, c, depth+1); done {
				return v, true
			}
		}
	}
	return Verdict{}, false
}

func (r Rule) matches(c Connection) bool {
	// Every connection modelled is TCP.
	if r.Source.IsValid() && (!c.Source.IsValid() || !r.Source.Contains(c.Source)) {
		return false
	}
	if r.Destination.IsValid() && r.Destination.Contains(c.Destination) == r.NotDestination {
		return false
	}
	if r.DestinationPort != 0 && r.DestinationPort != c.DestinationPort {
		return false
	}
	if r.OutInterface != "" {
		if !c.Local || (r.OutInterface == LoopbackDev) != loopbackOut(c) {
			return false
		}
	}
	if r.OwnerUID != nil {
		// The owner match applies to locally generated packets only.
		if !c.Local || (c.UID == *r.OwnerUID) == r.NotOwner {
			return false
		}
	}
	return true
}

func loopbackOut(c Connection) bool {
	if c.Destination.IsLoopback() {
		return true
	}
	for _, a := range c.PodAddresses {
		if a == c.Destination {
			return true
		}
	}
	return false
}
