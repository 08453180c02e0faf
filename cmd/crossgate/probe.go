package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/crossgate-io/crossgate/sandbox/probe"
)

func probeCommand() *cobra.Command {
	var (
		dir, cluster, as string
		n                int
	)
	cmd := &cobra.Command{
		Use:   "probe URL",
		Short: "Send requests as a workload of a sandbox cluster would, and print which cluster answered each",
		Long: `Send requests as curl would from a workload of a sandbox cluster, through that workload's
stand-in sidecar (which follows crossgate's xDS configuration for its identity), and print which
cluster answered each request, then a summary.`,
		Example: `  crossgate probe --cluster cluster-2 --as curl/curl -n 30 http://httpbin.httpbin:8080/`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runProbe(cmd, dir, cluster, as, n, args[0], cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&dir, "dir", defaultSandboxDir(), "the sandbox's directory ($CROSSGATE_SANDBOX_DIR)")
	cmd.Flags().StringVar(&cluster, "cluster", "", "the caller's sandbox cluster")
	cmd.Flags().StringVar(&as, "as", "", "the caller's identity, namespace/serviceaccount (curl/curl)")
	cmd.Flags().IntVarP(&n, "requests", "n", 10, "how many requests to send")
	_ = cmd.MarkFlagRequired("cluster")
	_ = cmd.MarkFlagRequired("as")
	return cmd
}

func runProbe(cmd *cobra.Command, dir, cluster, as string, n int, target string, out io.Writer) error {
	ns, sa, ok := strings.Cut(as, "/")
	if !ok || ns == "" || sa == "" {
		return fmt.Errorf("--as %q: want namespace/serviceaccount, for example curl/curl", as)
	}
	if n < 1 {
		return fmt.Errorf("-n %d: want at least 1", n)
	}
	st, up := running(dir)
	if !up {
		return fmt.Errorf("the sandbox is not up (%s): start it with `crossgate sandbox up`", dir)
	}
	var names []string
	for _, c := range st.Clusters {
		names = append(names, c.Name)
		if c.Name != cluster {
			continue
		}
		cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
		if err != nil {
			return err
		}
		caller, err := probe.NewCaller(cmd.Context(), probe.Options{Config: cfg, XDS: c.XDS, Namespace: ns, ServiceAccount: sa})
		if err != nil {
			return err
		}
		defer caller.Close()
		var answers []probe.Answer
		for range n {
			a := caller.Get(cmd.Context(), target)
			answers = append(answers, a)
			fmt.Fprintln(out, a)
		}
		_, summary := probe.Summary(answers)
		fmt.Fprintf(out, "%d requests from %s in %s: %s\n", n, as, cluster, summary)
		return nil
	}
	return fmt.Errorf("--cluster %q: the sandbox has %s", cluster, strings.Join(names, ", "))
}
