package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/crossgate-io/crossgate/inject"
	"github.com/crossgate-io/crossgate/membership"
	"github.com/crossgate-io/crossgate/wellknown"
)

// kubeFlags select a kubeconfig and a context, as kubectl's do.
type kubeFlags struct{ kubeconfig, context string }

func (k *kubeFlags) add(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&k.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
	cmd.PersistentFlags().StringVar(&k.context, "context", "", "the kubeconfig context to use (default: the current one)")
}

// config is the client configuration of a context ("" for the flags' context).
func (k *kubeFlags) config(context string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if k.kubeconfig != "" {
		rules.ExplicitPath = k.kubeconfig
	}
	if context == "" {
		context = k.context
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: context}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig context %q: %w", context, err)
	}
	return cfg, nil
}

func clusterCommand() *cobra.Command {
	k := &kubeFlags{}
	cmd := &cobra.Command{Use: "cluster", Short: "Join member clusters to this control plane, or take them out"}
	k.add(cmd)
	var o membership.Options
	var port int
	join := &cobra.Command{
		Use:   "join MEMBER-CONTEXT",
		Short: "Join the cluster of a kubeconfig context to the control plane (--context)",
		Long: `Join a member: in the member, create a ServiceAccount with only what the federation needs and
share the control plane's root CA; on the control plane, store a kubeconfig for that
ServiceAccount in a Secret and create the Cluster object naming it. Your own credentials are
used for these steps only and are never stored.`,
		Example: `  crossgate cluster join kind-cluster-1 --context kind-control-plane --gateway-host 192.168.1.110 --gateway-port 81`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if port < 1 || port > 65535 {
				return fmt.Errorf("--gateway-port %d: want 1-65535", port)
			}
			o.GatewayPort = int32(port)
			if o.Name == "" {
				o.Name = args[0]
			}
			cp, err := k.config("")
			if err != nil {
				return err
			}
			member, err := k.config(args[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			o.Progress = func(format string, a ...any) { fmt.Fprintf(out, format+"\n", a...) }
			if err := membership.Join(cmd.Context(), cp, member, o); err != nil {
				return err
			}
			fmt.Fprintf(out, "joined: `kubectl get cluster %s` shows Managed=True once the control plane's crossgate-controller has connected\n", o.Name)
			return nil
		},
	}
	join.Flags().StringVar(&o.Name, "name", "", "the member's name in the set (default: its context's name); must be a DNS label")
	join.Flags().StringVar(&o.GatewayHost, "gateway-host", "", "where the other clusters reach the member's gateway (its LoadBalancer address)")
	join.Flags().IntVar(&port, "gateway-port", 80, "the port of the member's gateway")
	join.Flags().StringVar(&o.Region, "region", "", "the member's region (default: default)")
	join.Flags().StringVar(&o.Zone, "zone", "", "the member's zone (default: default)")
	join.Flags().StringVar(&o.Group, "group", "", "the member's group (default: default)")
	_ = join.MarkFlagRequired("gateway-host")

	var memberContext string
	leave := &cobra.Command{
		Use:   "leave NAME",
		Short: "Take a member out of the set: its imports are deleted, then its Cluster and kubeconfig Secret",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cp, err := k.config("")
			if err != nil {
				return err
			}
			var member *rest.Config
			if memberContext != "" {
				if member, err = k.config(memberContext); err != nil {
					return err
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleting Cluster %s; the control plane removes its imports first\n", args[0])
			if err := membership.Leave(cmd.Context(), cp, member, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s has left the set\n", args[0])
			return nil
		},
	}
	leave.Flags().StringVar(&memberContext, "member-context", "", "the member's kubeconfig context, to remove the federation's ServiceAccount and roles there too")
	cmd.AddCommand(join, leave)
	return cmd
}

func namespaceCommand() *cobra.Command {
	k := &kubeFlags{}
	cmd := &cobra.Command{Use: "namespace", Short: "Add namespaces to the mesh (sidecar injection), or remove them"}
	k.add(cmd)
	set := func(add bool) func(cmd *cobra.Command, args []string) error {
		return func(cmd *cobra.Command, args []string) error {
			cfg, err := k.config("")
			if err != nil {
				return err
			}
			return labelNamespaces(cmd, cfg, args, add, cmd.OutOrStdout())
		}
	}
	cmd.AddCommand(
		&cobra.Command{Use: "add NAMESPACE...", Short: "Inject the sidecar into the pods created from now on in these namespaces", Args: cobra.MinimumNArgs(1), RunE: set(true)},
		&cobra.Command{Use: "remove NAMESPACE...", Short: "Stop injecting the sidecar in these namespaces (running pods keep theirs until restarted)", Args: cobra.MinimumNArgs(1), RunE: set(false)},
	)
	return cmd
}

func labelNamespaces(cmd *cobra.Command, cfg *rest.Config, names []string, add bool, out io.Writer) error {
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		return err
	}
	protected := inject.ProtectedNamespaces(controllerNamespace(cmd.Context(), c))
	for _, n := range names {
		if add && slices.Contains(protected, n) {
			return fmt.Errorf("namespace %s cannot be added to the mesh: %s are Kubernetes' own and the controller's, whose pods must start without the sidecar injector", n, strings.Join(protected, ", "))
		}
	}
	for _, n := range names {
		var ns corev1.Namespace
		if err := c.Get(cmd.Context(), client.ObjectKey{Name: n}, &ns); err != nil {
			return fmt.Errorf("namespace %s: %w (create it first: kubectl create namespace %s)", n, err, n)
		}
		patch := `{"metadata":{"labels":{"` + inject.NamespaceLabel + `":null}}}`
		if add {
			patch = `{"metadata":{"labels":{"` + inject.NamespaceLabel + `":"` + inject.NamespaceLabelValue + `"}}}`
		}
		if err := c.Patch(cmd.Context(), &ns, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
			return err
		}
		if add {
			fmt.Fprintf(out, "namespace %s added: pods created from now on get the sidecar\n", n)
		} else {
			fmt.Fprintf(out, "namespace %s removed: new pods get no sidecar; restart running ones to drop theirs\n", n)
		}
	}
	return nil
}

// controllerNamespace is the namespace of the controller that serves the injection webhook, as
// its registration names it; crossgate-system when none is registered.
func controllerNamespace(ctx context.Context, c client.Client) string {
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	if err := c.Get(ctx, client.ObjectKey{Name: inject.ConfigurationName}, &mwc); err == nil {
		for _, w := range mwc.Webhooks {
			if s := w.ClientConfig.Service; s != nil {
				return s.Namespace
			}
		}
	}
	return wellknown.SystemNamespace
}
