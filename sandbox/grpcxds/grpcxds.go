// Package grpcxds prepares what a proxyless grpc-go workload of the sandbox needs: a workload
// certificate from the cluster's root CA written as files for grpc-go's file_watcher provider,
// and an xDS bootstrap that reaches the cluster's crossgate-controller over mTLS with it.
package grpcxds

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/crossgate-io/crossgate/sandbox"
	"github.com/crossgate-io/crossgate/xds/identity"
	"github.com/crossgate-io/crossgate/xds/translate"
)

// RootCA reads the cluster's root CA from its Secret.
func RootCA(ctx context.Context, cfg *rest.Config) (*identity.CA, error) {
	cl, err := client.New(cfg, client.Options{Scheme: sandbox.Scheme})
	if err != nil {
		return nil, err
	}
	var root corev1.Secret
	if err := cl.Get(ctx, client.ObjectKey{Namespace: sandbox.SystemNamespace, Name: sandbox.RootSecret}, &root); err != nil {
		return nil, fmt.Errorf("reading the cluster's root CA: %w", err)
	}
	return identity.LoadCA(sandbox.TrustDomain, root.Data[identity.SecretCertKey], root.Data[identity.SecretKeyKey])
}

// Files are an identity's PEM files: certificate, private key and trusted CA.
type Files struct{ Cert, Key, CA string }

// Bootstrap issues the identity ns/sa into dir and returns a bootstrap for node ns/sa (a
// proxyless node) that uses it, both to reach xdsAddr and as the certificate provider.
func Bootstrap(ca *identity.CA, dir, xdsAddr, ns, sa string) ([]byte, error) {
	cert, err := ca.Issue(ns, sa, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := cert.WriteFiles(dir); err != nil {
		return nil, err
	}
	return BootstrapFor(xdsAddr, ns, sa, Files{
		Cert: filepath.Join(dir, identity.CertFile), Key: filepath.Join(dir, identity.KeyFile), CA: filepath.Join(dir, identity.CAFile),
	})
}

// BootstrapFor is a bootstrap for node ns/sa (a proxyless node) whose identity is in files:
// grpc-go presents it to reach xdsAddr, and its file_watcher provider reads it again as it is
// renewed.
func BootstrapFor(xdsAddr, ns, sa string, f Files) ([]byte, error) {
	files := map[string]string{"certificate_file": f.Cert, "private_key_file": f.Key, "ca_certificate_file": f.CA}
	provider := map[string]any{"refresh_interval": "60s"}
	for k, v := range files {
		provider[k] = v
	}
	return json.Marshal(map[string]any{
		"xds_servers": []any{map[string]any{
			"server_uri":      xdsAddr,
			"channel_creds":   []any{map[string]any{"type": "tls", "config": files}},
			"server_features": []string{"xds_v3"},
		}},
		"node": map[string]any{"id": ns + "/" + sa},
		"certificate_providers": map[string]any{
			translate.CertificateProviderInstance: map[string]any{"plugin_name": "file_watcher", "config": provider},
		},
		"server_listener_resource_name_template": translate.ServerListenerTemplate,
	})
}
