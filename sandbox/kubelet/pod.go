package kubelet

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/crossgate-io/crossgate/sandbox/network"
)

// Waiting reasons the node reports for a container it does not run.
const (
	// ReasonUnknownImage: the node has no binary for the image.
	ReasonUnknownImage = "ErrImageNeverPull"
	// ReasonConfig: the container asks for what the node cannot give (a command of its own,
	// volume mounts, an environment it cannot resolve).
	ReasonConfig = "CreateContainerConfigError"
	// ReasonBackOff: the container exited and waits to be restarted.
	ReasonBackOff = "CrashLoopBackOff"
	// ReasonCreating: the container waits for the pod's network, or to be started.
	ReasonCreating = "ContainerCreating"
	// ReasonNodeReady is the Node's Ready reason.
	ReasonNodeReady = "KubeletReady"
)

// serviceAccountMount is where the API server's ServiceAccount admission mounts the token; the
// node does not mount it (the processes find the API server through no token file), and does
// not refuse a container for it.
const serviceAccountMount = "/var/run/secrets/kubernetes.io/serviceaccount"

// pod is the worker of one Pod of the node: it owns the pod's network namespace, its port
// forwarders and its containers' processes, and writes the Pod's status.
type pod struct {
	k        *Kubelet
	key      string
	uid      types.UID
	mu       sync.Mutex
	latest   *corev1.Pod
	wake     chan struct{}
	stopping chan struct{}
	stopOnce sync.Once
	grace    int64
	remove   bool // delete the Pod once stopped (it is being deleted)
	done     chan struct{}

	addr       string // pod IP
	hostNet    bool   // the pod runs in the node's network namespace
	networked  bool   // the pod has its address (and namespace)
	netns      int    // -1 without a namespace of its own
	netErr     error  // why the pod has no network
	dir        string // the pod's directory (volumes)
	volumesAt  time.Time
	volErr     error                  // why the volumes could not be written
	listeners  map[int32]net.Listener // by port
	started    metav1.Time
	containers []*container
	written    *corev1.PodStatus
}

type container struct {
	spec      corev1.Container
	cantRun   string // Waiting reason when the node will not run it
	why       string // its message
	cmd       *exec.Cmd
	running   bool
	startedAt metav1.Time
	exit      chan *corev1.ContainerStateTerminated
	restarts  int32
	last      *corev1.ContainerStateTerminated // the previous run's end
	final     bool                             // ended, and not to be restarted
	nextStart time.Time
	backoff   time.Duration
	ready     bool
	probeErr  string
}

func (k *Kubelet) newPod(p *corev1.Pod) *pod {
	w := &pod{
		k: k, key: client.ObjectKeyFromObject(p).String(), uid: p.UID, latest: p.DeepCopy(), netns: -1,
		wake: make(chan struct{}, 1), stopping: make(chan struct{}), done: make(chan struct{}), started: metav1.Now(),
	}
	for _, c := range p.Spec.Containers {
		if k.o.Images[repository(c.Image)].HostNetwork {
			w.hostNet = true
		}
	}
	for _, c := range p.Spec.Containers {
		w.containers = append(w.containers, k.admit(p, c, w.hostNet))
	}
	return w
}

// admit decides whether the node runs a container, and says why not.
func (k *Kubelet) admit(p *corev1.Pod, c corev1.Container, hostNet bool) *container {
	ct := &container{spec: c, exit: make(chan *corev1.ContainerStateTerminated, 1)}
	img, known := k.o.Images[repository(c.Image)]
	switch {
	case !known:
		ct.cantRun, ct.why = ReasonUnknownImage, fmt.Sprintf("the sandbox node runs only the images %s, not %q", strings.Join(slices.Sorted(maps.Keys(k.o.Images)), ", "), c.Image)
	case len(p.Spec.InitContainers) > 0:
		ct.cantRun, ct.why = ReasonConfig, "the sandbox node does not run init containers (spec.initContainers)"
	case len(c.Command) > 0:
		ct.cantRun, ct.why = ReasonConfig, fmt.Sprintf("the sandbox node runs the image's own entrypoint: containers[%s].command is not supported", c.Name)
	case hostNet && !img.HostNetwork:
		ct.cantRun, ct.why = ReasonConfig, fmt.Sprintf("containers[%s] needs a network namespace of its own, and another container of the pod runs in the node's", c.Name)
	default:
		for _, m := range c.VolumeMounts {
			if m.MountPath == serviceAccountMount {
				continue
			}
			if v := volume(p, m.Name); v == nil || (v.ConfigMap == nil && v.Secret == nil) {
				ct.cantRun, ct.why = ReasonConfig, fmt.Sprintf("the sandbox node mounts ConfigMap and Secret volumes only: containers[%s].volumeMounts %s", c.Name, m.Name)
				break
			}
		}
	}
	return ct
}

func volume(p *corev1.Pod, name string) *corev1.Volume {
	for i := range p.Spec.Volumes {
		if p.Spec.Volumes[i].Name == name {
			return &p.Spec.Volumes[i]
		}
	}
	return nil
}

// update hands the worker the Pod's latest state.
func (w *pod) update(p *corev1.Pod) {
	w.mu.Lock()
	w.latest = p.DeepCopy()
	w.mu.Unlock()
	w.poke()
}

func (w *pod) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// terminate stops the pod: its processes get SIGTERM, then SIGKILL after grace seconds; with
// remove, the Pod is deleted once they are gone (it is being deleted).
func (w *pod) terminate(grace int64, remove bool) {
	w.stopOnce.Do(func() {
		w.grace, w.remove = grace, remove
		close(w.stopping)
	})
}

// run is the worker's loop: start and restart containers, probe them, write the status.
func (w *pod) run() {
	defer close(w.done)
	defer w.k.workerDone(w)
	t := time.NewTicker(w.k.o.Period)
	defer t.Stop()
	for {
		select {
		case <-w.stopping:
			w.shutdown()
			return
		default:
		}
		w.step()
		select {
		case <-w.stopping:
		case <-t.C:
		case <-w.wake:
		}
	}
}

func (w *pod) step() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w.mu.Lock()
	p := w.latest.DeepCopy()
	w.mu.Unlock()
	if !w.networked && w.netErr == nil {
		w.netErr = w.network(p)
		w.networked = w.netErr == nil
	}
	if w.networked && time.Since(w.volumesAt) > 10*time.Second {
		// Written at the start and refreshed, as kubelet refreshes Secret volumes (renewed
		// certificates).
		w.volErr = w.k.volumes(ctx, p, w.dir)
		if w.volErr != nil {
			w.k.o.Log.Debug("writing the pod's volumes", "pod", w.key, "error", w.volErr)
		} else {
			w.volumesAt = time.Now()
		}
	}
	if w.netns >= 0 {
		w.exposeServed(ctx, p)
	}
	for _, c := range w.containers {
		w.collect(c)
		if c.cantRun != "" || !w.networked || c.final || c.running || w.volumesAt.IsZero() {
			continue
		}
		if time.Now().Before(c.nextStart) {
			continue
		}
		if err := w.start(ctx, p, c); err != nil {
			c.cantRun, c.why = ReasonConfig, err.Error()
		}
	}
	for _, c := range w.containers {
		w.probe(ctx, c)
	}
	st := w.status(p)
	if w.written != nil && equality.Semantic.DeepEqual(*w.written, st) {
		return
	}
	orig := p.DeepCopy()
	p.Status = st
	if err := w.k.c.Status().Patch(ctx, p, client.MergeFrom(orig)); err != nil {
		w.k.o.Log.Debug("writing the Pod's status", "pod", w.key, "error", err)
		return
	}
	w.written = &st
}

// network gives the pod its address and network namespace, and forwards each declared TCP port
// from the address to the namespace's loopback.
func (w *pod) network(p *corev1.Pod) error {
	ip, err := w.k.allocate(p.Status.PodIP)
	if err != nil {
		return err
	}
	w.addr = ip
	w.dir = filepath.Join(w.k.o.LogDir, p.Namespace+"_"+p.Name+"_"+string(p.UID))
	if err := os.MkdirAll(w.dir, 0o700); err != nil {
		return err
	}
	if w.hostNet {
		return nil // the containers bind the pod's address themselves
	}
	ns, err := newNetns()
	if err != nil {
		return err
	}
	w.netns = ns
	w.listeners = map[int32]net.Listener{}
	for _, c := range p.Spec.Containers {
		for _, port := range c.Ports {
			if port.Protocol == "" || port.Protocol == corev1.ProtocolTCP {
				if err := w.expose(port.ContainerPort); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// expose forwards the pod's address:port to port in its namespace (once).
func (w *pod) expose(port int32) error {
	if w.listeners[port] != nil {
		return nil
	}
	ln, err := net.Listen("tcp", network.LoopbackAddr(net.JoinHostPort(w.addr, strconv.Itoa(int(port)))))
	if err != nil {
		return fmt.Errorf("the pod's port %d: %w", port, err)
	}
	w.listeners[port] = ln
	go w.forward(ln, int(port))
	return nil
}

// exposeServed exposes, besides the declared container ports, every port that an EndpointSlice
// sends to the pod at (a Service's targetPort need not be declared): whatever reaches the pod's
// address reaches its namespace, as on a pod network.
func (w *pod) exposeServed(ctx context.Context, p *corev1.Pod) {
	var l discoveryv1.EndpointSliceList
	if err := w.k.c.List(ctx, &l, client.InNamespace(p.Namespace)); err != nil {
		return
	}
	for _, s := range l.Items {
		if !slices.ContainsFunc(s.Endpoints, func(e discoveryv1.Endpoint) bool { return e.TargetRef != nil && e.TargetRef.UID == p.UID }) {
			continue
		}
		for _, port := range s.Ports {
			if port.Port != nil && (port.Protocol == nil || *port.Protocol == corev1.ProtocolTCP) {
				if err := w.expose(*port.Port); err != nil {
					w.k.o.Log.Debug("exposing a port of the pod", "pod", w.key, "error", err)
				}
			}
		}
	}
}

// forward carries each connection to the pod's address:port to port in the pod's namespace.
func (w *pod) forward(ln net.Listener, port int) {
	network.Forward(ln, func() (net.Conn, error) { return w.dial(context.Background(), port) })
}

// dial connects to port on the pod's loopback, from inside its network namespace (at the pod's
// address for a pod in the node's namespace).
func (w *pod) dial(ctx context.Context, port int) (net.Conn, error) {
	if w.netns < 0 {
		return (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, "tcp", network.LoopbackAddr(net.JoinHostPort(w.addr, strconv.Itoa(port))))
	}
	var conn net.Conn
	err := inNetns(w.netns, func() error {
		var err error
		conn, err = (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		return err
	})
	return conn, err
}

// start runs a container's process in the pod's namespace, its output to the container's log.
func (w *pod) start(ctx context.Context, p *corev1.Pod, c *container) error {
	env, err := w.k.environment(ctx, p, w.addr, c.spec)
	if err != nil {
		return err
	}
	img := w.k.o.Images[repository(c.spec.Image)]
	logf, err := os.OpenFile(w.k.logPath(p.Namespace, p.Name, c.spec.Name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	lw := newLogWriter(logf)
	defer lw.closeWhenDone()
	stdout, err := lw.pipe("stdout")
	if err != nil {
		return err
	}
	defer stdout.Close() // the process has its own copy
	stderr, err := lw.pipe("stderr")
	if err != nil {
		return err
	}
	defer stderr.Close()
	// No mount namespace: the volumes are under the pod's directory, and the paths under a
	// mountPath in the container's args and environment are rewritten to there.
	var mounts []string
	rewrite := func(v string) string { return v }
	for _, m := range c.spec.VolumeMounts {
		if m.MountPath == serviceAccountMount {
			continue
		}
		at, dir := filepath.Clean(m.MountPath), filepath.Join(w.dir, "volumes", m.Name)
		mounts = append(mounts, at+"="+dir)
		prev := rewrite
		rewrite = func(v string) string {
			if rest, ok := strings.CutPrefix(v, at); ok && (rest == "" || rest[0] == '/') {
				return dir + rest
			}
			return prev(v)
		}
	}
	args := append(slices.Clone(img.Args), c.spec.Args...)
	for i := range args {
		args[i] = rewrite(args[i])
	}
	for i, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[i] = k + "=" + rewrite(v)
		}
	}
	cmd := exec.Command(img.Path, args...)
	cmd.Env = append(env, MountsEnv+"="+strings.Join(mounts, ";"))
	cmd.Dir = os.TempDir()
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = procAttr()
	if img.HostNetwork {
		cmd.Env = append(cmd.Env, PodAddressEnv+"="+network.Loopback(w.addr))
		err = cmd.Start()
	} else {
		err = inNetns(w.netns, cmd.Start)
	}
	if err != nil {
		return fmt.Errorf("starting %s: %w", img.Path, err)
	}
	c.cmd, c.running, c.startedAt, c.ready, c.probeErr = cmd, true, metav1.Now(), false, ""
	go func() {
		err := cmd.Wait()
		end := &corev1.ContainerStateTerminated{FinishedAt: metav1.Now(), StartedAt: c.startedAt, ContainerID: containerID(cmd)}
		var exit *exec.ExitError
		switch {
		case errors.As(err, &exit):
			end.ExitCode = int32(exit.ExitCode())
			if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				end.ExitCode, end.Signal, end.Reason = 128+int32(ws.Signal()), int32(ws.Signal()), "Error"
			} else {
				end.Reason = "Error"
			}
		case err != nil:
			end.ExitCode, end.Reason, end.Message = 1, "Error", err.Error()
		default:
			end.Reason = "Completed"
		}
		c.exit <- end
		w.poke()
	}()
	return nil
}

func containerID(cmd *exec.Cmd) string { return "sandbox://" + strconv.Itoa(cmd.Process.Pid) }

// collect notes a container's exit, and whether and when it starts again (restartPolicy, with
// a back-off that doubles from 1s to 20s and resets after a minute of running).
func (w *pod) collect(c *container) {
	select {
	case end := <-c.exit:
		c.running, c.ready, c.last = false, false, end
		w.mu.Lock()
		policy := w.latest.Spec.RestartPolicy
		w.mu.Unlock()
		if policy == corev1.RestartPolicyNever || (policy == corev1.RestartPolicyOnFailure && end.ExitCode == 0) {
			c.final = true
			return
		}
		c.restarts++
		if end.FinishedAt.Sub(end.StartedAt.Time) > time.Minute {
			c.backoff = 0
		}
		c.backoff = min(max(2*c.backoff, time.Second), 20*time.Second)
		c.nextStart = time.Now().Add(c.backoff)
	default:
	}
}

// probe runs a running container's readiness probe (none: ready once started, as kubelet
// does); exec and gRPC probes are not run here, and say so.
func (w *pod) probe(ctx context.Context, c *container) {
	if !c.running {
		c.ready = false
		return
	}
	rp := c.spec.ReadinessProbe
	if rp == nil {
		c.ready = true
		return
	}
	if time.Since(c.startedAt.Time) < time.Duration(rp.InitialDelaySeconds)*time.Second {
		return
	}
	err := w.check(ctx, c.spec, rp.ProbeHandler, time.Duration(max(rp.TimeoutSeconds, 1))*time.Second)
	c.ready = err == nil
	c.probeErr = ""
	if err != nil {
		c.probeErr = "Readiness probe failed: " + err.Error()
	}
}

func (w *pod) check(ctx context.Context, spec corev1.Container, h corev1.ProbeHandler, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case h.TCPSocket != nil:
		port, err := containerPort(spec, h.TCPSocket.Port.String())
		if err != nil {
			return err
		}
		conn, err := w.dial(ctx, port)
		if err != nil {
			return err
		}
		return conn.Close()
	case h.HTTPGet != nil:
		return w.httpGet(ctx, spec, h.HTTPGet)
	default:
		return errors.New("the sandbox node runs httpGet and tcpSocket probes only")
	}
}

// containerPort resolves a probe's port, a number or the name of a container port.
func containerPort(spec corev1.Container, port string) (int, error) {
	if n, err := strconv.Atoi(port); err == nil {
		return n, nil
	}
	for _, p := range spec.Ports {
		if p.Name == port {
			return int(p.ContainerPort), nil
		}
	}
	return 0, fmt.Errorf("the container has no port named %q", port)
}

// shutdown stops every container (SIGTERM, SIGKILL after the grace period), the forwarders and
// the namespace, and deletes the Pod if it is being deleted.
func (w *pod) shutdown() {
	for _, c := range w.containers {
		if c.running {
			_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGTERM)
		}
	}
	deadline := time.After(time.Duration(min(w.grace, 30)) * time.Second)
	for _, c := range w.containers {
		if !c.running {
			continue
		}
		select {
		case <-c.exit:
		case <-deadline:
			_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
			<-c.exit
		}
		c.running = false
	}
	for _, ln := range w.listeners {
		_ = ln.Close()
	}
	if w.netns >= 0 {
		_ = unix.Close(w.netns)
	}
	if w.dir != "" {
		_ = os.RemoveAll(w.dir)
	}
	if w.remove {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		w.mu.Lock()
		p := w.latest
		w.mu.Unlock()
		if err := w.k.confirmDeletion(ctx, p); err != nil {
			w.k.o.Log.Warn("completing the Pod's deletion", "pod", w.key, "error", err)
		}
	}
}
