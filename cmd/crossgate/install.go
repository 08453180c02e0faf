package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/storage/driver"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
	"github.com/crossgate-io/crossgate/charts"
	"github.com/crossgate-io/crossgate/controllers"
	"github.com/crossgate-io/crossgate/inject"
	"github.com/crossgate-io/crossgate/wellknown"
)

// helmConfig is Helm's action configuration for the flags' context, storing releases in Secrets
// of namespace as the helm command does, so `helm list -n NAMESPACE` shows crossgate.
func (k *kubeFlags) helmConfig(namespace string, verbose io.Writer) (*action.Configuration, error) {
	flags := genericclioptions.NewConfigFlags(false)
	if k.kubeconfig != "" {
		flags.KubeConfig = &k.kubeconfig
	}
	if k.context != "" {
		flags.Context = &k.context
	}
	flags.Namespace = &namespace
	cfg := new(action.Configuration)
	logf := func(format string, v ...any) {
		if verbose != nil {
			fmt.Fprintf(verbose, "helm: "+format+"\n", v...)
		}
	}
	if err := cfg.Init(flags, namespace, "secret", logf); err != nil {
		return nil, fmt.Errorf("connecting to the cluster: %w", err)
	}
	return cfg, nil
}

// installValues reads --values files, then --set assignments over them.
func installValues(files, sets []string) (map[string]any, error) {
	vals := map[string]any{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("--values: %w", err)
		}
		v, err := chartutil.ReadValues(b)
		if err != nil {
			return nil, fmt.Errorf("--values %s: %w", f, err)
		}
		vals = chartutil.CoalesceTables(v.AsMap(), vals)
	}
	set, err := charts.Values(sets)
	if err != nil {
		return nil, err
	}
	return chartutil.CoalesceTables(set, vals), nil
}

func installCommand() *cobra.Command {
	k := &kubeFlags{}
	var (
		namespace    string
		sets, files  []string
		wait, dryRun bool
		timeout      time.Duration
	)
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install crossgate (its embedded Helm chart) into the cluster of the context, or upgrade it",
		Long: `Install crossgate into a cluster: the CRDs, the controller (which serves xDS and the
sidecar-injection webhook), its RBAC, the MeshConfig, and the GatewayClass and Gateway that
carry the cluster's exported services. The chart is the one this binary was built with; the
release is a Helm release named crossgate, so helm list shows it. Run it again to change values:
an installed release is upgraded.`,
		Example: `  crossgate install --context kind-cluster-1 --set clusterSet.name=cluster-1 --set gateway.lbPort=81 --set gateway.nodePort=30080
  crossgate install --set clusterSet.name=cluster-1 --set certManager.enabled=true`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, out := cmd.Context(), cmd.OutOrStdout()
			vals, err := installValues(files, sets)
			if err != nil {
				return err
			}
			chrt, err := charts.Load()
			if err != nil {
				return err
			}
			if dryRun {
				s, err := charts.Template(ctx, namespace, vals, true)
				if err != nil {
					return err
				}
				_, err = io.WriteString(out, s)
				return err
			}
			hc, err := k.helmConfig(namespace, nil)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "checking for a crossgate release in %s\n", namespace)
			upgrade := false
			if _, err := action.NewHistory(hc).Run(charts.ReleaseName); err == nil {
				upgrade = true
			} else if !errors.Is(err, driver.ErrReleaseNotFound) {
				return fmt.Errorf("reading the release history: %w (is the cluster reachable? kubectl --context %q get ns)", err, k.context)
			}
			if upgrade {
				fmt.Fprintf(out, "upgrading the installed release with chart %s\n", chrt.Metadata.Version)
				up := action.NewUpgrade(hc)
				up.Namespace, up.Timeout, up.ResetValues = namespace, timeout, true
				rel, err := up.RunWithContext(ctx, charts.ReleaseName, chrt, vals)
				if err != nil {
					return fmt.Errorf("upgrading: %w", err)
				}
				fmt.Fprintf(out, "release %s upgraded to revision %d\n", rel.Name, rel.Version)
			} else {
				fmt.Fprintf(out, "installing the CRDs and chart %s into %s\n", chrt.Metadata.Version, namespace)
				in := action.NewInstall(hc)
				in.ReleaseName, in.Namespace, in.CreateNamespace, in.Timeout = charts.ReleaseName, namespace, true, timeout
				rel, err := in.RunWithContext(ctx, chrt, vals)
				if err != nil {
					return fmt.Errorf("installing: %w", err)
				}
				fmt.Fprintf(out, "release %s installed (revision %d)\n", rel.Name, rel.Version)
			}
			if wait {
				if err := waitForController(ctx, k, namespace, timeout, out); err != nil {
					return err
				}
			}
			fmt.Fprintln(out, "done: `crossgate status` shows the controller, the gateway, exports and imports")
			return nil
		},
	}
	k.add(cmd)
	cmd.Flags().StringVarP(&namespace, "namespace", "n", wellknown.SystemNamespace, "the namespace of the controller and the release (created when missing)")
	cmd.Flags().StringArrayVar(&sets, "set", nil, "a chart value, key=value (repeatable; see the chart's values.yaml)")
	cmd.Flags().StringArrayVarP(&files, "values", "f", nil, "a YAML file of chart values (repeatable; --set wins)")
	cmd.Flags().BoolVar(&wait, "wait", true, "wait until the controller's Deployment is available")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the manifests instead of installing them (as helm template)")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait for the controller")
	return cmd
}

// waitForController follows the controller's Deployment until it is available.
func waitForController(ctx context.Context, k *kubeFlags, namespace string, timeout time.Duration, out io.Writer) error {
	cfg, err := k.config("")
	if err != nil {
		return err
	}
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := ""
	for {
		var d appsv1.Deployment
		err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "crossgate-controller"}, &d)
		msg := ""
		switch {
		case err != nil:
			msg = err.Error()
		case d.Status.AvailableReplicas > 0 && d.Status.ObservedGeneration >= d.Generation:
			fmt.Fprintf(out, "controller available (%d/%d ready)\n", d.Status.ReadyReplicas, ptrOr(d.Spec.Replicas, 1))
			return nil
		default:
			msg = fmt.Sprintf("waiting for the controller: %d/%d ready", d.Status.ReadyReplicas, ptrOr(d.Spec.Replicas, 1))
		}
		if msg != last {
			fmt.Fprintln(out, msg)
			last = msg
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the controller is not available after %v (%s): see kubectl -n %s describe deployment crossgate-controller, and its logs; or install with --wait=false", timeout, msg, namespace)
		case <-time.After(2 * time.Second):
		}
	}
}

func ptrOr(p *int32, d int32) int32 {
	if p == nil {
		return d
	}
	return *p
}

func uninstallCommand() *cobra.Command {
	k := &kubeFlags{}
	var (
		namespace    string
		purge, force bool
	)
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Remove crossgate from the cluster of the context",
		Long: `Remove the crossgate release and the sidecar-injection webhook's registration. The CRDs, and so
every ServiceExport, ServiceImport, GlobalTrafficPolicy and Cluster, are kept, as is the root CA
Secret that the cluster set shares, unless --purge is given. Running pods keep their sidecars
until restarted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, out := cmd.Context(), cmd.OutOrStdout()
			cfg, err := k.config("")
			if err != nil {
				return err
			}
			c, err := client.New(cfg, client.Options{Scheme: controllers.Scheme()})
			if err != nil {
				return err
			}
			// On a control plane, the controller's finalizer removes each member's imports when
			// its Cluster goes: without the controller, Clusters could not be deleted.
			var clusters flomeshv1alpha1.ClusterList
			if err := c.List(ctx, &clusters); err == nil && len(clusters.Items) > 0 && !force {
				var names []string
				for _, cl := range clusters.Items {
					names = append(names, cl.Name)
				}
				return fmt.Errorf("this cluster is the control plane of %s: run crossgate cluster leave NAME for each first (their imports are removed from the members), or uninstall with --force to leave them behind", strings.Join(names, ", "))
			}
			hc, err := k.helmConfig(namespace, nil)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "removing the crossgate release from %s\n", namespace)
			un := action.NewUninstall(hc)
			un.Wait, un.Timeout = false, time.Minute
			if _, err := un.Run(charts.ReleaseName); errors.Is(err, driver.ErrReleaseNotFound) {
				fmt.Fprintf(out, "no crossgate release in %s (already uninstalled, or installed into another namespace: --namespace)\n", namespace)
			} else if err != nil {
				return fmt.Errorf("uninstalling: %w", err)
			}
			// The controller registers the webhook itself (it owns the CA bundle): remove it, or
			// pod creation in labelled namespaces would fail closed.
			var mwc admissionregistrationv1.MutatingWebhookConfiguration
			err = c.Get(ctx, client.ObjectKey{Name: inject.ConfigurationName}, &mwc)
			if err == nil && mwc.Labels[wellknown.ManagedByLabel] == wellknown.ManagedByValue {
				if err := c.Delete(ctx, &mwc); client.IgnoreNotFound(err) != nil {
					return fmt.Errorf("removing the webhook registration %s: %w", inject.ConfigurationName, err)
				}
				fmt.Fprintf(out, "removed the webhook registration %s\n", inject.ConfigurationName)
			} else if err != nil && !apierrors.IsNotFound(err) {
				return err
			}
			if purge {
				if err := purgeInstallation(ctx, c, namespace, out); err != nil {
					return err
				}
			}
			fmt.Fprintln(out, "crossgate is uninstalled")
			return nil
		},
	}
	k.add(cmd)
	cmd.Flags().StringVarP(&namespace, "namespace", "n", wellknown.SystemNamespace, "the namespace crossgate was installed into")
	cmd.Flags().BoolVar(&force, "force", false, "uninstall although member clusters are joined (their imports stay in the members)")
	cmd.Flags().BoolVar(&purge, "purge", false, "also delete the CRDs (and with them every crossgate object), the root CA Secret and the namespace")
	return cmd
}

// purgeInstallation deletes what a plain uninstall keeps.
func purgeInstallation(ctx context.Context, c client.Client, namespace string, out io.Writer) error {
	files, names, err := charts.CRDs()
	if err != nil {
		return err
	}
	for _, n := range names {
		if !strings.Contains(string(files[n]), "group: flomesh.io") {
			continue // Gateway API and SMI CRDs may serve other controllers too
		}
		crdName := strings.TrimSuffix(n, ".yaml")
		group, plural, _ := strings.Cut(crdName, "_")
		obj := &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "apiextensions.k8s.io/v1", Kind: "CustomResourceDefinition"}}
		obj.SetName(plural + "." + group)
		if err := c.Delete(ctx, obj); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting CRD %s.%s: %w", plural, group, err)
		}
		fmt.Fprintf(out, "deleted CRD %s.%s\n", plural, group)
	}
	ns := &corev1.Namespace{}
	ns.Name = namespace
	if err := c.Delete(ctx, ns); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting namespace %s: %w", namespace, err)
	}
	fmt.Fprintf(out, "deleted namespace %s, with the root CA Secret\n", namespace)
	return nil
}
