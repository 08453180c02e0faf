package federation

import (
	"strings"
	"testing"
	"time"
)

func kubeconfig(cluster, user string) []byte {
	return []byte(`apiVersion: v1
kind: Config
current-context: c
contexts:
- name: c
  context: {cluster: k, user: u}
clusters:
- name: k
  cluster:
    server: https://127.0.0.1:6443
` + cluster + `
users:
- name: u
  user:
` + user)
}

// TestKubeconfigInlineOnly: a Cluster's kubeconfig may not make the control plane run a command or
// read its own files; inline credentials are taken.
func TestKubeconfigInlineOnly(t *testing.T) {
	ok := kubeconfig("    certificate-authority-data: \"\"", "    token: abc")
	if _, err := restConfig(ok, time.Second); err != nil {
		t.Fatalf("inline credentials refused: %v", err)
	}
	for field, cfg := range map[string][]byte{
		"users[u].user.exec":                        kubeconfig("", "    exec: {apiVersion: client.authentication.k8s.io/v1, command: touch, args: [/tmp/crossgate-pwned]}"),
		"users[u].user.tokenFile":                   kubeconfig("", "    tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token"),
		"users[u].user.client-key":                  kubeconfig("", "    client-certificate-data: \"\"\n    client-key: /etc/crossgate/tls.key"),
		"users[u].user.auth-provider":               kubeconfig("", "    auth-provider: {name: oidc}"),
		"clusters[k].cluster.certificate-authority": kubeconfig("    certificate-authority: /etc/ssl/ca.crt", "    token: abc"),
		"clusters[k].cluster.proxy-url":             kubeconfig("    proxy-url: http://10.0.0.1:3128", "    token: abc"),
	} {
		_, err := restConfig(cfg, time.Second)
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: %v, want a refusal naming it", field, err)
		}
	}
}
