package main

import (
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/crossgate-io/crossgate/sandbox/probe"
)

func probeCommand() *cobra.Command {
	var (
		dir, cluster, as string
		n                int
		useGRPC          bool
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
			return runProbe(cmd, dir, cluster, as, n, useGRPC, args[0], cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&dir, "dir", defaultSandboxDir(), "the sandbox's directory ($CROSSGATE_SANDBOX_DIR)")
	cmd.Flags().StringVar(&cluster, "cluster", "", "the caller's sandbox cluster")
	cmd.Flags().StringVar(&as, "as", "", "the caller's identity, namespace/serviceaccount (curl/curl)")
	cmd.Flags().IntVarP(&n, "requests", "n", 10, "how many requests to send")
	cmd.Flags().BoolVar(&useGRPC, "grpc", false, "call grpc.testing.TestService/UnaryCall through grpc-go's own xDS client (xds:///host:port) instead of the stand-in sidecar")
	_ = cmd.MarkFlagRequired("cluster")
	_ = cmd.MarkFlagRequired("as")
	return cmd
}

func runProbe(cmd *cobra.Command, dir, cluster, as string, n int, useGRPC bool, target string, out io.Writer) error {
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
		o := probe.Options{Config: cfg, XDS: c.XDS, Namespace: ns, ServiceAccount: sa}
		var call func() probe.Answer
		if useGRPC {
			u, err := url.Parse(target)
			if err != nil || u.Host == "" {
				return fmt.Errorf("%q: want a URL such as http://httpbin.httpbin:8080/", target)
			}
			certs, err := os.MkdirTemp("", "crossgate-probe-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(certs)
			caller, err := probe.NewGRPCCaller(cmd.Context(), o, certs, u.Host)
			if err != nil {
				return err
			}
			defer caller.Close()
			call = func() probe.Answer { return caller.Call(cmd.Context()) }
		} else {
			caller, err := probe.NewCaller(cmd.Context(), o)
			if err != nil {
				return err
			}
			defer caller.Close()
			call = func() probe.Answer { return caller.Get(cmd.Context(), target) }
		}
		var answers []probe.Answer
		for range n {
			a := call()
			answers = append(answers, a)
			fmt.Fprintln(out, a)
		}
		_, summary := probe.Summary(answers)
		fmt.Fprintf(out, "%d requests from %s in %s: %s\n", n, as, cluster, summary)
		return nil
	}
	return fmt.Errorf("--cluster %q: the sandbox has %s", cluster, strings.Join(names, ", "))
}
