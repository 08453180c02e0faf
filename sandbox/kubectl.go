package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
)

// Kubectl runs bin/kubectl against the cluster with stdin as its input and returns what it
// printed. err is non-nil when kubectl exits non-zero; stderr then says why.
func (s *Sandbox) Kubectl(ctx context.Context, c *Cluster, stdin string, args ...string) (stdout, stderr string, err error) {
	bin := filepath.Join(s.binDir, "kubectl")
	cmd := exec.CommandContext(ctx, bin, append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	} else {
		cmd.Stdin = io.MultiReader()
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), errb.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), errb.String(), nil
}
