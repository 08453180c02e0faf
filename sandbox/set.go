package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
	"github.com/crossgate-io/crossgate/membership"
	"github.com/crossgate-io/crossgate/translator"
	"github.com/crossgate-io/crossgate/wellknown"
	"github.com/crossgate-io/crossgate/xds/identity"
)

// The cluster set of the sandbox: a control plane and three members, as in the walkthrough.
var SetClusters = []string{"control-plane", "cluster-1", "cluster-2", "cluster-3"}

// Names the sandbox installs, as an installation on real clusters would.
const (
	SystemNamespace = wellknown.SystemNamespace
	MeshNamespace   = "fsm-system"
	MeshConfigName  = "fsm-mesh-config"
	RootSecret      = wellknown.RootCASecret
	GatewayName     = wellknown.DefaultGatewayName
	GatewayClass    = wellknown.GatewayClass
	TrustDomain     = wellknown.DefaultTrustDomain
)

// SetOptions configure a sandbox cluster set.
type SetOptions struct {
	// Dir holds everything: data, logs, kubeconfigs and the state file.
	Dir string
	// BinDir holds etcd and kube-apiserver (BinDir() when empty).
	BinDir string
	// Controller is the crossgate-controller binary; Crossgate the crossgate binary, whose
	// `sandbox envoy` the sandbox node runs for the gateways' Envoy containers.
	Controller, Crossgate string
	// GatewayPortBase is the gateway port of cluster-1; cluster-N's is base+N-1 (81 when zero).
	GatewayPortBase int
	// Progress receives a line per step.
	Progress func(format string, args ...any)
	// Log receives the errors of the sandbox's own controllers (discarded when nil).
	Log *slog.Logger
}

// SetState describes a running cluster set; the supervisor writes it to Dir/state.json once the
// set is up, and the CLI reads it.
type SetState struct {
	// Pid is the supervisor's process id.
	Pid        int            `json:"pid"`
	Dir        string         `json:"dir"`
	Kubeconfig string         `json:"kubeconfig"`
	EtcdPid    int            `json:"etcdPid"`
	Clusters   []ClusterState `json:"clusters"`
}

// ClusterState is one cluster of a running set.
type ClusterState struct {
	Name          string `json:"name"`
	URL           string `json:"url"`
	Kubeconfig    string `json:"kubeconfig"`
	APIServerPid  int    `json:"apiServerPid"`
	ControllerPid int    `json:"controllerPid"`
	// ControllerManagerPid is the cluster's kube-controller-manager's.
	ControllerManagerPid int `json:"controllerManagerPid,omitempty"`
	// Metrics serves the controller's /metrics, /healthz and /readyz.
	Metrics string `json:"metrics"`
	// Debug serves the controller's /debug/config (loopback only, as in a pod).
	Debug string `json:"debug"`
	// XDS is where the controller serves xDS (mTLS).
	XDS string `json:"xds"`
	// GatewayPort is the member's gateway port (its Cluster object's gatewayPort); 0 for the
	// control plane, which is not a member.
	GatewayPort int `json:"gatewayPort,omitempty"`
}

// StatePath is the state file of the set in dir.
func StatePath(dir string) string { return filepath.Join(dir, "state.json") }

// ReadState reads the state file in dir.
func ReadState(dir string) (*SetState, error) {
	b, err := os.ReadFile(StatePath(dir))
	if err != nil {
		return nil, err
	}
	var st SetState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", StatePath(dir), err)
	}
	return &st, nil
}

// Pids are every process of the set, the supervisor first.
func (st *SetState) Pids() []int {
	pids := []int{st.Pid, st.EtcdPid}
	for _, c := range st.Clusters {
		pids = append(pids, c.APIServerPid, c.ControllerPid)
		if c.ControllerManagerPid != 0 {
			pids = append(pids, c.ControllerManagerPid)
		}
	}
	return pids
}

// Set is a running cluster set: the API servers, and one crossgate-controller process per
// cluster, with cluster-1..3 registered on the control plane.
type Set struct {
	*Sandbox
	State       SetState
	controllers []*process
	gateways    context.CancelFunc // stops the stand-in gateways
	wg          sync.WaitGroup
	stopOnce    sync.Once
}

// StartSet starts the cluster set and waits until every controller is ready and every member
// Managed.
func StartSet(ctx context.Context, opts SetOptions) (set *Set, err error) {
	progress := opts.Progress
	if progress == nil {
		progress = func(string, ...any) {}
	}
	if opts.GatewayPortBase == 0 {
		opts.GatewayPortBase = 81
	}
	if _, err := os.Stat(opts.Controller); err != nil {
		return nil, fmt.Errorf("the crossgate-controller binary: %w", err)
	}
	// The gateways' ports are taken first, so that they are held (and a taken one fails the
	// start at once) while the rest starts; each stand-in gateway serves on its listener later.
	gwListeners := map[string]net.Listener{}
	defer func() {
		for _, ln := range gwListeners {
			_ = ln.Close() // not handed to a gateway: the start failed
		}
	}()
	for i, name := range SetClusters[1:] {
		addr := "127.0.0.1:" + strconv.Itoa(opts.GatewayPortBase+i)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("the gateway of %s cannot listen on %s (%w): choose other ports with `crossgate sandbox up --gateway-port 18081`", name, addr, err)
		}
		gwListeners[name] = ln
	}
	progress("holding the gateway ports 127.0.0.1:%d-%d", opts.GatewayPortBase, opts.GatewayPortBase+len(SetClusters)-2)
	progress("starting etcd, and %d kube-apiservers, kube-controller-managers and sandbox nodes", len(SetClusters))
	sb, err := Start(ctx, Options{Clusters: SetClusters, Dir: filepath.Join(opts.Dir, "data"), BinDir: opts.BinDir, Node: true, NodeLog: opts.Log, Crossgate: opts.Crossgate})
	if err != nil {
		return nil, err
	}
	set = &Set{Sandbox: sb, State: SetState{Pid: os.Getpid(), Dir: opts.Dir, Kubeconfig: sb.Kubeconfig, EtcdPid: sb.etcd.Pid()}}
	defer func() {
		if err != nil {
			set.Stop()
			set = nil
		}
	}()
	progress("API servers ready in %v; installing crossgate's objects", sb.StartupTime().Round(100*time.Millisecond))

	root, err := identity.NewCA(TrustDomain)
	if err != nil {
		return set, err
	}
	for _, c := range sb.Clusters {
		gwPort := 0
		if c.Index > 0 {
			gwPort = opts.GatewayPortBase + c.Index - 1
		}
		if err := install(ctx, c, root, gwPort); err != nil {
			return set, fmt.Errorf("%s: %w", c.Name, err)
		}
		set.State.Clusters = append(set.State.Clusters, ClusterState{
			Name: c.Name, URL: c.URL, Kubeconfig: c.Kubeconfig, APIServerPid: c.apiserver.Pid(), GatewayPort: gwPort,
			ControllerManagerPid: c.controllerManager.Pid(),
		})
	}

	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	wctx, cancel := context.WithCancel(context.Background())
	set.gateways = cancel

	progress("starting crossgate-controller in each cluster")
	for i, c := range sb.Clusters {
		ctl, err := launchController(c, opts.Controller, opts.Dir)
		if err != nil {
			return set, err
		}
		cs := &set.State.Clusters[i]
		cs.Metrics, cs.Debug, cs.XDS, cs.ControllerPid = ctl.Metrics, ctl.Debug, ctl.XDS, ctl.proc.Pid()
		set.controllers = append(set.controllers, ctl.proc)
	}
	for i, p := range set.controllers {
		if err := (&Controller{Metrics: set.State.Clusters[i].Metrics, proc: p}).wait(ctx); err != nil {
			return set, fmt.Errorf("crossgate-controller %s: %w", set.State.Clusters[i].Name, err)
		}
	}

	progress("serving the gateways' LoadBalancer Services on 127.0.N.x and the gateway ports 127.0.0.1:%d-%d; each gateway's Deployment runs the stand-in for Envoy (Envoy cannot run here)",
		opts.GatewayPortBase, opts.GatewayPortBase+len(sb.Clusters)-2)
	for i, cs := range set.State.Clusters[1:] {
		c := sb.Clusters[i+1]
		lb, err := NewLoadBalancer(wctx, c.Config, c.Index, log.With("loadbalancer", cs.Name))
		if err != nil {
			return set, fmt.Errorf("%s: %w", cs.Name, err)
		}
		lb.Bind(gwListeners[cs.Name], types.NamespacedName{Namespace: SystemNamespace, Name: GatewayName}, int32(cs.GatewayPort))
		delete(gwListeners, cs.Name)
	}
	for _, c := range sb.Clusters[1:] {
		if err := waitProgrammed(ctx, c, 2*time.Minute); err != nil {
			return set, fmt.Errorf("%s: %w", c.Name, err)
		}
	}

	progress("joining cluster-1..3 to the control plane (crossgate cluster join)")
	cp := sb.Clusters[0]
	for i, cs := range set.State.Clusters[1:] {
		if err := join(ctx, cp, sb.Clusters[i+1], cs); err != nil {
			return set, fmt.Errorf("joining %s: %w", cs.Name, err)
		}
	}
	deadline := time.Now().Add(time.Minute)
	for _, cs := range set.State.Clusters[1:] {
		for {
			var cl flomeshv1alpha1.Cluster
			err := cp.Client.Get(ctx, client.ObjectKey{Name: cs.Name}, &cl)
			if err == nil && meta.IsStatusConditionTrue(cl.Status.Conditions, flomeshv1alpha1.ConditionManaged) {
				break
			}
			if time.Now().After(deadline) {
				c := meta.FindStatusCondition(cl.Status.Conditions, flomeshv1alpha1.ConditionManaged)
				return set, fmt.Errorf("cluster %s did not become Managed within a minute (%w, %+v); see %s", cs.Name, err, c,
					filepath.Join(opts.Dir, "crossgate-controller-control-plane.log"))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	progress("the cluster set is up")
	return set, nil
}

// Controller is a crossgate-controller process of a sandbox cluster.
type Controller struct {
	// Metrics serves /metrics, /healthz and /readyz; Debug /debug/config; XDS is the xDS server.
	Metrics, Debug, XDS string
	proc                *process
}

// StartController runs crossgate-controller (the binary bin) for the cluster, as an
// installation does (its namespace, the MeshConfig of Install), with its log in logDir, and
// waits until it is ready.
func StartController(ctx context.Context, c *Cluster, bin, logDir string) (*Controller, error) {
	ctl, err := launchController(c, bin, logDir)
	if err != nil {
		return nil, err
	}
	if err := ctl.wait(ctx); err != nil {
		ctl.Stop()
		return nil, err
	}
	return ctl, nil
}

func launchController(c *Cluster, bin, logDir string) (*Controller, error) {
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	ctl := &Controller{
		Metrics: "127.0.0.1:" + strconv.Itoa(ports[0]), XDS: "127.0.0.1:" + strconv.Itoa(ports[1]), Debug: "127.0.0.1:" + strconv.Itoa(ports[2]),
	}
	ctl.proc, err = startProcess("crossgate-controller "+c.Name, bin, []string{
		"--cluster-name=" + c.Name,
		"--namespace=" + SystemNamespace,
		"--mesh-config=" + MeshNamespace + "/" + MeshConfigName,
		"--xds-address=" + ctl.XDS, "--xds-host=127.0.0.1", "--xds-port=" + strconv.Itoa(ports[1]),
		"--metrics-address=" + ctl.Metrics,
		"--debug-address=" + ctl.Debug,
		"--webhook-address=", // sandbox workloads are processes, not pods
		"--log-level=info",
	}, filepath.Join(logDir, "crossgate-controller-"+c.Name+".log"), "KUBECONFIG="+c.Kubeconfig)
	if err != nil {
		return nil, err
	}
	return ctl, nil
}

func (ctl *Controller) wait(ctx context.Context) error {
	url := "http://" + ctl.Metrics + "/readyz"
	return waitFor(ctx, ctl.proc, time.Minute, func(ctx context.Context) error { return httpGetOK(ctx, url, nil) })
}

// Stop stops the controller.
func (ctl *Controller) Stop() { ctl.proc.stop(10 * time.Second) }

// Install creates what an installation of crossgate holds in a cluster: its namespace with the
// root CA, the MeshConfig and, given a gateway port, the GatewayClass and the Gateway exports
// attach to (its Service exposing listener port 80 on that port).
func Install(ctx context.Context, c *Cluster, root *identity.CA, gatewayPort int) error {
	return install(ctx, c, root, gatewayPort)
}

// install creates what an installation of crossgate holds in a cluster: its namespace with the
// set's shared root CA, the MeshConfig and, in members, the GatewayClass and Gateway.
func install(ctx context.Context, c *Cluster, root *identity.CA, gatewayPort int) error {
	permissive := true
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: SystemNamespace}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: MeshNamespace}},
		&flomeshv1alpha1.MeshConfig{
			ObjectMeta: metav1.ObjectMeta{Namespace: MeshNamespace, Name: MeshConfigName},
			Spec: flomeshv1alpha1.MeshConfigSpec{
				Traffic:    flomeshv1alpha1.TrafficSpec{EnablePermissiveTrafficPolicyMode: &permissive},
				ClusterSet: flomeshv1alpha1.ClusterSetSpec{Name: c.Name},
			},
		},
	}
	if gatewayPort > 0 {
		objs = append(objs,
			&gatewayv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: GatewayClass}, Spec: gatewayv1.GatewayClassSpec{ControllerName: wellknown.ControllerName}},
			&gatewayv1.Gateway{
				ObjectMeta: metav1.ObjectMeta{Namespace: SystemNamespace, Name: GatewayName, Annotations: map[string]string{"crossgate.io/lb-port": strconv.Itoa(gatewayPort)}},
				Spec:       gatewayv1.GatewaySpec{GatewayClassName: GatewayClass, Listeners: translator.GatewayListeners(80)},
			})
	}
	for _, o := range objs {
		if err := c.Client.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	if err := identity.StoreRoot(ctx, c.Kube, SystemNamespace, RootSecret, root); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

// join registers a member the way `crossgate cluster join` does: the federation reaches it with
// a token of a ServiceAccount holding membership.MemberRules only, never the admin's
// credentials. A member already registered (the Cluster exists) is left as it is.
func join(ctx context.Context, cp, member *Cluster, cs ClusterState) error {
	if err := cp.Client.Get(ctx, client.ObjectKey{Name: cs.Name}, &flomeshv1alpha1.Cluster{}); err == nil {
		return nil
	}
	return membership.Join(ctx, cp.Config, member.Config, membership.Options{
		Name: cs.Name, GatewayHost: "127.0.0.1", GatewayPort: int32(cs.GatewayPort),
	})
}

// WriteState writes the state file.
func (s *Set) WriteState() error {
	b, err := json.MarshalIndent(s.State, "", "  ")
	if err != nil {
		return err
	}
	tmp := StatePath(s.State.Dir) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, StatePath(s.State.Dir))
}

// Stop stops the controllers, then the API servers and etcd, and removes the state file.
func (s *Set) Stop() {
	s.stopOnce.Do(func() {
		if s.gateways != nil {
			s.gateways()
			s.wg.Wait()
		}
		var wg sync.WaitGroup
		for _, p := range s.controllers {
			wg.Go(func() { p.stop(10 * time.Second) })
		}
		wg.Wait()
		s.Sandbox.Stop()
		_ = os.Remove(StatePath(s.State.Dir))
	})
}

// Exited returns an error naming the first controller that exited on its own, if any.
func (s *Set) Exited() error {
	for _, p := range s.controllers {
		if p.exited() {
			return p.exitError()
		}
	}
	return nil
}

// Ready reports whether a controller's /readyz answers OK.
func Ready(ctx context.Context, metrics string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+metrics+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}

// LoadBalancerIP is the load balancer address of the member of index i (1 for cluster-1) that
// its gateway's Service gets, the first its load balancer gives.
func LoadBalancerIP(i int) string { return LoadBalancerAddress(i, 1) }

// waitProgrammed waits until the member's Gateway is Programmed: its Deployment has an
// available replica (the sandbox node runs the stand-in for its Envoy) and its Service an
// address (the loopback load balancer).
func waitProgrammed(ctx context.Context, c *Cluster, timeout time.Duration) error {
	key := client.ObjectKey{Namespace: SystemNamespace, Name: GatewayName}
	var gw gatewayv1.Gateway
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if err := c.Client.Get(ctx, key, &gw); err != nil {
			return false, nil
		}
		return meta.IsStatusConditionTrue(gw.Status.Conditions, string(gatewayv1.GatewayConditionProgrammed)), nil
	})
	if err != nil {
		return fmt.Errorf("the Gateway %s is not Programmed (%+v): see the pods' logs in %s: %w", key,
			meta.FindStatusCondition(gw.Status.Conditions, string(gatewayv1.GatewayConditionProgrammed)), c.PodLogs, err)
	}
	return nil
}

// FreeGatewayPorts returns the first of n consecutive free ports on 127.0.0.1 from 20081, for
// tests whose gateways must not collide with a sandbox running on 81-83.
func FreeGatewayPorts(n int) (int, error) {
	for base := 20081; base < 30000; base += 10 {
		free := true
		for i := range n {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+i))
			if err != nil {
				free = false
				break
			}
			_ = l.Close()
		}
		if free {
			return base, nil
		}
	}
	return 0, errors.New("no free ports for the gateways between 20081 and 30000")
}

// BuildCommands builds crossgate and crossgate-controller side by side into dir, for tests
// that run them as a user would, and returns the path of crossgate.
func BuildCommands(dir string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	for _, cmd := range []string{"crossgate", "crossgate-controller"} {
		b := exec.Command("go", "build", "-o", filepath.Join(dir, cmd), "./cmd/"+cmd)
		b.Dir = root
		if out, err := b.CombinedOutput(); err != nil {
			return "", fmt.Errorf("go build %s: %w\n%s", cmd, err, out)
		}
	}
	return filepath.Join(dir, "crossgate"), nil
}
