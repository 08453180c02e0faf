//go:build e2e

// Package e2e runs the multi-cluster walkthrough on four kind clusters, with the images built
// from this repository, real Envoy sidecars and gateways, and the walkthrough's own pods (pipy
// answering "Hi, I am from <cluster>", curl calling it). It needs a Docker engine and access to
// the images' registries; `make e2e-kind` runs it. Nothing here runs on machines without Docker
// (the build tag keeps it out of `go test ./...`; CI vets it with `go vet -tags e2e`).
//
// Environment:
//
//	CROSSGATE_E2E_KEEP=1   keep the clusters after the suite (to inspect them with kubectl)
//	CROSSGATE_E2E_REUSE=1  use clusters of the same names if they exist, instead of failing
//	CROSSGATE_E2E_CALLS    calls per behaviour (default 60)
package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/kind/pkg/cluster/nodeutils"

	"github.com/crossgate-io/crossgate/sandbox"
	"github.com/crossgate-io/crossgate/sandbox/walkthrough"
)

func TestKindEndToEnd(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "crossgate on kind: the multi-cluster walkthrough")
}

const (
	controllerImage = "crossgate-controller:e2e"
	initImage       = "crossgate-init:e2e"
)

// The clusters of kind-configs/, with the host port of each member's gateway.
var (
	clusters     = []string{"control-plane", "cluster-1", "cluster-2", "cluster-3"}
	gatewayPorts = map[string]int{"cluster-1": 81, "cluster-2": 82, "cluster-3": 83}
)

var env struct {
	root       string // the repository
	crossgate  string // the CLI, built from the repository
	kubectl    string
	kubeconfig string // every cluster's context, kind-<name>
	hostIP     string // where pods reach the host's published ports
	provider   *cluster.Provider
	calls      int
}

func run(name string, args ...string) string {
	GinkgoHelper()
	cmd := exec.Command(name, args...)
	cmd.Dir = env.root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	Expect(cmd.Run()).To(Succeed(), "%s %s:\n%s", name, strings.Join(args, " "), out.String())
	return out.String()
}

func kubectl(cluster string, stdin string, args ...string) (string, error) {
	cmd := exec.Command(env.kubectl, append([]string{"--kubeconfig", env.kubeconfig, "--context", "kind-" + cluster}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func mustKubectl(cluster, stdin string, args ...string) string {
	GinkgoHelper()
	out, err := kubectl(cluster, stdin, args...)
	Expect(err).NotTo(HaveOccurred(), "kubectl --context kind-%s %s:\n%s", cluster, strings.Join(args, " "), out)
	return out
}

func crossgate(args ...string) string {
	GinkgoHelper()
	return run(env.crossgate, append(args, "--kubeconfig", env.kubeconfig)...)
}

// apply renders one of the walkthrough's manifests for a cluster and applies it there.
func apply(cluster, file, namespace string) {
	GinkgoHelper()
	text, err := walkthrough.Render(file, map[string]string{
		"CLUSTER_NAME": cluster, "NAMESPACE_MESH": "httpbin", "HOST_IP": env.hostIP, "FSM_NAMESPACE": "fsm-system",
	}, "")
	Expect(err).NotTo(HaveOccurred())
	args := []string{"apply", "-f", "-"}
	if namespace != "" {
		args = []string{"apply", "-n", namespace, "-f", "-"}
	}
	mustKubectl(cluster, text, args...)
}

// meshNamespace is `kubectl create namespace` and `fsm namespace add`; the federation may have
// created the namespace for imports already.
func meshNamespace(cluster, ns string) {
	GinkgoHelper()
	mustKubectl(cluster, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: "+ns+"\n", "apply", "-f", "-")
	crossgate("namespace", "add", ns, "--context", "kind-"+cluster)
}

func waitReady(cluster, ns string) {
	GinkgoHelper()
	Eventually(func() error {
		_, err := kubectl(cluster, "", "wait", "--for=condition=ready", "pod", "-n", ns, "--all", "--timeout=10s")
		return err
	}).WithTimeout(3 * time.Minute).WithPolling(time.Second).Should(Succeed())
}

var fromCluster = regexp.MustCompile(`Hi, I am from (cluster-[0-9]+)`)

// callFromCurl is the walkthrough's `kubectl exec curl -- curl -s http://httpbin.httpbin:8080/`,
// n times in one exec; it counts the answering clusters ("failed" for anything else).
func callFromCurl(n int) map[string]int {
	GinkgoHelper()
	script := fmt.Sprintf(`for i in $(seq %d); do curl -s -m 5 http://httpbin.httpbin:8080/ || echo FAILED; echo; done`, n)
	out, _ := kubectl("cluster-2", "", "exec", "-n", "curl", "deploy/curl", "-c", "curl", "--", "sh", "-c", script)
	counts := map[string]int{}
	got := 0
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if m := fromCluster.FindStringSubmatch(line); m != nil {
			counts[m[1]]++
		} else {
			counts["failed"]++
		}
		got++
	}
	if got < n {
		counts["failed"] += n - got
	}
	return counts
}

// curlFrom runs curl with args in cluster-2's curl pod and returns its output.
func curlFrom(args ...string) string {
	GinkgoHelper()
	out, _ := kubectl("cluster-2", "", append([]string{"exec", "-n", "curl", "deploy/curl", "-c", "curl", "--", "curl"}, args...)...)
	return strings.TrimSpace(out)
}

func clustersOf(counts map[string]int) []string {
	var out []string
	for k := range counts {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// expect waits until a batch of calls is answered by exactly want (the change has reached the
// sidecar), then counts env.calls calls and checks each cluster's share is within tolerance of
// an even split.
func expect(want []string, tolerance float64) map[string]int {
	GinkgoHelper()
	Eventually(func() []string { return clustersOf(callFromCurl(10)) }).
		WithTimeout(time.Minute).WithPolling(2 * time.Second).Should(Equal(want))
	counts := callFromCurl(env.calls)
	GinkgoWriter.Printf("answers: %v\n", counts)
	Expect(clustersOf(counts)).To(Equal(want), "answers %v", counts)
	for _, c := range want {
		share := float64(counts[c]) / float64(env.calls)
		Expect(share).To(BeNumerically("~", 1/float64(len(want)), tolerance), "%s answered %d of %d: %v", c, counts[c], env.calls, counts)
	}
	return counts
}

var _ = BeforeSuite(func() {
	_, err := exec.LookPath("docker")
	Expect(err).NotTo(HaveOccurred(), "the kind end-to-end suite needs a Docker engine")
	Expect(exec.Command("docker", "info").Run()).To(Succeed(), "docker info failed: is the Docker engine running?")

	wd, err := os.Getwd()
	Expect(err).NotTo(HaveOccurred())
	env.root = filepath.Clean(filepath.Join(wd, "..", ".."))
	env.calls = 60
	if v := os.Getenv("CROSSGATE_E2E_CALLS"); v != "" {
		env.calls, err = strconv.Atoi(v)
		Expect(err).NotTo(HaveOccurred(), "CROSSGATE_E2E_CALLS")
	}
	dir := GinkgoT().TempDir()
	env.crossgate, err = sandbox.BuildCommands(filepath.Join(dir, "bin"))
	Expect(err).NotTo(HaveOccurred())
	binDir, err := sandbox.BinDir()
	Expect(err).NotTo(HaveOccurred())
	env.kubectl = filepath.Join(binDir, "kubectl")
	Expect(env.kubectl).To(BeAnExistingFile(), "kubectl: run make bins")

	By("building the images")
	run("docker", "build", "-t", controllerImage, ".")
	run("docker", "build", "-t", initImage, "images/init")

	By("creating the kind clusters of kind-configs/")
	env.provider = cluster.NewProvider(cluster.ProviderWithDocker())
	existing, err := env.provider.List()
	Expect(err).NotTo(HaveOccurred())
	var kubeconfigs []string
	for _, name := range clusters {
		if slices.Contains(existing, name) {
			Expect(os.Getenv("CROSSGATE_E2E_REUSE")).To(Equal("1"), "a kind cluster named %s exists: delete it, or set CROSSGATE_E2E_REUSE=1", name)
		} else {
			Expect(env.provider.Create(name, cluster.CreateWithConfigFile(filepath.Join(env.root, "kind-configs", name+".yaml")),
				cluster.CreateWithWaitForReady(3*time.Minute))).To(Succeed())
		}
		nodes, err := env.provider.ListNodes(name)
		Expect(err).NotTo(HaveOccurred())
		for _, img := range []string{controllerImage, initImage} {
			for _, n := range nodes {
				save := exec.Command("docker", "save", img)
				pipe, err := save.StdoutPipe()
				Expect(err).NotTo(HaveOccurred())
				Expect(save.Start()).To(Succeed())
				Expect(nodeutils.LoadImageArchive(n, pipe)).To(Succeed(), "loading %s into %s", img, n)
				Expect(save.Wait()).To(Succeed())
			}
		}
		kc := filepath.Join(dir, name+".kubeconfig")
		Expect(env.provider.ExportKubeConfig(name, kc, false)).To(Succeed())
		kubeconfigs = append(kubeconfigs, kc)
	}
	// One file with every context, as kubectl merges KUBECONFIG.
	merged := exec.Command(env.kubectl, "config", "view", "--flatten")
	merged.Env = append(os.Environ(), "KUBECONFIG="+strings.Join(kubeconfigs, string(os.PathListSeparator)))
	out, err := merged.Output()
	Expect(err).NotTo(HaveOccurred())
	env.kubeconfig = filepath.Join(dir, "kubeconfig")
	Expect(os.WriteFile(env.kubeconfig, out, 0o600)).To(Succeed())

	// Pods reach the host's published ports (81-83) at the kind network's gateway.
	ip := run("docker", "network", "inspect", "kind", "-f", "{{range .IPAM.Config}}{{if .Gateway}}{{.Gateway}} {{end}}{{end}}")
	env.hostIP = strings.Fields(ip)[0]

	By("installing crossgate with the CLI")
	for _, name := range clusters {
		args := []string{
			"install", "--context", "kind-" + name, "--timeout", "5m",
			"--set", "clusterSet.name=" + name,
			"--set", "controller.image.repository=crossgate-controller", "--set", "controller.image.tag=e2e", "--set", "controller.image.pullPolicy=Never",
			"--set", "proxy.initImage=" + initImage,
		}
		if p, ok := gatewayPorts[name]; ok {
			args = append(args, "--set", fmt.Sprintf("gateway.lbPort=%d", p), "--set", "gateway.nodePort=30080")
		} else {
			args = append(args, "--set", "gateway.enabled=false")
		}
		crossgate(args...)
	}

	By("joining cluster-1..3 to the control plane")
	for _, name := range clusters[1:] {
		crossgate("cluster", "join", "kind-"+name, "--name", name, "--context", "kind-control-plane",
			"--gateway-host", env.hostIP, "--gateway-port", strconv.Itoa(gatewayPorts[name]))
	}
	mustKubectl("control-plane", "", "wait", "--for=condition=Managed", "clusters", "--all", "--timeout=120s")
})

var _ = AfterSuite(func() {
	if env.provider == nil || os.Getenv("CROSSGATE_E2E_KEEP") == "1" {
		return
	}
	for _, name := range clusters {
		_ = env.provider.Delete(name, "")
	}
})

var _ = Describe("the multi-cluster walkthrough", Ordered, func() {
	It("runs httpbin in cluster-1 and cluster-3 (ServiceAccount httpbin) and curl in cluster-2", func() {
		for _, c := range []string{"cluster-1", "cluster-3"} {
			meshNamespace(c, "httpbin")
			apply(c, "httpbin-deployment.yaml", "httpbin")
			apply(c, "httpbin-services.yaml", "httpbin")
			waitReady(c, "httpbin")
		}
		meshNamespace("cluster-2", "curl")
		apply("cluster-2", "curl.yaml", "curl")
		waitReady("cluster-2", "curl")
		// Envoy is a native sidecar: an init container that keeps running.
		out := mustKubectl("cluster-2", "", "get", "pod", "-n", "curl", "-l", "app=curl", "-o", "jsonpath={.items[0].spec.initContainers[*].name}")
		Expect(strings.Fields(out)).To(ContainElement("envoy"), "curl's pod has no sidecar")
		out = mustKubectl("cluster-2", "", "get", "pod", "-n", "curl", "-l", "app=curl", "-o", `jsonpath={.items[0].spec.initContainers[?(@.name=="envoy")].restartPolicy}`)
		Expect(out).To(Equal("Always"), "the sidecar is not a native sidecar")
	})

	It("1. exports httpbin: each member's gateway serves its own cluster's path", func() {
		for _, c := range []string{"cluster-1", "cluster-3"} {
			apply(c, "serviceexport-example.yaml", "")
		}
		for _, c := range []string{"cluster-1", "cluster-3"} {
			url := fmt.Sprintf("http://127.0.0.1:%d/%s/httpbin-mesh", gatewayPorts[c], c)
			Eventually(func() string {
				out, _ := exec.Command("curl", "-s", "-m", "5", url).Output()
				return string(out)
			}).WithTimeout(2*time.Minute).WithPolling(2*time.Second).Should(ContainSubstring("Hi, I am from "+c), url)
		}
	})

	It("2. imports httpbin, httpbin-cluster-1 and httpbin-cluster-3 into cluster-2", func() {
		Eventually(func() string {
			out, _ := kubectl("cluster-2", "", "get", "serviceimports", "-n", "httpbin", "-o", "jsonpath={.items[*].metadata.name}")
			return out
		}).WithTimeout(time.Minute).Should(And(ContainSubstring("httpbin-cluster-1"), ContainSubstring("httpbin-cluster-3"), MatchRegexp(`(^| )httpbin( |$)`)))
	})

	It("3. without a GlobalTrafficPolicy, curl in cluster-2 fails", func() {
		expect([]string{"failed"}, 0)
	})

	It("4. FailOver without a local httpbin: cluster-1 and cluster-3", func() {
		apply("cluster-2", "gtp-failover.yaml", "httpbin")
		expect([]string{"cluster-1", "cluster-3"}, 0.15)
	})

	It("5. with httpbin in cluster-2 (ServiceAccount default): only cluster-2", func() {
		meshNamespace("cluster-2", "httpbin")
		apply("cluster-2", "httpbin-deployment-default-sa.yaml", "httpbin")
		apply("cluster-2", "httpbin-services.yaml", "httpbin")
		waitReady("cluster-2", "httpbin")
		expect([]string{"cluster-2"}, 0)
	})

	It("6. ActiveActive: cluster-1, cluster-2 and cluster-3", func() {
		apply("cluster-2", "gtp-activeactive.yaml", "httpbin")
		expect([]string{"cluster-1", "cluster-2", "cluster-3"}, 0.15)
	})

	It("7. policy mode in cluster-2: curl fails", func() {
		for _, c := range []string{"cluster-1", "cluster-3"} {
			apply(c, "serviceexport-httpbin.yaml", "")
		}
		mustKubectl("cluster-2", "", "patch", "meshconfig", "fsm-mesh-config", "-n", "fsm-system",
			"-p", `{"spec":{"traffic":{"enablePermissiveTrafficPolicyMode":false}}}`, "--type=merge")
		expect([]string{"failed"}, 0)
	})

	It("8. TrafficTarget curl-to-httpbin: only cluster-2, whose httpbin runs as default", func() {
		apply("cluster-2", "curl-to-httpbin.yaml", "httpbin")
		expect([]string{"cluster-2"}, 0)
	})

	It("9. TrafficTarget curl-to-ext-httpbin: all three clusters", func() {
		apply("cluster-2", "curl-to-ext-httpbin.yaml", "httpbin")
		expect([]string{"cluster-1", "cluster-2", "cluster-3"}, 0.15)
	})

	// What meshed pods do on real Envoy beyond the walkthrough (test/scenarios asserts the same on
	// the Envoy model); cluster-2 is in policy mode here, curl may GET / of httpbin everywhere.

	It("a meshed pod reaches the API server on 443 with its own TLS", func() {
		code := curlFrom("-sk", "-o", "/dev/null", "-w", "%{http_code}", "https://kubernetes.default.svc/version")
		Expect(code).To(BeElementOf("200", "401", "403"), "HTTPS to the API server from a meshed pod")
	})

	It("a request by ClusterIP crosses to the other clusters' gateways", func() {
		ip := mustKubectl("cluster-2", "", "get", "service", "httpbin", "-n", "httpbin", "-o", "jsonpath={.spec.clusterIP}")
		counts := map[string]int{}
		for range 30 {
			if m := fromCluster.FindStringSubmatch(curlFrom("-s", "-m", "5", "http://"+ip+":8080/")); m != nil {
				counts[m[1]]++
			}
		}
		Expect(clustersOf(counts)).To(Equal([]string{"cluster-1", "cluster-2", "cluster-3"}), "answers %v", counts)
	})

	It("an unknown Host on a mesh port passes through to the Service, whose sidecar enforces the policy", func() {
		code := curlFrom("-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: unknown.example", "http://httpbin.httpbin:8080/")
		Expect(code).To(Equal("403"), "plaintext without an identity reaches httpbin's sidecar in policy mode")
	})

	It("identity across clusters: cluster-1 in policy mode sees and admits curl/curl only", func() {
		// cluster-2 lets a second identity, curl/other, call httpbin everywhere; a pod runs as it.
		mustKubectl("cluster-2", `apiVersion: v1
kind: ServiceAccount
metadata: {name: other, namespace: curl}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: other, namespace: curl}
spec:
  selector: {matchLabels: {app: other}}
  template:
    metadata: {labels: {app: other}}
    spec:
      serviceAccountName: other
      containers: [{name: curl, image: curlimages/curl, imagePullPolicy: IfNotPresent, command: ["sleep", "365d"]}]
---
kind: TrafficTarget
apiVersion: access.smi-spec.io/v1alpha3
metadata: {name: other-to-httpbin, namespace: httpbin}
spec:
  destination: {kind: ServiceAccount, name: default, namespace: httpbin}
  rules: [{kind: HTTPRouteGroup, name: httpbin-route, matches: [all]}]
  sources: [{kind: ServiceAccount, name: other, namespace: curl}]
---
kind: TrafficTarget
apiVersion: access.smi-spec.io/v1alpha3
metadata: {name: other-to-ext-httpbin, namespace: httpbin}
spec:
  destination: {kind: ServiceAccount, name: httpbin, namespace: httpbin}
  rules: [{kind: HTTPRouteGroup, name: httpbin-route, matches: [all]}]
  sources: [{kind: ServiceAccount, name: other, namespace: curl}]
`, "apply", "-f", "-")
		waitReady("cluster-2", "curl")
		// cluster-1: curl/curl may GET / of its httpbin (ServiceAccount httpbin), then policy mode.
		apply("cluster-1", "curl-to-httpbin.yaml", "httpbin")
		apply("cluster-1", "curl-to-ext-httpbin.yaml", "httpbin")
		mustKubectl("cluster-1", "", "patch", "meshconfig", "fsm-mesh-config", "-n", "fsm-system",
			"-p", `{"spec":{"traffic":{"enablePermissiveTrafficPolicyMode":false}}}`, "--type=merge")
		callAs := func(deploy string) map[string]int {
			counts := map[string]int{}
			for range 30 {
				out, _ := kubectl("cluster-2", "", "exec", "-n", "curl", "deploy/"+deploy, "-c", "curl", "--", "curl", "-s", "-m", "5", "http://httpbin.httpbin:8080/")
				if m := fromCluster.FindStringSubmatch(out); m != nil {
					counts[m[1]]++
				} else {
					counts["failed"]++
				}
			}
			return counts
		}
		// Once cluster-1's policy holds, curl/other is never answered by cluster-1 (its sidecar
		// refuses it: it sees the caller, not the gateway), and curl/curl still is.
		Eventually(func() []string { return clustersOf(callAs("other")) }).
			WithTimeout(time.Minute).WithPolling(2 * time.Second).Should(Equal([]string{"cluster-2", "cluster-3", "failed"}))
		Expect(clustersOf(callAs("curl"))).To(Equal([]string{"cluster-1", "cluster-2", "cluster-3"}))
		// A plain request to cluster-1's gateway with httpbin's mesh name finds no route.
		code, _ := exec.Command("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: httpbin.httpbin:8080",
			fmt.Sprintf("http://127.0.0.1:%d/", gatewayPorts["cluster-1"])).Output()
		Expect(string(code)).To(Equal("404"), "plaintext with a mesh name through cluster-1's gateway")
	})

	It("kubelet's HTTP probes pass in policy mode", func() {
		mustKubectl("cluster-2", "", "patch", "deployment", "httpbin", "-n", "httpbin", "--type=strategic", "-p",
			`{"spec":{"template":{"spec":{"containers":[{"name":"pipy","readinessProbe":{"httpGet":{"path":"/","port":8080},"periodSeconds":2}}]}}}}`)
		mustKubectl("cluster-2", "", "rollout", "status", "deployment/httpbin", "-n", "httpbin", "--timeout=3m")
		out := mustKubectl("cluster-2", "", "get", "pod", "-n", "httpbin", "-o", "jsonpath={.items[*].metadata.annotations.crossgate\\.io/probes}")
		Expect(out).To(ContainSubstring(`"port":8080`), "the injector rewrote the probe")
	})

	It("ActiveActive weights 3 (cluster-1) and 1 (cluster-2) share requests 3:1 by locality", func() {
		mustKubectl("cluster-2", `apiVersion: flomesh.io/v1alpha1
kind: GlobalTrafficPolicy
metadata: {name: httpbin, namespace: httpbin}
spec:
  lbType: ActiveActive
  targets:
  - {clusterKey: default/default/default/cluster-1, weight: 3}
  - {clusterKey: default/default/default/cluster-2, weight: 1}
`, "apply", "-f", "-")
		Eventually(func() []string { return clustersOf(callFromCurl(10)) }).
			WithTimeout(time.Minute).WithPolling(2 * time.Second).Should(Equal([]string{"cluster-1", "cluster-2"}))
		counts := callFromCurl(env.calls)
		Expect(float64(counts["cluster-1"])/float64(env.calls)).To(BeNumerically("~", 0.75, 0.15), "answers %v", counts)
	})

	It("status reports the members Managed and cluster-2's imports", func() {
		out := crossgate("status", "--context", "kind-control-plane")
		for _, c := range clusters[1:] {
			Expect(out).To(MatchRegexp(c + `\s+\S+:\d+\s+True`))
		}
		out = crossgate("status", "--context", "kind-cluster-2")
		Expect(out).To(ContainSubstring("httpbin/httpbin-cluster-1"))
		Expect(out).To(MatchRegexp(`Proxies:\s+[1-9][0-9]* xDS streams connected`))
	})

	It("proxy config reaches the controller's loopback-only debug endpoint through a port-forward", func() {
		pod := strings.TrimSpace(mustKubectl("cluster-2", "", "get", "pods", "-n", "curl", "-o", "jsonpath={.items[0].metadata.name}"))
		out := crossgate("proxy", "config", pod, "-n", "curl", "--context", "kind-cluster-2")
		Expect(out).To(MatchRegexp(`(?m)^Listener\s+\S+`))
	})
})
