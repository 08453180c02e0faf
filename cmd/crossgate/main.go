// Command crossgate is crossgate's command line: today the local sandbox (a cluster set of real
// API servers and crossgate-controller processes on one machine).
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	root := &cobra.Command{
		Use:           "crossgate",
		Short:         "crossgate: multi-cluster services through one gateway per cluster",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(installCommand(), uninstallCommand(), statusCommand(), namespaceCommand(), clusterCommand(), proxyCommand(), sandboxCommand(), probeCommand())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "crossgate:", err)
		os.Exit(1)
	}
}
