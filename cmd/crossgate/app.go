package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/crossgate-io/crossgate/inject"
	"github.com/crossgate-io/crossgate/sandbox"
	"github.com/crossgate-io/crossgate/sandbox/app"
	"github.com/crossgate-io/crossgate/sandbox/kubelet"
)

func appCommand(f *sandboxFlags) *cobra.Command {
	var (
		o         app.DeploymentOptions
		labels    []string
		cluster   string
		noMesh    bool
		proxyless bool
		timeout   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "app",
		Short: "Deploy a workload in a sandbox cluster: a Deployment answering \"Hi, I am from <cluster>\"",
		Long: `Apply a Deployment of the sandbox app's image (` + sandbox.AppImage + `) with the given labels and
ServiceAccount, and wait until it is available. The sandbox node runs its pods at loopback addresses
127.<cluster index>.<128+n>.x of the cluster, so the Services that select those labels reach them;
each answers every request with its message: HTTP, and gRPC (grpc.testing.TestService).

By default the pods have a sidecar (a stand-in for Envoy that applies the sidecar's inbound
configuration: mTLS, RBAC); with --proxyless they are proxyless gRPC servers (grpc-go with xDS,
gRPC only); both need the namespace in the mesh (crossgate namespace add), whose bootstrap and
identity Secret they mount. With --no-mesh they run outside the mesh. Remove the app with
kubectl delete deployment; scale it with kubectl scale.`,
		Example: `  crossgate sandbox app --cluster cluster-1 -n httpbin --name httpbin --service-account httpbin -l app=pipy --port 8080`,
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
			if len(o.Labels) == 0 {
				o.Labels["app"] = o.Name
			}
			switch {
			case noMesh && proxyless:
				return errors.New("--proxyless and --no-mesh exclude each other")
			case proxyless:
				o.Mode = app.ModeProxyless
			case noMesh:
				o.Mode = app.ModeNone
			default:
				o.Mode = app.ModeSidecar
			}
			if o.Port <= 0 || o.Port > 65535 {
				return fmt.Errorf("--port %d: want 1-65535", o.Port)
			}
			if o.Replicas < 1 {
				return fmt.Errorf("--replicas %d: want at least 1", o.Replicas)
			}
			return deployApp(cmd.Context(), f, cluster, o, timeout, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&cluster, "cluster", "", "the sandbox cluster to deploy in (cluster-1, cluster-2, ...)")
	cmd.Flags().StringVarP(&o.Namespace, "namespace", "n", "default", "namespace of the Deployment")
	cmd.Flags().StringVar(&o.Name, "name", "app", "name of the Deployment")
	cmd.Flags().StringVar(&o.ServiceAccount, "service-account", "default", "ServiceAccount of the pods: their identity in the mesh (created if missing)")
	cmd.Flags().StringSliceVarP(&labels, "label", "l", nil, "labels of the pods, key=value (Services select on them; default app=<name>)")
	cmd.Flags().IntVar(&o.Port, "port", 8080, "HTTP port (the Service's targetPort)")
	cmd.Flags().Int32Var(&o.Replicas, "replicas", 1, "number of pods")
	cmd.Flags().StringVar(&o.Message, "message", "", `the answer (default "Hi, I am from <cluster> and controlled by mesh!")`)
	cmd.Flags().BoolVar(&proxyless, "proxyless", false, "serve gRPC only, as an xDS-enabled grpc-go server without a sidecar")
	cmd.Flags().BoolVar(&noMesh, "no-mesh", false, "run outside the mesh: no sidecar, plaintext only")
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "how long to wait for the Deployment to become available")
	_ = cmd.MarkFlagRequired("cluster")
	return cmd
}

// deployApp applies the app's ServiceAccount and Deployment in a cluster of the running sandbox,
// and waits until the Deployment is available.
func deployApp(ctx context.Context, f *sandboxFlags, cluster string, o app.DeploymentOptions, timeout time.Duration, out io.Writer) error {
	st, ok := running(f.dir)
	if !ok {
		return fmt.Errorf("the sandbox is not up (%s): start it with `crossgate sandbox up`", f.dir)
	}
	var names []string
	var kubeconfig string
	for _, c := range st.Clusters {
		names = append(names, c.Name)
		if c.Name == cluster {
			kubeconfig = c.Kubeconfig
		}
	}
	if kubeconfig == "" {
		return fmt.Errorf("--cluster %q: the sandbox has %s", cluster, strings.Join(names, ", "))
	}
	if o.Message == "" {
		o.Message = "Hi, I am from " + cluster + " and controlled by mesh!"
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	c, err := client.New(cfg, client.Options{Scheme: sandbox.Scheme})
	if err != nil {
		return err
	}
	var ns corev1.Namespace
	if err := c.Get(ctx, client.ObjectKey{Name: o.Namespace}, &ns); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("namespace %s does not exist in %s: create it first (kubectl create namespace %s)", o.Namespace, cluster, o.Namespace)
		}
		return err
	}
	if o.Mode != app.ModeNone && ns.Labels[inject.NamespaceLabel] != inject.NamespaceLabelValue {
		return fmt.Errorf("namespace %s of %s is not in the mesh, so its pods get no identity: add it (crossgate namespace add %s --context %s), or run the app with --no-mesh", o.Namespace, cluster, o.Namespace, cluster)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: o.Namespace, Name: o.ServiceAccount}}
	if err := c.Create(ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("ServiceAccount %s/%s: %w", o.Namespace, o.ServiceAccount, err)
	}
	d := app.Deployment(o)
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var cur appsv1.Deployment
		switch err := c.Get(ctx, client.ObjectKeyFromObject(d), &cur); {
		case apierrors.IsNotFound(err):
			return c.Create(ctx, d)
		case err != nil:
			return err
		}
		cur.Labels, cur.Spec = d.Labels, d.Spec
		return c.Update(ctx, &cur)
	})
	if err != nil {
		return fmt.Errorf("applying Deployment %s/%s: %w", o.Namespace, o.Name, err)
	}
	fmt.Fprintf(out, "%s: deployment %s/%s (ServiceAccount %s, %s) applied\n", cluster, o.Namespace, o.Name, o.ServiceAccount, o.Mode)
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := waitAvailable(wctx, c, d); err != nil {
		return fmt.Errorf("deployment %s/%s of %s: %w", o.Namespace, o.Name, cluster, err)
	}
	pods, err := podsOf(ctx, c, d)
	if err != nil {
		return err
	}
	for _, p := range pods {
		fmt.Fprintf(out, "%s: pod %s/%s ready at %s\n", cluster, p.Namespace, p.Name, p.Status.PodIP)
	}
	return nil
}

// waitAvailable waits until every replica of the Deployment's latest generation is available,
// and says what holds it up when ctx ends first.
func waitAvailable(ctx context.Context, c client.Client, d *appsv1.Deployment) error {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		var cur appsv1.Deployment
		if err := c.Get(ctx, client.ObjectKeyFromObject(d), &cur); err == nil {
			want := ptrValue(cur.Spec.Replicas)
			if cur.Status.ObservedGeneration >= cur.Generation && cur.Status.UpdatedReplicas == want && cur.Status.AvailableReplicas == want && cur.Status.Replicas == want {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			pods, _ := podsOf(context.Background(), c, d)
			var why []string
			for _, p := range pods {
				why = append(why, kubelet.Explain(&p))
			}
			if len(why) == 0 {
				why = []string{"no pods"}
			}
			return fmt.Errorf("not available: %s", strings.Join(why, "; "))
		case <-t.C:
		}
	}
}

func ptrValue(p *int32) int32 {
	if p == nil {
		return 1
	}
	return *p
}

// podsOf are the Deployment's pods, by name.
func podsOf(ctx context.Context, c client.Client, d *appsv1.Deployment) ([]corev1.Pod, error) {
	var l corev1.PodList
	if err := c.List(ctx, &l, client.InNamespace(d.Namespace), client.MatchingLabels(d.Spec.Selector.MatchLabels)); err != nil {
		return nil, err
	}
	pods := slices.DeleteFunc(l.Items, func(p corev1.Pod) bool { return !p.DeletionTimestamp.IsZero() })
	slices.SortFunc(pods, func(a, b corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
	return pods, nil
}
