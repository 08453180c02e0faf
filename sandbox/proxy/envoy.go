package proxy

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/crossgate-io/crossgate/dataplane"
	"github.com/crossgate-io/crossgate/wellknown"
	"github.com/crossgate-io/crossgate/xds/identity"
)

// Environment of an Envoy container as the sandbox node runs it (package kubelet's
// PodAddressEnv and MountsEnv; repeated here so that the proxy does not import the node).
const (
	podAddressEnv = "SANDBOX_POD_ADDRESS"
	mountsEnv     = "SANDBOX_MOUNTS"
)

// RunEnvoy is the stand-in for the Envoy container of a crossgate gateway Deployment, as the
// sandbox node runs it: it takes Envoy's command line (-c bootstrap, --service-node), reads the
// bootstrap the controller rendered into the pod's ConfigMap volume (the xDS server's address,
// and the file-based SDS resources naming the identity Secret's files), subscribes with that
// identity, and binds each listener its configuration holds on the pod's address, following
// the configuration as listeners come and go. It runs until ctx ends.
func RunEnvoy(ctx context.Context, args []string, getenv func(string) string, log *slog.Logger) error {
	fs := flag.NewFlagSet("envoy", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	bootstrapPath := fs.String("c", "", "bootstrap file")
	node := fs.String("service-node", "", "node ID")
	fs.String("service-cluster", "", "")
	fs.String("log-level", "info", "")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("the Envoy command line: %w", err)
	}
	if *bootstrapPath == "" || *node == "" {
		return errors.New("the Envoy command line needs -c and --service-node")
	}
	id, err := wellknown.ParseNodeID(*node)
	if err != nil || id.Kind != wellknown.KindGateway {
		return fmt.Errorf("--service-node %q: the stand-in runs gateways only (gateway~namespace/name)", *node)
	}
	podAddr := getenv(podAddressEnv)
	if net.ParseIP(podAddr) == nil {
		return fmt.Errorf("%s %q: the sandbox node gives the pod's address", podAddressEnv, podAddr)
	}
	xdsAddr, cert, err := ReadBootstrap(*bootstrapPath, getenv)
	if err != nil {
		return err
	}
	p, err := Start(ctx, Options{Role: Gateway, Log: log, XDS: XDSOptions{Address: xdsAddr, Node: *node, Certificate: cert}})
	if err != nil {
		return err
	}
	srv := p.Server()
	go func() { <-ctx.Done(); _ = srv.Close() }()
	open := map[uint32]net.Listener{}
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		want := p.ListenerPorts()
		for _, port := range want {
			if open[port] != nil {
				continue
			}
			ln, err := net.Listen("tcp", net.JoinHostPort(podAddr, strconv.Itoa(int(port))))
			if err != nil {
				log.Warn("binding a listener", "port", port, "error", err)
				continue
			}
			tln, err := p.ListenerFor(ln, port)
			if err != nil {
				_ = ln.Close()
				return err
			}
			open[port] = ln
			go func() { _ = srv.Serve(tln) }()
		}
		for port, ln := range open {
			if !slices.Contains(want, port) {
				_ = ln.Close()
				delete(open, port)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// ReadBootstrap reads, as Envoy does, the bootstrap at path (a container path, through the
// mount table the sandbox node gives in the environment): the xDS server's address, and the
// certificate the xDS connection presents, read through the bootstrap's file-based SDS
// resources from the mounted identity Secret.
func ReadBootstrap(path string, getenv func(string) string) (string, *identity.Certificate, error) {
	fsys := mounts(getenv(mountsEnv))
	b, err := os.ReadFile(fsys.path(path))
	if err != nil {
		return "", nil, err
	}
	boot, err := dataplane.ParseBootstrap(b)
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", path, err)
	}
	xdsAddr, tlsCtx, err := xdsCluster(boot)
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", path, err)
	}
	cert, err := fsys.certificate(tlsCtx)
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", path, err)
	}
	return xdsAddr, cert, nil
}

// HostPath is where a container path is on the node, through the mount table the sandbox node
// gives in the environment.
func HostPath(path string, getenv func(string) string) string {
	return mounts(getenv(mountsEnv)).path(path)
}

// xdsCluster finds the bootstrap's xDS server (its ADS cluster's one endpoint) and the TLS it
// is reached with.
func xdsCluster(b *bootstrapv3.Bootstrap) (string, *tlsv3.UpstreamTlsContext, error) {
	grpcs := b.GetDynamicResources().GetAdsConfig().GetGrpcServices()
	if len(grpcs) != 1 {
		return "", nil, errors.New("no ADS gRPC service")
	}
	name := grpcs[0].GetEnvoyGrpc().GetClusterName()
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() != name {
			continue
		}
		eps := c.GetLoadAssignment().GetEndpoints()
		if len(eps) != 1 || len(eps[0].GetLbEndpoints()) != 1 {
			return "", nil, fmt.Errorf("cluster %s: not one endpoint", name)
		}
		sa := eps[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
		tc := &tlsv3.UpstreamTlsContext{}
		if err := c.GetTransportSocket().GetTypedConfig().UnmarshalTo(tc); err != nil {
			return "", nil, fmt.Errorf("cluster %s: %w", name, err)
		}
		return net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue()))), tc, nil
	}
	return "", nil, fmt.Errorf("no cluster %s", name)
}

// mountTable maps a container's paths to the node's directories (the node has no mount
// namespace): "mountPath=dir;...".
type mountTable [][2]string

func mounts(env string) mountTable {
	var t mountTable
	for m := range strings.SplitSeq(env, ";") {
		if at, dir, ok := strings.Cut(m, "="); ok {
			t = append(t, [2]string{filepath.Clean(at), dir})
		}
	}
	return t
}

// path is where a container path is on the node.
func (t mountTable) path(p string) string {
	p = filepath.Clean(p)
	for _, m := range t {
		if rest, ok := strings.CutPrefix(p, m[0]); ok && (rest == "" || rest[0] == '/') {
			return m[1] + rest
		}
	}
	return p
}

// certificate reads the client certificate and trusted CA through the file-based SDS
// resources the TLS context names, as Envoy does.
func (t mountTable) certificate(tc *tlsv3.UpstreamTlsContext) (*identity.Certificate, error) {
	common := tc.GetCommonTlsContext()
	certs := common.GetTlsCertificateSdsSecretConfigs()
	ca := common.GetCombinedValidationContext().GetValidationContextSdsSecretConfig()
	if len(certs) != 1 || ca == nil {
		return nil, errors.New("the xDS cluster's TLS names no SDS certificate and validation context")
	}
	cs, err := t.sds(certs[0].GetSdsConfig())
	if err != nil {
		return nil, err
	}
	vs, err := t.sds(ca.GetSdsConfig())
	if err != nil {
		return nil, err
	}
	var out identity.Certificate
	for _, f := range []struct {
		src *corev3.DataSource
		dst *[]byte
	}{
		{cs.GetTlsCertificate().GetCertificateChain(), &out.CertPEM},
		{cs.GetTlsCertificate().GetPrivateKey(), &out.KeyPEM},
		{vs.GetValidationContext().GetTrustedCa(), &out.RootPEM},
	} {
		if *f.dst, err = os.ReadFile(t.path(f.src.GetFilename())); err != nil {
			return nil, err
		}
	}
	return &out, nil
}

// sds reads a file-based SDS resource (a DiscoveryResponse holding one Secret).
func (t mountTable) sds(src *corev3.ConfigSource) (*tlsv3.Secret, error) {
	path := src.GetPathConfigSource().GetPath()
	b, err := os.ReadFile(t.path(path))
	if err != nil {
		return nil, err
	}
	var r discoveryv3.DiscoveryResponse
	if err := protojson.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(r.GetResources()) != 1 {
		return nil, fmt.Errorf("%s: not one resource", path)
	}
	s := &tlsv3.Secret{}
	if err := r.GetResources()[0].UnmarshalTo(s); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}
