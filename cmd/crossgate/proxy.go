package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/crossgate-io/crossgate/wellknown"
	"github.com/crossgate-io/crossgate/xds/server"
)

// controllerGet fetches path (with query) from the controller's HTTP endpoint: from base when
// given, else through the API server's proxy to the controller's Service.
func controllerGet(ctx context.Context, kube kubernetes.Interface, namespace, base, path string, query map[string]string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if base == "" {
		return kube.CoreV1().Services(namespace).ProxyGet("http", "crossgate-controller", "http-metrics", path, query).DoRaw(ctx)
	}
	return httpGet(ctx, base, path, query)
}

// nodeID is the xDS node a pod's proxy presents: the Envoy container's --service-node (a
// sidecar, which is a native sidecar among the init containers, or a gateway), else the pod's
// identity as a proxyless gRPC workload.
func nodeID(p *corev1.Pod) string {
	for _, c := range append(slices.Clone(p.Spec.InitContainers), p.Spec.Containers...) {
		for i, a := range c.Args {
			if a == "--service-node" && i+1 < len(c.Args) {
				return c.Args[i+1]
			}
			if v, ok := strings.CutPrefix(a, "--service-node="); ok {
				return v
			}
		}
	}
	sa := p.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	return wellknown.Proxyless(p.Namespace, sa).String()
}

func proxyCommand() *cobra.Command {
	k := &kubeFlags{}
	cmd := &cobra.Command{Use: "proxy", Short: "Inspect the proxies of the mesh"}
	k.add(cmd)
	var podNS, ctrlNS, base, output, node string
	config := &cobra.Command{
		Use:   "config POD",
		Short: "Show the xDS configuration the controller serves to a pod's proxy, and what its open streams hold",
		Long: `Show the xDS configuration of a pod's proxy: every listener, route, cluster, endpoint and
secret the controller serves to the pod's node (its Envoy sidecar's --service-node, or its
identity as a proxyless gRPC workload), and, for each open stream of that node to the replica
that answers, the versions it was last sent and acknowledged by asking for more. Private keys
are never shown. -o json gives the resources themselves.`,
		Example: `  crossgate proxy config curl-7d9c5 -n curl
  crossgate proxy config curl-7d9c5 -n curl -o json | jq '.resources[] | select(.type | endswith("Cluster"))'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "summary" && output != "json" {
				return fmt.Errorf("--output %q: want summary or json", output)
			}
			cfg, err := k.config("")
			if err != nil {
				return err
			}
			kube, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				return err
			}
			id := node
			if id == "" {
				c, err := client.New(cfg, client.Options{})
				if err != nil {
					return err
				}
				var p corev1.Pod
				if err := c.Get(cmd.Context(), client.ObjectKey{Namespace: podNS, Name: args[0]}, &p); err != nil {
					return fmt.Errorf("pod %s/%s: %w (kubectl get pods -n %s lists them)", podNS, args[0], err, podNS)
				}
				id = nodeID(&p)
			}
			var body []byte
			if base != "" {
				body, err = httpGet(cmd.Context(), base, server.ConfigDumpPath, map[string]string{"node": id})
			} else {
				body, err = debugGet(cmd.Context(), cfg, kube, ctrlNS, server.ConfigDumpPath, map[string]string{"node": id})
			}
			if err != nil {
				return fmt.Errorf("asking the controller for node %s: %w (is crossgate-controller running in %s? kubectl -n %s get pods)", id, err, ctrlNS, ctrlNS)
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				_, err := out.Write(body)
				return err
			}
			var d server.ConfigDump
			if err := json.Unmarshal(body, &d); err != nil {
				return fmt.Errorf("the controller's answer: %w", err)
			}
			return printConfigDump(out, &d)
		},
	}
	config.Flags().StringVarP(&podNS, "namespace", "n", "default", "the pod's namespace")
	config.Flags().StringVar(&ctrlNS, "controller-namespace", wellknown.SystemNamespace, "the namespace crossgate was installed into")
	config.Flags().StringVarP(&output, "output", "o", "summary", "summary or json")
	config.Flags().StringVar(&node, "node", "", "ask for this node ID instead of the pod's (kind~namespace/name)")
	config.Flags().StringVar(&base, "controller-url", "", "the controller's debug endpoint (default: a port-forward to its pod's --debug-address)")
	_ = config.Flags().MarkHidden("controller-url") // for the sandbox, whose controllers are processes
	cmd.AddCommand(config)
	return cmd
}

func shortType(t string) string { return t[strings.LastIndex(t, ".")+1:] }

func printConfigDump(out io.Writer, d *server.ConfigDump) error {
	fmt.Fprintf(out, "Node: %s\n", d.Node)
	if !d.Known {
		fmt.Fprintf(out, "The controller has published nothing for %s: is the pod in a namespace of the mesh (crossgate namespace add), with a ServiceAccount?\n", d.Key)
		return nil
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TYPE\tNAME\tVERSION")
	for _, r := range d.Resources {
		fmt.Fprintf(w, "%s\t%s\t%s\n", shortType(r.Type), r.Name, r.Version)
	}
	w.Flush()
	if len(d.Streams) == 0 {
		fmt.Fprintln(out, "\nNo stream of this node is open to the replica that answered.")
		return nil
	}
	served := map[string]map[string]string{}
	for _, r := range d.Resources {
		if served[r.Type] == nil {
			served[r.Type] = map[string]string{}
		}
		served[r.Type][r.Name] = r.Version
	}
	fmt.Fprintln(out, "\nOpen streams (what each was last sent, and acknowledged by asking for more):")
	fmt.Fprintln(w, "NODE\tPROTOCOL\tTYPE\tHELD\tSTATE")
	for _, s := range d.Streams {
		proto := "state of the world"
		if s.Delta {
			proto = "delta"
		}
		behind := 0
		for name, v := range served[s.Type] {
			if h, ok := s.Held[name]; ok && h != v {
				behind++
			}
		}
		state := "up to date"
		if behind > 0 {
			state = fmt.Sprintf("%d resources behind", behind)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\n", s.Node, proto, shortType(s.Type), len(s.Held), state)
	}
	return w.Flush()
}
