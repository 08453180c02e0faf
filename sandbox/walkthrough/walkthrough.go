// Package walkthrough holds the manifests of the multi-cluster walkthrough
// (shared/seed/multi-cluster-walkthrough.txt) as files, with the YAML indentation that the
// published text lost restored and nothing else changed, and renders them the way the
// walkthrough's shell loops do. Integration tests and the sandbox demo apply them with kubectl.
package walkthrough

import (
	"embed"
	"fmt"
	"regexp"
	"strings"
)

// Manifests are the walkthrough's manifests, by file name under manifests/.
//
//go:embed manifests
var Manifests embed.FS

// kubeconfigLine is the walkthrough's command substitution that pastes a member's kubeconfig,
// indented, into its Cluster object.
const kubeconfigLine = "`k3d kubeconfig get ${CLUSTER_NAME} | sed 's|^| |g' | sed \"s|0.0.0.0|$HOST_IP|g\"`"

var varRef = regexp.MustCompile(`\$\{([A-Z_]+)\}`)

// Render returns manifest name with every ${VAR} replaced from vars, as the shell would. In
// cluster.yaml the kubeconfig command substitution becomes kubeconfig, indented under its key.
// A variable that vars does not define is an error, not an empty string.
func Render(name string, vars map[string]string, kubeconfig string) (string, error) {
	b, err := Manifests.ReadFile("manifests/" + name)
	if err != nil {
		return "", err
	}
	text := string(b)
	if strings.Contains(text, kubeconfigLine) {
		var indented strings.Builder
		for _, l := range strings.Split(strings.TrimRight(kubeconfig, "\n"), "\n") {
			indented.WriteString("    " + l + "\n")
		}
		text = strings.Replace(text, kubeconfigLine+"\n", indented.String(), 1)
	}
	var missing []string
	text = varRef.ReplaceAllStringFunc(text, func(ref string) string {
		v, ok := vars[ref[2:len(ref)-1]]
		if !ok {
			missing = append(missing, ref)
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("rendering %s: no value for %s", name, strings.Join(missing, ", "))
	}
	return text, nil
}
