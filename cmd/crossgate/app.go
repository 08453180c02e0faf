package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/crossgate-io/crossgate/sandbox/app"
)

func appCommand(f *sandboxFlags) *cobra.Command {
	var (
		o       app.Options
		labels  []string
		cluster string
		noMesh  bool
	)
	cmd := &cobra.Command{
		Use:   "app",
		Short: "Run a workload in a sandbox cluster: one pod of a Deployment, answering \"Hi, I am from <cluster>\"",
		Long: `Run a workload process standing in for one pod: it registers a Pod with the given labels and
ServiceAccount at a loopback address 127.<cluster index>.0.x of its cluster, so the Services that
select those labels reach it, and answers every request with its message: HTTP, and gRPC
(grpc.testing.TestService). By default the pod has a sidecar (a stand-in for Envoy that applies the
sidecar's inbound configuration: mTLS, RBAC); with --proxyless it is a proxyless gRPC server
(grpc-go with xDS, gRPC only); with --no-mesh it runs outside the mesh. It runs until interrupted,
and then deletes its Pod.`,
		Example: `  crossgate sandbox app --cluster cluster-1 -n httpbin --name httpbin -l app=pipy --port 8080`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Labels = map[string]string{}
			for _, l := range labels {
				k, v, ok := strings.Cut(l, "=")
				if !ok || k == "" {
					return fmt.Errorf("--label %q: want key=value", l)
				}
				o.Labels[k] = v
			}
			if noMesh && o.Proxyless {
				return fmt.Errorf("--proxyless and --no-mesh exclude each other")
			}
			return runApp(cmd.Context(), f, cluster, o, !noMesh, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&cluster, "cluster", "", "the sandbox cluster to run in (cluster-1, cluster-2, ...)")
	cmd.Flags().StringVarP(&o.Namespace, "namespace", "n", "default", "namespace of the pod")
	cmd.Flags().StringVar(&o.Name, "name", "app", "name of the workload (the Pod is <name>-<x>)")
	cmd.Flags().StringVar(&o.ServiceAccount, "service-account", "default", "ServiceAccount of the pod: its identity in the mesh")
	cmd.Flags().StringSliceVarP(&labels, "label", "l", nil, "labels of the pod, key=value (Services select on them)")
	cmd.Flags().IntVar(&o.Port, "port", 8080, "HTTP port (the Service's targetPort)")
	cmd.Flags().StringVar(&o.Message, "message", "", `the answer (default "Hi, I am from <cluster> and controlled by mesh!")`)
	cmd.Flags().BoolVar(&o.Proxyless, "proxyless", false, "serve gRPC only, as an xDS-enabled grpc-go server without a sidecar")
	cmd.Flags().BoolVar(&noMesh, "no-mesh", false, "run outside the mesh: no sidecar, plaintext only")
	_ = cmd.MarkFlagRequired("cluster")
	return cmd
}

func runApp(ctx context.Context, f *sandboxFlags, cluster string, o app.Options, inMesh bool, out io.Writer) error {
	st, ok := running(f.dir)
	if !ok {
		return fmt.Errorf("the sandbox is not up (%s): start it with `crossgate sandbox up`", f.dir)
	}
	var names []string
	for i, c := range st.Clusters {
		names = append(names, c.Name)
		if c.Name == cluster {
			cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
			if err != nil {
				return err
			}
			o.Cluster, o.ClusterIndex, o.Config = c.Name, i, cfg
			if inMesh {
				o.XDS = c.XDS
				o.Dir = filepath.Join(f.dir, "apps", fmt.Sprintf("%s-%s-%s-%d", c.Name, o.Namespace, o.Name, os.Getpid()))
			}
		}
	}
	if o.Config == nil {
		return fmt.Errorf("--cluster %q: the sandbox has %s", cluster, strings.Join(names, ", "))
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, err := app.Start(ctx, o)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%s: pod %s/%s (ServiceAccount %s, %s) answering at %s\n", o.Cluster, o.Namespace, a.Pod.Name, o.ServiceAccount, mode(o, inMesh), a.Addr)
	select {
	case <-ctx.Done():
	case <-a.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return a.Stop(sctx)
}

func mode(o app.Options, inMesh bool) string {
	switch {
	case o.Proxyless:
		return "proxyless"
	case inMesh:
		return "with a sidecar"
	}
	return "without the mesh"
}
