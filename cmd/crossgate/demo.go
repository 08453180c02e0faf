package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/crossgate-io/crossgate/sandbox"
	"github.com/crossgate-io/crossgate/sandbox/demo"
)

func demoCommand(f *sandboxFlags) *cobra.Command {
	var (
		requests int
		withGRPC bool
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Replay the multi-cluster walkthrough on the running sandbox, printing each outcome",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, ok := running(f.dir)
			if !ok {
				return fmt.Errorf("the sandbox is not up (%s): start it with `crossgate sandbox up`", f.dir)
			}
			bins, err := sandbox.BinDir()
			if err != nil {
				return err
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			env := &demo.Env{State: st, Kubectl: filepath.Join(bins, "kubectl"), Crossgate: self, Out: cmd.OutOrStdout(), Requests: requests, GRPC: withGRPC}
			return env.Run(cmd.Context(), nil)
		},
	}
	cmd.Flags().IntVarP(&requests, "requests", "n", 6, "requests per probe")
	cmd.Flags().BoolVar(&withGRPC, "grpc", true, "repeat behaviours 3-6 through grpc-go's own xDS client")
	return cmd
}
