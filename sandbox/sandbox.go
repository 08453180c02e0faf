package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/crossgate-io/crossgate/sandbox/kubelet"
)

// Options configure a sandbox.
type Options struct {
	// Clusters are the names of the clusters to start, one API server each.
	Clusters []string
	// Dir holds data, certificates, logs and kubeconfigs. A temporary directory, removed by
	// Stop, when empty.
	Dir string
	// BinDir holds etcd, kube-apiserver and kube-controller-manager; $CROSSGATE_BIN_DIR or the
	// repository's bin/ when empty.
	BinDir string
	// SkipCRDs leaves the API servers without crossgate's and Gateway API's CRDs.
	SkipCRDs bool
	// ControllerManager runs a kube-controller-manager per cluster with the controllers the
	// sandbox can honour (ControllerManagerControllers).
	ControllerManager bool
	// Node runs the sandbox node (package kubelet) in each cluster, named NodeName(cluster): it
	// binds the Pods and runs those of the images NodeImages lists. It implies
	// ControllerManager. NodeLog receives its errors (discarded when nil).
	Node    bool
	NodeLog *slog.Logger
	// Crossgate is the crossgate binary: the node runs its `sandbox envoy` for the Envoy image
	// of crossgate's gateway Deployments (none when empty).
	Crossgate string
}

// NodeName is the name of a cluster's sandbox node.
func NodeName(cluster string) string { return "sandbox-" + cluster }

// EchoImage is the Gateway API conformance suite's echo server (any tag), which the sandbox
// node runs from bin/echo-basic.
const EchoImage = "registry.k8s.io/gateway-api/echo-basic"

// CoreDNSImage is CoreDNS (any tag), which the conformance suite's base manifests deploy; the
// sandbox node runs it from bin/coredns.
const CoreDNSImage = "registry.k8s.io/coredns/coredns"

// EnvoyImage is the Envoy image of crossgate's gateway Deployments (any tag), for which the
// sandbox node runs the stand-in (crossgate sandbox envoy).
const EnvoyImage = "docker.io/envoyproxy/envoy"

// AppImage is the sandbox app's image (package app): a workload answering "Hi, I am from
// <cluster>", with the stand-in for its sidecar, or as a proxyless gRPC server.
const AppImage = "crossgate.io/sandbox-app"

// NodeImages are the images the sandbox node runs: the conformance echo server and CoreDNS
// from binDir, and, given the crossgate binary, the stand-in for Envoy and the sandbox app.
func NodeImages(binDir, crossgate string) map[string]kubelet.Image {
	images := map[string]kubelet.Image{}
	if p := filepath.Join(binDir, "echo-basic"); fileExists(p) {
		images[EchoImage] = kubelet.Image{Path: p}
	}
	if p := filepath.Join(binDir, "coredns"); fileExists(p) {
		images[CoreDNSImage] = kubelet.Image{Path: p}
	}
	if crossgate != "" {
		images[EnvoyImage] = kubelet.Image{Path: crossgate, Args: []string{"sandbox", "envoy"}, HostNetwork: true}
		images[AppImage] = kubelet.Image{Path: crossgate, Args: []string{"sandbox", "app-container"}, HostNetwork: true}
	}
	return images
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// ControllerManagerControllers are the kube-controller-manager controllers a sandbox runs:
// namespaces are finalised (a deleted namespace's objects go, then the namespace), owned
// objects are collected once their owner is gone, every namespace gets its `default`
// ServiceAccount and its kube-root-ca.crt ConfigMap, aggregated ClusterRoles (admin, edit,
// view) are filled, Deployments make ReplicaSets and ReplicaSets Pods (which the sandbox node,
// package kubelet, binds and runs), and every Service with a selector gets its EndpointSlices.
var ControllerManagerControllers = []string{
	"namespace-controller", "garbage-collector-controller", "serviceaccount-controller",
	"root-ca-certificate-publisher-controller", "clusterrole-aggregation-controller",
	"deployment-controller", "replicaset-controller", "endpointslice-controller",
}

// Cluster is one running API server.
type Cluster struct {
	// Name of the cluster, as given in Options.Clusters.
	Name string
	// Index is the cluster's position in Options.Clusters, from 0.
	Index int
	// URL of the API server (https://127.0.0.1:port).
	URL string
	// Kubeconfig is the path of a kubeconfig file with one context, named after the cluster,
	// for a user in system:masters.
	Kubeconfig string
	// Config is the client configuration of that user.
	Config *rest.Config
	// Kube is a typed client-go clientset.
	Kube kubernetes.Interface
	// Client is a controller-runtime client that knows crossgate's, SMI's and Gateway API's kinds.
	Client client.Client
	// ServiceCIDR is the cluster's Service IP range; ranges differ between clusters.
	ServiceCIDR string
	// PodLogs holds the output of the containers the sandbox node runs (Options.Node).
	PodLogs string

	apiserver         *process
	controllerManager *process
	node              context.CancelFunc
	nodeDone          chan struct{}
	etcdURL           string
}

// Sandbox is a set of running API servers sharing one etcd.
type Sandbox struct {
	Dir string
	// Clusters in the order of Options.Clusters.
	Clusters []*Cluster
	// Kubeconfig is the path of a kubeconfig file with one context per cluster.
	Kubeconfig string

	etcd       *process
	ownDir     bool
	binDir     string
	stopOnce   sync.Once
	startedAt  time.Time
	startTaken time.Duration
}

// Cluster returns the cluster of that name, or nil.
func (s *Sandbox) Cluster(name string) *Cluster {
	for _, c := range s.Clusters {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// StartupTime is how long Start took, CRDs included.
func (s *Sandbox) StartupTime() time.Duration { return s.startTaken }

// Pids are the process ids of every process the sandbox started.
func (s *Sandbox) Pids() []int {
	var pids []int
	if s.etcd != nil {
		pids = append(pids, s.etcd.Pid())
	}
	for _, c := range s.Clusters {
		if c.apiserver != nil {
			pids = append(pids, c.apiserver.Pid())
		}
		if c.controllerManager != nil {
			pids = append(pids, c.controllerManager.Pid())
		}
	}
	return pids
}

// BinDir finds the directory holding etcd, kube-apiserver and kubectl.
func BinDir() (string, error) {
	if d := os.Getenv("CROSSGATE_BIN_DIR"); d != "" {
		return d, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "bin"), nil
}

// RepoRoot is the directory of crossgate's repository, found from this source file or from the
// working directory.
func RepoRoot() (string, error) { return repoRoot() }

// repoRoot is the directory of the product module's go.mod, found from this source file or
// from the working directory.
func repoRoot() (string, error) {
	starts := []string{}
	if _, file, _, ok := runtime.Caller(0); ok {
		starts = append(starts, filepath.Dir(file))
	}
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	for _, d := range starts {
		for ; d != filepath.Dir(d); d = filepath.Dir(d) {
			if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil &&
				len(b) > 0 && containsModule(b, "github.com/crossgate-io/crossgate") {
				return d, nil
			}
		}
	}
	return "", errors.New("cannot find the crossgate repository (set CROSSGATE_BIN_DIR to the directory holding etcd and kube-apiserver)")
}

func containsModule(gomod []byte, module string) bool {
	line := "module " + module + "\n"
	return len(gomod) >= len(line) && string(gomod[:len(line)]) == line
}

// Start starts etcd and one kube-apiserver per cluster (and a kube-controller-manager, with
// Options.ControllerManager), installs the CRDs and waits until they are served. On error,
// everything started so far is stopped.
func Start(ctx context.Context, opts Options) (s *Sandbox, err error) {
	begin := time.Now()
	if len(opts.Clusters) == 0 {
		return nil, errors.New("sandbox: no cluster names given")
	}
	seen := map[string]bool{}
	for _, n := range opts.Clusters {
		if n == "" || seen[n] {
			return nil, fmt.Errorf("sandbox: cluster names must be unique and non-empty, got %q", opts.Clusters)
		}
		seen[n] = true
	}
	binDir := opts.BinDir
	if binDir == "" {
		if binDir, err = BinDir(); err != nil {
			return nil, err
		}
	}
	bins := []string{"etcd", "kube-apiserver"}
	opts.ControllerManager = opts.ControllerManager || opts.Node
	if opts.ControllerManager {
		bins = append(bins, "kube-controller-manager")
	}
	for _, b := range bins {
		if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
			return nil, fmt.Errorf("sandbox: %s is missing from %s: run `make bins` first", b, binDir)
		}
	}
	s = &Sandbox{Dir: opts.Dir, binDir: binDir, startedAt: begin}
	if s.Dir != "" {
		if err := os.MkdirAll(s.Dir, 0o700); err != nil {
			return nil, err
		}
	}
	if s.Dir == "" {
		if s.Dir, err = os.MkdirTemp("", "crossgate-sandbox-"); err != nil {
			return nil, err
		}
		s.ownDir = true
	}
	defer func() {
		if err != nil {
			s.Stop()
			s = nil
		}
	}()

	etcdURL, err := s.startEtcd(ctx)
	if err != nil {
		return s, err
	}

	s.Clusters = make([]*Cluster, len(opts.Clusters))
	errs := make([]error, len(opts.Clusters))
	var wg sync.WaitGroup
	for i, name := range opts.Clusters {
		c := &Cluster{Name: name, Index: i, ServiceCIDR: fmt.Sprintf("10.%d.0.0/16", 96+i)}
		s.Clusters[i] = c
		wg.Go(func() {
			if errs[i] = s.startAPIServer(ctx, c, etcdURL); errs[i] != nil {
				return
			}
			if !opts.SkipCRDs {
				if errs[i] = installCRDs(ctx, c); errs[i] != nil {
					return
				}
			}
			if opts.ControllerManager {
				if errs[i] = s.startControllerManager(ctx, c); errs[i] != nil {
					return
				}
			}
			if opts.Node {
				errs[i] = s.startNode(ctx, c, opts.NodeLog, NodeImages(binDir, opts.Crossgate))
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return s, err
	}
	if err := s.writeMergedKubeconfig(); err != nil {
		return s, err
	}
	s.startTaken = time.Since(begin)
	return s, nil
}

// Stop ends every process in order (API servers before etcd: kube-apiserver hangs in shutdown
// when etcd is gone first) and removes the directory if the sandbox made it. Safe to call twice.
func (s *Sandbox) Stop() {
	s.stopOnce.Do(func() {
		var wg sync.WaitGroup
		for _, c := range s.Clusters {
			if c != nil && c.node != nil {
				c.node()
				wg.Go(func() { <-c.nodeDone })
			}
		}
		wg.Wait()
		for _, c := range s.Clusters {
			if c != nil && c.controllerManager != nil {
				wg.Go(func() { c.controllerManager.stop(10 * time.Second) })
			}
		}
		wg.Wait()
		for _, c := range s.Clusters {
			if c != nil && c.apiserver != nil {
				wg.Go(func() { c.apiserver.stop(10 * time.Second) })
			}
		}
		wg.Wait()
		if s.etcd != nil {
			s.etcd.stop(10 * time.Second)
		}
		if s.ownDir {
			_ = os.RemoveAll(s.Dir)
		}
	})
}

func (s *Sandbox) startEtcd(ctx context.Context) (string, error) {
	for attempt := 0; ; attempt++ {
		ports, err := freePorts(2)
		if err != nil {
			return "", err
		}
		client := "http://127.0.0.1:" + strconv.Itoa(ports[0])
		peer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
		dataDir := filepath.Join(s.Dir, "etcd")
		_ = os.RemoveAll(dataDir)
		p, err := startProcess("etcd", filepath.Join(s.binDir, "etcd"), []string{
			"--name=sandbox",
			"--data-dir=" + dataDir,
			"--listen-client-urls=" + client,
			"--advertise-client-urls=" + client,
			"--listen-peer-urls=" + peer,
			"--initial-advertise-peer-urls=" + peer,
			"--initial-cluster=sandbox=" + peer,
			"--unsafe-no-fsync", // throwaway data: durability buys nothing here
			"--quota-backend-bytes=4294967296",
			"--log-level=warn",
		}, filepath.Join(s.Dir, "etcd.log"))
		if err != nil {
			return "", err
		}
		s.etcd = p
		err = waitFor(ctx, p, 30*time.Second, func(ctx context.Context) error {
			return httpGetOK(ctx, client+"/health", nil)
		})
		if errors.Is(err, errAddrInUse) && attempt < 3 {
			continue
		}
		return client, err
	}
}

func (s *Sandbox) startAPIServer(ctx context.Context, c *Cluster, etcdURL string) error {
	dir := filepath.Join(s.Dir, c.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	_, cidr, _ := net.ParseCIDR(c.ServiceCIDR)
	serviceIP := append(net.IP{}, cidr.IP.To4()...)
	serviceIP[3] = 1
	p, err := newPKI(c.Name, serviceIP)
	if err != nil {
		return fmt.Errorf("%s: certificates: %w", c.Name, err)
	}
	if err := p.write(dir); err != nil {
		return fmt.Errorf("%s: %w", c.Name, err)
	}
	for attempt := 0; ; attempt++ {
		ports, err := freePorts(1)
		if err != nil {
			return err
		}
		c.URL = "https://127.0.0.1:" + strconv.Itoa(ports[0])
		c.Kubeconfig = filepath.Join(s.Dir, c.Name+".kubeconfig")
		if err := writeKubeconfig(c.Kubeconfig, []*Cluster{c}, map[string]*pki{c.Name: p}); err != nil {
			return err
		}
		c.Config, err = clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
		if err != nil {
			return fmt.Errorf("%s: reading the kubeconfig just written: %w", c.Name, err)
		}
		c.Config.QPS, c.Config.Burst = 200, 400
		c.etcdURL = etcdURL
		err = s.launchAPIServer(ctx, c)
		if errors.Is(err, errAddrInUse) && attempt < 3 {
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", c.Name, err)
		}
		break
	}
	if c.Kube, err = kubernetes.NewForConfig(c.Config); err != nil {
		return err
	}
	if c.Client, err = client.New(c.Config, client.Options{Scheme: Scheme}); err != nil {
		return err
	}
	return nil
}

// launchAPIServer runs the cluster's kube-apiserver on c.URL's port with the certificates in its
// directory and waits until it is ready.
func (s *Sandbox) launchAPIServer(ctx context.Context, c *Cluster) error {
	dir := filepath.Join(s.Dir, c.Name)
	f := func(n string) string { return filepath.Join(dir, n) }
	u, err := url.Parse(c.URL)
	if err != nil {
		return err
	}
	proc, err := startProcess("kube-apiserver "+c.Name, filepath.Join(s.binDir, "kube-apiserver"), []string{
		"--etcd-servers=" + c.etcdURL,
		"--etcd-prefix=/" + c.Name,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + u.Port(),
		"--tls-cert-file=" + f("apiserver.crt"),
		"--tls-private-key-file=" + f("apiserver.key"),
		"--client-ca-file=" + f("ca.crt"),
		"--service-account-key-file=" + f("sa.pub"),
		"--service-account-signing-key-file=" + f("sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range=" + c.ServiceCIDR,
		"--authorization-mode=RBAC",
		"--allow-privileged=true",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--v=1",
	}, filepath.Join(s.Dir, c.Name+".log"))
	if err != nil {
		return err
	}
	c.apiserver = proc
	return waitFor(ctx, proc, 60*time.Second, func(ctx context.Context) error {
		return httpGetOK(ctx, c.URL+"/readyz", c.Config)
	})
}

// startNode runs the cluster's sandbox node in this process and waits until its Node is Ready.
func (s *Sandbox) startNode(ctx context.Context, c *Cluster, log *slog.Logger, images map[string]kubelet.Image) error {
	logDir := filepath.Join(s.Dir, c.Name+"-pods")
	if err := os.MkdirAll(logDir, 0o700); err != nil {
		return err
	}
	c.PodLogs = logDir
	nctx, cancel := context.WithCancel(context.Background())
	c.node, c.nodeDone = cancel, make(chan struct{})
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	errc := make(chan error, 1)
	go func() {
		defer close(c.nodeDone)
		errc <- kubelet.Run(nctx, kubelet.Options{
			Node: NodeName(c.Name), ClusterIndex: c.Index, Config: c.Config, Images: images,
			LogDir: logDir, Log: log.With("node", NodeName(c.Name)),
		})
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-errc:
			return fmt.Errorf("the sandbox node of %s ended: %w", c.Name, err)
		default:
		}
		var node corev1.Node
		err := c.Client.Get(ctx, client.ObjectKey{Name: NodeName(c.Name)}, &node)
		if err == nil && len(node.Status.Conditions) > 0 && node.Status.Conditions[0].Status == corev1.ConditionTrue {
			return nil
		}
		if err == nil {
			err = errors.New("the Node is not Ready")
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("the sandbox node of %s is not Ready within 30s: %w", c.Name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startControllerManager runs the cluster's kube-controller-manager (ControllerManagerControllers)
// with its admin kubeconfig, and waits until it works: the `default` namespace has its `default`
// ServiceAccount. It serves no port (--secure-port=0) and elects no leader (one per cluster).
func (s *Sandbox) startControllerManager(ctx context.Context, c *Cluster) error {
	proc, err := startProcess("kube-controller-manager "+c.Name, filepath.Join(s.binDir, "kube-controller-manager"), []string{
		"--kubeconfig=" + c.Kubeconfig,
		"--controllers=" + strings.Join(ControllerManagerControllers, ","),
		"--root-ca-file=" + filepath.Join(s.Dir, c.Name, "ca.crt"),
		"--cluster-name=" + c.Name,
		"--leader-elect=false",
		"--use-service-account-credentials=false",
		"--secure-port=0",
		"--profiling=false",
		"--v=1",
	}, filepath.Join(s.Dir, c.Name+"-controller-manager.log"))
	if err != nil {
		return err
	}
	c.controllerManager = proc
	return waitFor(ctx, proc, 60*time.Second, func(ctx context.Context) error {
		_, err := c.Kube.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err
	})
}

// StopAPIServer stops one cluster's kube-apiserver, leaving its data in etcd, as an outage would.
func (s *Sandbox) StopAPIServer(name string) error {
	c := s.Cluster(name)
	if c == nil || c.apiserver == nil {
		return fmt.Errorf("sandbox: no running API server %q", name)
	}
	c.apiserver.stop(10 * time.Second)
	c.apiserver = nil
	return nil
}

// RestartAPIServer starts a stopped cluster's kube-apiserver again at the same address, with the
// same certificates and data.
func (s *Sandbox) RestartAPIServer(ctx context.Context, name string) error {
	c := s.Cluster(name)
	if c == nil || c.apiserver != nil {
		return fmt.Errorf("sandbox: %q is not a stopped API server", name)
	}
	return s.launchAPIServer(ctx, c)
}

// writeKubeconfig writes one context per cluster, each named after its cluster. The admin
// credentials are embedded so the file can be moved.
func writeKubeconfig(path string, clusters []*Cluster, pkis map[string]*pki) error {
	cfg := clientcmdapi.NewConfig()
	for _, c := range clusters {
		p := pkis[c.Name]
		cfg.Clusters[c.Name] = &clientcmdapi.Cluster{Server: c.URL, CertificateAuthorityData: p.caCert}
		cfg.AuthInfos[c.Name+"-admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: p.adminCert, ClientKeyData: p.adminKey}
		cfg.Contexts[c.Name] = &clientcmdapi.Context{Cluster: c.Name, AuthInfo: c.Name + "-admin"}
	}
	cfg.CurrentContext = clusters[0].Name
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("writing kubeconfig %s: %w", path, err)
	}
	return nil
}

func (s *Sandbox) writeMergedKubeconfig() error {
	merged := clientcmdapi.NewConfig()
	for _, c := range s.Clusters {
		one, err := clientcmd.LoadFromFile(c.Kubeconfig)
		if err != nil {
			return err
		}
		for k, v := range one.Clusters {
			merged.Clusters[k] = v
		}
		for k, v := range one.AuthInfos {
			merged.AuthInfos[k] = v
		}
		for k, v := range one.Contexts {
			merged.Contexts[k] = v
		}
	}
	merged.CurrentContext = s.Clusters[0].Name
	s.Kubeconfig = filepath.Join(s.Dir, "kubeconfig")
	return clientcmd.WriteToFile(*merged, s.Kubeconfig)
}

// freePorts finds n distinct free loopback ports. Another process may take one before our child
// binds it; callers detect that (errAddrInUse) and retry.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
