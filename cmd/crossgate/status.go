package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
	"github.com/crossgate-io/crossgate/controllers"
)

func statusCommand() *cobra.Command {
	k := &kubeFlags{}
	var namespace, metricsURL string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show crossgate in the cluster of the context: controller, gateway, member clusters, exports, imports, proxies",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := k.config("")
			if err != nil {
				return err
			}
			c, err := client.New(cfg, client.Options{Scheme: controllers.Scheme()})
			if err != nil {
				return err
			}
			kube, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				return err
			}
			return printStatus(cmd.Context(), cmd.OutOrStdout(), c, kube, namespace, metricsURL)
		},
	}
	k.add(cmd)
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "crossgate-system", "the namespace crossgate was installed into")
	cmd.Flags().StringVar(&metricsURL, "controller-url", "", "the controller's HTTP endpoint (default: through the API server's proxy to its Service)")
	_ = cmd.Flags().MarkHidden("controller-url") // for the sandbox, whose controllers are processes
	return cmd
}

func condition(conds []metav1.Condition, t string) string {
	c := meta.FindStatusCondition(conds, t)
	if c == nil {
		return "-"
	}
	if c.Reason == "" {
		return string(c.Status)
	}
	return string(c.Status) + " (" + c.Reason + ")"
}

func printStatus(ctx context.Context, out io.Writer, c client.Client, kube kubernetes.Interface, namespace, metricsURL string) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	defer w.Flush()

	var mcs flomeshv1alpha1.MeshConfigList
	if err := c.List(ctx, &mcs); err != nil {
		if meta.IsNoMatchError(err) || apierrors.IsNotFound(err) {
			return fmt.Errorf("crossgate's CRDs are not installed in this cluster: run crossgate install")
		}
		return fmt.Errorf("listing MeshConfigs: %w", err)
	}
	if len(mcs.Items) == 0 {
		fmt.Fprintln(w, "MeshConfig:\tnone (crossgate is not installed: run crossgate install)")
	}
	for _, m := range mcs.Items {
		cs := m.Spec.ClusterSet
		name := cs.Name
		if name == "" {
			name = "(unnamed: set clusterSet.name)"
		}
		mode := "permissive"
		if !m.PermissiveMode() {
			mode = "SMI access control"
		}
		fmt.Fprintf(w, "Cluster:\t%s/%s/%s/%s\t(MeshConfig %s/%s, %s, trust domain %s)\n", cs.Region, cs.Zone, cs.Group, name, m.Namespace, m.Name, mode, m.Spec.Certificate.TrustDomain)
	}

	var d appsv1.Deployment
	switch err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "crossgate-controller"}, &d); {
	case apierrors.IsNotFound(err):
		fmt.Fprintf(w, "Controller:\tno Deployment %s/crossgate-controller\n", namespace)
	case err != nil:
		return err
	default:
		fmt.Fprintf(w, "Controller:\t%s/%s\t%d/%d ready\t%s\n", namespace, d.Name, d.Status.ReadyReplicas, ptrOr(d.Spec.Replicas, 1), imageOf(&d))
	}
	proxies, publishes := controllerMetrics(ctx, kube, namespace, metricsURL)
	fmt.Fprintf(w, "Proxies:\t%s\n", proxies)
	fmt.Fprintf(w, "Publishes:\t%s\n", publishes)

	var gws gatewayv1.GatewayList
	if err := c.List(ctx, &gws); err != nil && !meta.IsNoMatchError(err) {
		return err
	}
	for _, g := range gws.Items {
		addrs := []string{}
		for _, a := range g.Status.Addresses {
			addrs = append(addrs, a.Value)
		}
		addr := strings.Join(addrs, ",")
		if addr == "" {
			addr = "no address yet"
		}
		fmt.Fprintf(w, "Gateway:\t%s/%s\tclass %s\tProgrammed=%s\t%s\n", g.Namespace, g.Name, g.Spec.GatewayClassName, condition(g.Status.Conditions, "Programmed"), addr)
	}
	w.Flush()

	var clusters flomeshv1alpha1.ClusterList
	if err := c.List(ctx, &clusters); err == nil && len(clusters.Items) > 0 {
		fmt.Fprintln(out, "\nMember clusters (this cluster is their control plane):")
		fmt.Fprintln(w, "  NAME\tGATEWAY\tMANAGED\tMESSAGE")
		for _, cl := range clusters.Items {
			msg := ""
			if m := meta.FindStatusCondition(cl.Status.Conditions, flomeshv1alpha1.ConditionManaged); m != nil && m.Status != metav1.ConditionTrue {
				msg = m.Message
			} else if m != nil && staleProbe(cl.Status.LastProbeTime, time.Now()) {
				msg = fmt.Sprintf("stale: the member was last reached %s ago (status.lastProbeTime); is the federation controller running?", time.Since(cl.Status.LastProbeTime.Time).Round(time.Second))
			}
			fmt.Fprintf(w, "  %s\t%s:%d\t%s\t%s\n", cl.Name, cl.Spec.GatewayHost, cl.Spec.GatewayPort, condition(cl.Status.Conditions, flomeshv1alpha1.ConditionManaged), msg)
		}
		w.Flush()
	}

	var exports flomeshv1alpha1.ServiceExportList
	if err := c.List(ctx, &exports); err != nil {
		return fmt.Errorf("listing ServiceExports: %w", err)
	}
	fmt.Fprintf(out, "\nServiceExports: %d\n", len(exports.Items))
	if len(exports.Items) > 0 {
		fmt.Fprintln(w, "  NAMESPACE/NAME\tVALID\tCONFLICT")
		for _, e := range exports.Items {
			fmt.Fprintf(w, "  %s/%s\t%s\t%s\n", e.Namespace, e.Name, condition(e.Status.Conditions, flomeshv1alpha1.ConditionValid), condition(e.Status.Conditions, flomeshv1alpha1.ConditionConflict))
		}
		w.Flush()
	}

	var imports flomeshv1alpha1.ServiceImportList
	if err := c.List(ctx, &imports); err != nil {
		return fmt.Errorf("listing ServiceImports: %w", err)
	}
	fmt.Fprintf(out, "\nServiceImports: %d\n", len(imports.Items))
	if len(imports.Items) > 0 {
		fmt.Fprintln(w, "  NAMESPACE/NAME\tTYPE\tPORTS\tFROM CLUSTERS")
		for _, i := range imports.Items {
			ports := []string{}
			for _, p := range i.Spec.Ports {
				ports = append(ports, fmt.Sprintf("%d/%s (%d endpoints)", p.Port, p.Protocol, len(p.Endpoints)))
			}
			from := []string{}
			for _, cl := range i.Status.Clusters {
				from = append(from, cl.Cluster)
			}
			fmt.Fprintf(w, "  %s/%s\t%s\t%s\t%s\n", i.Namespace, i.Name, i.Spec.Type, strings.Join(ports, ", "), strings.Join(from, ", "))
		}
		w.Flush()
	}
	return nil
}

func imageOf(d *appsv1.Deployment) string {
	for _, c := range d.Spec.Template.Spec.Containers {
		return c.Image
	}
	return ""
}

// connectedProxies reads the controller's connected-streams gauge.
// controllerMetrics describes, from the controller's metrics, the proxies connected to it and
// its publications by path.
func controllerMetrics(ctx context.Context, kube kubernetes.Interface, namespace, base string) (proxies, publishes string) {
	body, err := controllerGet(ctx, kube, namespace, base, "/metrics", nil)
	if err != nil {
		msg := fmt.Sprintf("unknown (the controller's metrics: %v)", err)
		return msg, msg
	}
	if n, ok := gauge(body, "crossgate_xds_connected_streams"); ok {
		proxies = fmt.Sprintf("%d xDS streams connected to this replica", int(n))
	} else {
		proxies = "unknown (the controller's metrics have no crossgate_xds_connected_streams)"
	}
	var counts []string
	for _, path := range []string{controllers.PathFull, controllers.PathIncremental, controllers.PathRebuild} {
		n, _ := gauge(body, `crossgate_publishes_total{path="`+path+`"}`)
		counts = append(counts, fmt.Sprintf("%d %s", int(n), path))
	}
	publishes = strings.Join(counts, ", ") + " (this replica: full reads and translates the cluster; incremental replaces what endpoint changes touched; rebuild rebuilds every proxy from the kept translation)"
	return proxies, publishes
}

// gauge finds a sample in Prometheus' text format, by its name and labels as printed.
func gauge(body []byte, name string) (float64, bool) {
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}

// staleProbe reports whether a Cluster's last probe is too old for its Managed condition to be
// current: the federation writes it at least every 30 seconds while it reaches the member.
func staleProbe(last *metav1.Time, now time.Time) bool {
	return last != nil && now.Sub(last.Time) > 2*time.Minute
}
