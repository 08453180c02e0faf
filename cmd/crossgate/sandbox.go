package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
	"github.com/crossgate-io/crossgate/sandbox"
	"github.com/crossgate-io/crossgate/sandbox/app"
	"github.com/crossgate-io/crossgate/sandbox/network"
	"github.com/crossgate-io/crossgate/sandbox/proxy"
)

type sandboxFlags struct {
	dir             string
	gatewayPortBase int
}

func defaultSandboxDir() string {
	if d := os.Getenv("CROSSGATE_SANDBOX_DIR"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "crossgate", "sandbox")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "crossgate-sandbox")
	}
	return filepath.Join(home, ".local", "state", "crossgate", "sandbox")
}

func sandboxCommand() *cobra.Command {
	f := &sandboxFlags{}
	cmd := &cobra.Command{
		Use:   "sandbox",
		Short: "A local cluster set on this machine: real API servers and crossgate-controllers, no containers",
	}
	cmd.PersistentFlags().StringVar(&f.dir, "dir", defaultSandboxDir(), "where the sandbox keeps its data, logs, kubeconfigs and state ($CROSSGATE_SANDBOX_DIR)")
	up := &cobra.Command{
		Use:   "up",
		Short: "Start the control plane and cluster-1..3, each with crossgate-controller, and join the members",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			upFlagChanged = cmd.Flags().Changed("gateway-port")
			return sandboxUp(cmd.Context(), f, cmd.OutOrStdout())
		},
	}
	up.Flags().IntVar(&f.gatewayPortBase, "gateway-port", 81, "gateway port of cluster-1; cluster-N gets this plus N-1 (the walkthrough's 81-83)")
	serve := &cobra.Command{
		Use:    "serve",
		Short:  "Run the sandbox in the foreground (what up starts in the background)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE:   func(cmd *cobra.Command, _ []string) error { return sandboxServe(f, cmd.OutOrStdout()) },
	}
	serve.Flags().IntVar(&f.gatewayPortBase, "gateway-port", 81, "gateway port of cluster-1")
	envoy := containerCommand("envoy -c BOOTSTRAP --service-node gateway~NAMESPACE/NAME",
		"The stand-in for the Envoy of a gateway Deployment, as the sandbox node runs it (Envoy's own command line)", proxy.RunEnvoy)
	appContainer := containerCommand("app-container --port PORT --message TEXT --mode sidecar|proxyless|none",
		"A container of the sandbox app's image, as the sandbox node runs it", app.RunContainer)
	cmd.AddCommand(up, serve, envoy, appContainer, appCommand(f), demoCommand(f),
		&cobra.Command{
			Use:   "down",
			Short: "Stop every process the sandbox started",
			Args:  cobra.NoArgs,
			RunE:  func(cmd *cobra.Command, _ []string) error { return sandboxDown(f, cmd.OutOrStdout()) },
		},
		&cobra.Command{
			Use:   "status",
			Short: "Show each cluster, its controller and its membership",
			Args:  cobra.NoArgs,
			RunE:  func(cmd *cobra.Command, _ []string) error { return sandboxStatus(cmd.Context(), f, cmd.OutOrStdout()) },
		})
	return cmd
}

// containerCommand is a hidden command the sandbox node runs for a container of an image it
// knows: run takes the container's command line and environment, and serves until SIGTERM.
func containerCommand(use, short string, run func(ctx context.Context, args []string, getenv func(string) string, log *slog.Logger) error) *cobra.Command {
	return &cobra.Command{
		Use: use, Short: short, Hidden: true, DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return run(ctx, args, os.Getenv, slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil)))
		},
	}
}

// upFlagChanged is set when --gateway-port was given to up.
var upFlagChanged bool

// canListen reports why n consecutive ports from base cannot be bound on 127.0.0.1, if so.
func canListen(base, n int) error {
	for i := range n {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+i))
		if err != nil {
			return err
		}
		_ = l.Close()
	}
	return nil
}

// alive reports whether a process exists.
func alive(pid int) bool { return pid > 0 && syscall.Kill(pid, 0) == nil }

// running returns the state of the sandbox in dir when its supervisor is alive.
func running(dir string) (*sandbox.SetState, bool) {
	st, err := sandbox.ReadState(dir)
	if err != nil {
		return nil, false
	}
	return st, alive(st.Pid)
}

// controllerBinary finds crossgate-controller beside this executable or in the repository's bin/.
func controllerBinary() (string, error) {
	var tried []string
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "crossgate-controller")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		tried = append(tried, p)
	}
	if root, err := sandbox.RepoRoot(); err == nil {
		p := filepath.Join(root, "bin", "crossgate-controller")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		tried = append(tried, p)
	}
	return "", fmt.Errorf("crossgate-controller not found (looked at %s): build it with `make build`", strings.Join(tried, ", "))
}

// ensureBins builds the sandbox's binaries (etcd, kube-apiserver, kube-controller-manager,
// kubectl, the conformance echo server and CoreDNS) when one is missing, showing the build.
func ensureBins(out io.Writer) (string, error) {
	dir, err := sandbox.BinDir()
	if err != nil {
		return "", err
	}
	missing := false
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kubectl", "echo-basic", "coredns"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			missing = true
		}
	}
	if !missing {
		return dir, nil
	}
	root, err := sandbox.RepoRoot()
	if err != nil {
		return "", fmt.Errorf("etcd, kube-apiserver or kubectl is missing from %s and the repository that builds them is not found: %w", dir, err)
	}
	fmt.Fprintf(out, "building etcd, kube-apiserver and kubectl into %s (about 10 minutes the first time; cached after)\n", dir)
	build := exec.Command(filepath.Join(root, "tools", "bins", "build.sh"))
	build.Dir, build.Stdout, build.Stderr = root, out, out
	if err := build.Run(); err != nil {
		return "", fmt.Errorf("building the sandbox binaries: %w", err)
	}
	return dir, nil
}

func sandboxUp(ctx context.Context, f *sandboxFlags, out io.Writer) error {
	if st, ok := running(f.dir); ok {
		fmt.Fprintf(out, "the sandbox is already up (supervisor pid %d, %s); `crossgate sandbox status` shows it, `crossgate sandbox down` stops it\n", st.Pid, f.dir)
		return nil
	}
	// The gateway ports are checked first: a bad or taken port fails now, not after the build
	// and the cluster set's start.
	members := len(sandbox.SetClusters) - 1
	if f.gatewayPortBase < 1 || f.gatewayPortBase+members-1 > 65535 {
		return fmt.Errorf("--gateway-port %d: the %d members use it and the next %d ports, so it must be 1-%d", f.gatewayPortBase, members, members-1, 65535-members+1)
	}
	if err := canListen(f.gatewayPortBase, members); !upFlagChanged && errors.Is(err, syscall.EACCES) {
		// Ports below 1024 need privileges; the walkthrough's 81-83 are a convention, not a need.
		fmt.Fprintf(out, "cannot listen on 127.0.0.1:%d-%d without privileges: the gateways use 18081-18083 instead\n", f.gatewayPortBase, f.gatewayPortBase+members-1)
		f.gatewayPortBase = 18081
		if err := canListen(f.gatewayPortBase, members); err != nil {
			return fmt.Errorf("the gateway ports 127.0.0.1:%d-%d: %w (choose others with --gateway-port)", f.gatewayPortBase, f.gatewayPortBase+members-1, err)
		}
	} else if err != nil {
		return fmt.Errorf("--gateway-port %d: the gateways need 127.0.0.1:%d-%d: %w", f.gatewayPortBase, f.gatewayPortBase, f.gatewayPortBase+members-1, err)
	}
	_ = os.Remove(sandbox.StatePath(f.dir)) // a stale state: its supervisor is gone
	if _, err := ensureBins(out); err != nil {
		return err
	}
	if _, err := controllerBinary(); err != nil {
		return err
	}
	if err := os.MkdirAll(f.dir, 0o700); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	logPath := filepath.Join(f.dir, "sandbox.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	child := exec.Command(self, "sandbox", "serve", "--dir", f.dir, "--gateway-port", fmt.Sprint(f.gatewayPortBase))
	child.Stdout, child.Stderr = logf, logf
	child.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // outlives this command
	if err := child.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- child.Wait() }()

	// Follow the supervisor's log until it reports the set up.
	logr, err := os.Open(logPath)
	if err != nil {
		return err
	}
	defer logr.Close()
	lines := bufio.NewReader(logr)
	follow := func() {
		for {
			l, err := lines.ReadString('\n')
			if l != "" && err == nil {
				fmt.Fprint(out, l)
			}
			if err != nil {
				if l != "" {
					_, _ = logr.Seek(-int64(len(l)), io.SeekCurrent)
					lines.Reset(logr)
				}
				return
			}
		}
	}
	deadline := time.After(5 * time.Minute)
	for {
		follow()
		if st, err := sandbox.ReadState(f.dir); err == nil && st.Pid == child.Process.Pid {
			printUsage(out, st)
			return nil
		}
		select {
		case err := <-exited:
			follow()
			return fmt.Errorf("the sandbox did not come up (%w); its log is %s", err, logPath)
		case <-deadline:
			_ = child.Process.Signal(syscall.SIGTERM)
			return fmt.Errorf("the sandbox did not come up within 5 minutes; its log is %s", logPath)
		case <-ctx.Done():
			_ = child.Process.Signal(syscall.SIGTERM)
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func printUsage(out io.Writer, st *sandbox.SetState) {
	fmt.Fprintf(out, "\nThe sandbox is up: %d clusters, one context each.\n\n", len(st.Clusters))
	fmt.Fprintf(out, "  export KUBECONFIG=%s\n", st.Kubeconfig)
	fmt.Fprintf(out, "  kubectl --context control-plane get clusters\n")
	fmt.Fprintf(out, "  kubectl --context cluster-2 get serviceimports -A\n\n")
	fmt.Fprintf(out, "`crossgate sandbox status` shows it; `crossgate sandbox down` stops it. Logs are in %s.\n", st.Dir)
}

func sandboxServe(f *sandboxFlags, out io.Writer) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	binDir, err := sandbox.BinDir()
	if err != nil {
		return err
	}
	controller, err := controllerBinary()
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	began := time.Now()
	ctrl.SetLogger(logr.FromSlogHandler(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelWarn})))
	set, err := sandbox.StartSet(ctx, sandbox.SetOptions{
		Dir: f.dir, BinDir: binDir, Controller: controller, Crossgate: self, GatewayPortBase: f.gatewayPortBase,
		Log: slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Progress: func(format string, args ...any) {
			fmt.Fprintf(out, "[%5.1fs] %s\n", time.Since(began).Seconds(), fmt.Sprintf(format, args...))
		},
	})
	if err != nil {
		return err
	}
	defer set.Stop()
	if err := set.WriteState(); err != nil {
		return err
	}
	reported := false
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(out, "stopping the sandbox")
			return nil
		case <-time.After(time.Second):
			if err := set.Exited(); err != nil && !reported {
				fmt.Fprintln(out, "warning:", err)
				reported = true
			}
		}
	}
}

func sandboxDown(f *sandboxFlags, out io.Writer) error {
	st, err := sandbox.ReadState(f.dir)
	if errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(out, "the sandbox is not up (no %s)\n", sandbox.StatePath(f.dir))
		return nil
	}
	if err != nil {
		return err
	}
	if alive(st.Pid) {
		_ = syscall.Kill(st.Pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		var left []int
		for _, pid := range st.Pids() {
			if alive(pid) {
				left = append(left, pid)
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, pid := range left {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			fmt.Fprintf(out, "killed processes that did not stop within a minute: %v\n", left)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = os.Remove(sandbox.StatePath(f.dir))
	fmt.Fprintln(out, "the sandbox is down")
	return nil
}

func sandboxStatus(ctx context.Context, f *sandboxFlags, out io.Writer) error {
	st, ok := running(f.dir)
	if !ok {
		return fmt.Errorf("the sandbox is not up (%s): start it with `crossgate sandbox up`", f.dir)
	}
	managed := map[string]string{}
	if cfg, err := clientcmd.BuildConfigFromFlags("", st.Clusters[0].Kubeconfig); err == nil {
		cfg.Timeout = 2 * time.Second
		if cl, err := client.New(cfg, client.Options{Scheme: sandbox.Scheme}); err == nil {
			var list flomeshv1alpha1.ClusterList
			if err := cl.List(ctx, &list); err == nil {
				for _, c := range list.Items {
					managed[c.Name] = "Unknown"
					if m := meta.FindStatusCondition(c.Status.Conditions, flomeshv1alpha1.ConditionManaged); m != nil {
						managed[c.Name] = string(m.Status) + " (" + m.Reason + ")"
					}
				}
			}
		}
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "CLUSTER\tAPI SERVER\tCONTROLLER\tMANAGED\tGATEWAY")
	var apps []string
	for _, c := range st.Clusters {
		api := "down"
		if alive(c.APIServerPid) {
			api = c.URL
		}
		ctl := "down"
		if alive(c.ControllerPid) {
			ctl = "not ready"
			if sandbox.Ready(ctx, c.Metrics) == nil {
				ctl = "ready, xDS " + c.XDS
			}
		}
		m, gw := managed[c.Name], "-"
		if c.GatewayPort == 0 {
			m = "(control plane)"
		} else {
			gw = fmt.Sprintf("127.0.0.1:%d down", c.GatewayPort)
			if conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", c.GatewayPort), time.Second); err == nil {
				_ = conn.Close()
				gw = fmt.Sprintf("127.0.0.1:%d", c.GatewayPort)
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", c.Name, api, ctl, m, gw)
		apps = append(apps, appsOf(ctx, c)...)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if len(apps) > 0 {
		fmt.Fprintln(out)
		w = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "APP (CLUSTER/NAMESPACE/POD)\tSERVICE ACCOUNT\tADDRESS\tREADY")
		for _, a := range apps {
			fmt.Fprintln(w, a)
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "\nKUBECONFIG=%s   supervisor pid %d   logs in %s\n", st.Kubeconfig, st.Pid, st.Dir)
	return nil
}

// appsOf lists the sandbox apps of a cluster, a tab-separated line each.
func appsOf(ctx context.Context, c sandbox.ClusterState) []string {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return nil
	}
	cfg.Timeout = 2 * time.Second
	cl, err := client.New(cfg, client.Options{Scheme: sandbox.Scheme})
	if err != nil {
		return nil
	}
	var pods corev1.PodList
	if err := cl.List(ctx, &pods); err != nil {
		return nil
	}
	var out []string
	for _, p := range pods.Items {
		if len(p.Spec.Containers) == 0 || p.Spec.Containers[0].Image != sandbox.AppImage {
			continue
		}
		addr := ""
		if p.Status.PodIP != "" && len(p.Spec.Containers[0].Ports) > 0 {
			addr = network.LoopbackAddr(net.JoinHostPort(p.Status.PodIP, strconv.Itoa(int(p.Spec.Containers[0].Ports[0].ContainerPort))))
		}
		ready := "no"
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
				ready = "yes"
			}
		}
		out = append(out, fmt.Sprintf("%s/%s/%s\t%s\t%s (pod IP %s)\t%s", c.Name, p.Namespace, p.Name, p.Spec.ServiceAccountName, addr, p.Status.PodIP, ready))
	}
	return out
}
