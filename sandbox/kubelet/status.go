package kubelet

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// status is the Pod's status as the node sees it now; transition times are kept from the status
// last written while a condition does not change.
func (w *pod) status(p *corev1.Pod) corev1.PodStatus {
	st := p.Status
	if w.written != nil {
		st = *w.written.DeepCopy()
	}
	st.HostIP, st.HostIPs = "127.0.0.1", []corev1.HostIP{{IP: "127.0.0.1"}}
	st.StartTime = &w.started
	st.PodIP, st.PodIPs = "", nil
	if w.networked {
		st.PodIP, st.PodIPs = w.addr, []corev1.PodIP{{IP: w.addr}}
	}
	st.ContainerStatuses = nil
	running, ended, failed, ready := 0, 0, 0, 0
	notReady := []string{}
	for _, c := range w.containers {
		cs := corev1.ContainerStatus{
			Name: c.spec.Name, Image: c.spec.Image, RestartCount: c.restarts, Ready: c.ready, Started: new(c.running),
		}
		if img, ok := w.k.o.Images[repository(c.spec.Image)]; ok {
			cs.ImageID = "sandbox://" + img.Path
		}
		if c.last != nil {
			cs.LastTerminationState.Terminated = c.last
		}
		switch {
		case c.running:
			running++
			cs.ContainerID = containerID(c.cmd)
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: c.startedAt}
		case c.final:
			ended++
			if c.last.ExitCode != 0 {
				failed++
			}
			cs.State.Terminated, cs.LastTerminationState.Terminated = c.last, nil
		case c.cantRun != "":
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: c.cantRun, Message: c.why}
		case w.netErr != nil:
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: ReasonCreating, Message: w.netErr.Error()}
		case w.volErr != nil && w.volumesAt.IsZero():
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: ReasonCreating, Message: "MountVolume.SetUp failed: " + w.volErr.Error()}
		case c.last != nil:
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: ReasonBackOff, Message: fmt.Sprintf("back-off restarting the failed container %s (exit code %d)", c.spec.Name, c.last.ExitCode)}
		default:
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: ReasonCreating}
		}
		if c.ready {
			ready++
		} else {
			why := c.spec.Name
			switch {
			case cs.State.Waiting != nil:
				why += " (" + cs.State.Waiting.Reason + ")"
			case c.probeErr != "":
				why += " (" + c.probeErr + ")"
			}
			notReady = append(notReady, why)
		}
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
	}
	n := len(w.containers)
	switch {
	case ended == n && failed > 0:
		st.Phase = corev1.PodFailed
	case ended == n:
		st.Phase = corev1.PodSucceeded
	case running+ended == n || (running > 0 && p.Spec.RestartPolicy != corev1.RestartPolicyNever):
		st.Phase = corev1.PodRunning
	default:
		st.Phase = corev1.PodPending
	}
	setCondition(&st, corev1.PodScheduled, true, "", "")
	if w.networked {
		setCondition(&st, corev1.PodReadyToStartContainers, true, "", "")
	} else {
		msg := "the pod's network is being set up"
		if w.netErr != nil {
			msg = w.netErr.Error()
		}
		setCondition(&st, corev1.PodReadyToStartContainers, false, "NetworkNotReady", msg)
	}
	setCondition(&st, corev1.PodInitialized, true, "", "")
	allReady := ready == n
	msg := ""
	if !allReady {
		msg = "containers with unready status: [" + strings.Join(notReady, " ") + "]"
	}
	setCondition(&st, corev1.ContainersReady, allReady, reasonIf(!allReady, "ContainersNotReady"), msg)
	for _, g := range p.Spec.ReadinessGates {
		if !conditionTrue(&p.Status, g.ConditionType) {
			allReady = false
			msg = "corresponding condition of pod readiness gate \"" + string(g.ConditionType) + "\" does not exist or is not True"
		}
	}
	if st.Phase == corev1.PodSucceeded || st.Phase == corev1.PodFailed {
		allReady = false
	}
	setCondition(&st, corev1.PodReady, allReady, reasonIf(!allReady, "ContainersNotReady"), msg)
	return st
}

// Explain says in one line why a Pod is not ready: its phase, its containers' waiting reasons
// and messages, their last exit, and its Ready condition's message.
func Explain(p *corev1.Pod) string {
	parts := []string{"pod " + p.Name + " " + string(p.Status.Phase)}
	for _, cs := range p.Status.ContainerStatuses {
		switch {
		case cs.State.Waiting != nil:
			w := cs.State.Waiting
			parts = append(parts, fmt.Sprintf("container %s waiting: %s %s", cs.Name, w.Reason, w.Message))
		case cs.State.Terminated != nil:
			parts = append(parts, fmt.Sprintf("container %s terminated: exit code %d", cs.Name, cs.State.Terminated.ExitCode))
		}
		if t := cs.LastTerminationState.Terminated; t != nil {
			parts = append(parts, fmt.Sprintf("container %s last exited with code %d (restarted %d times)", cs.Name, t.ExitCode, cs.RestartCount))
		}
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status != corev1.ConditionTrue && c.Message != "" {
			parts = append(parts, c.Message)
		}
	}
	return strings.Join(parts, ", ")
}

func reasonIf(b bool, reason string) string {
	if b {
		return reason
	}
	return ""
}

func conditionTrue(st *corev1.PodStatus, t corev1.PodConditionType) bool {
	for _, c := range st.Conditions {
		if c.Type == t {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// setCondition sets a Pod condition, keeping its transition time when its status is unchanged.
func setCondition(st *corev1.PodStatus, t corev1.PodConditionType, ok bool, reason, msg string) {
	status := corev1.ConditionFalse
	if ok {
		status = corev1.ConditionTrue
	}
	for i := range st.Conditions {
		if c := &st.Conditions[i]; c.Type == t {
			if c.Status != status {
				c.LastTransitionTime = metav1.Now()
			}
			c.Status, c.Reason, c.Message = status, reason, msg
			return
		}
	}
	st.Conditions = append(st.Conditions, corev1.PodCondition{Type: t, Status: status, Reason: reason, Message: msg, LastTransitionTime: metav1.Now()})
}

// SetPodReady sets a Pod's Ready and ContainersReady conditions and its containers' readiness.
func SetPodReady(p *corev1.Pod, ready bool) {
	for _, t := range []corev1.PodConditionType{corev1.PodReady, corev1.ContainersReady} {
		setCondition(&p.Status, t, ready, "", "")
	}
	for i := range p.Status.ContainerStatuses {
		p.Status.ContainerStatuses[i].Ready = ready
	}
}

// environment is a container's environment as kubelet would give it: PATH and HOSTNAME, then
// its env (value, fieldRef, configMapKeyRef, secretKeyRef, with $(VAR) references to earlier
// variables expanded) and envFrom.
func (k *Kubelet) environment(ctx context.Context, p *corev1.Pod, podIP string, c corev1.Container) ([]string, error) {
	vars := map[string]string{}
	var order []string
	set := func(name, v string) {
		if _, ok := vars[name]; !ok {
			order = append(order, name)
		}
		vars[name] = v
	}
	set("PATH", os.Getenv("PATH"))
	set("HOSTNAME", p.Name)
	for _, from := range c.EnvFrom {
		data, err := k.source(ctx, p.Namespace, from.ConfigMapRef, from.SecretRef)
		if err != nil {
			return nil, fmt.Errorf("containers[%s].envFrom: %w", c.Name, err)
		}
		for name, v := range data {
			set(from.Prefix+name, v)
		}
	}
	for _, e := range c.Env {
		v := os.Expand(strings.ReplaceAll(e.Value, "$(", "${"), func(name string) string {
			if x, ok := vars[name]; ok {
				return x
			}
			return "$(" + name + ")"
		})
		if f := e.ValueFrom; f != nil {
			var err error
			switch {
			case f.FieldRef != nil:
				v, err = fieldRef(p, podIP, f.FieldRef.FieldPath)
			case f.ConfigMapKeyRef != nil:
				v, err = k.key(ctx, p.Namespace, &f.ConfigMapKeyRef.LocalObjectReference, nil, f.ConfigMapKeyRef.Key, f.ConfigMapKeyRef.Optional)
			case f.SecretKeyRef != nil:
				v, err = k.key(ctx, p.Namespace, nil, &f.SecretKeyRef.LocalObjectReference, f.SecretKeyRef.Key, f.SecretKeyRef.Optional)
			default:
				err = fmt.Errorf("the sandbox node resolves fieldRef, configMapKeyRef and secretKeyRef only")
			}
			if err != nil {
				return nil, fmt.Errorf("containers[%s].env[%s]: %w", c.Name, e.Name, err)
			}
		}
		set(e.Name, v)
	}
	out := make([]string, 0, len(order))
	for _, name := range order {
		out = append(out, name+"="+vars[name])
	}
	return out, nil
}

// fieldRef is the value of a downward API field.
func fieldRef(p *corev1.Pod, podIP, path string) (string, error) {
	switch path {
	case "metadata.name":
		return p.Name, nil
	case "metadata.namespace":
		return p.Namespace, nil
	case "metadata.uid":
		return string(p.UID), nil
	case "spec.nodeName":
		return p.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return p.Spec.ServiceAccountName, nil
	case "status.podIP", "status.podIPs":
		return podIP, nil
	case "status.hostIP", "status.hostIPs":
		return "127.0.0.1", nil
	}
	for prefix, m := range map[string]map[string]string{"metadata.labels": p.Labels, "metadata.annotations": p.Annotations} {
		if rest, ok := strings.CutPrefix(path, prefix+"['"); ok && strings.HasSuffix(rest, "']") {
			return m[strings.TrimSuffix(rest, "']")], nil
		}
	}
	return "", fmt.Errorf("fieldRef %q is not supported", path)
}

// source reads a ConfigMap's or Secret's data.
func (k *Kubelet) source(ctx context.Context, ns string, cm *corev1.ConfigMapEnvSource, sec *corev1.SecretEnvSource) (map[string]string, error) {
	data := map[string]string{}
	switch {
	case cm != nil:
		var o corev1.ConfigMap
		if err := k.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: cm.Name}, &o); err != nil {
			if cm.Optional != nil && *cm.Optional {
				return data, nil
			}
			return nil, err
		}
		return o.Data, nil
	case sec != nil:
		var o corev1.Secret
		if err := k.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: sec.Name}, &o); err != nil {
			if sec.Optional != nil && *sec.Optional {
				return data, nil
			}
			return nil, err
		}
		for name, v := range o.Data {
			data[name] = string(v)
		}
	}
	return data, nil
}

// key reads one key of a ConfigMap or Secret.
func (k *Kubelet) key(ctx context.Context, ns string, cm, sec *corev1.LocalObjectReference, key string, optional *bool) (string, error) {
	var data map[string]string
	var err error
	if cm != nil {
		data, err = k.source(ctx, ns, &corev1.ConfigMapEnvSource{LocalObjectReference: *cm, Optional: optional}, nil)
	} else {
		data, err = k.source(ctx, ns, nil, &corev1.SecretEnvSource{LocalObjectReference: *sec, Optional: optional})
	}
	if err != nil {
		return "", err
	}
	v, ok := data[key]
	if !ok && (optional == nil || !*optional) {
		return "", fmt.Errorf("key %q not found", key)
	}
	return v, nil
}

// httpGet runs an httpGet probe in the pod's namespace: a status from 200 to 399 succeeds.
func (w *pod) httpGet(ctx context.Context, spec corev1.Container, g *corev1.HTTPGetAction) error {
	if g.Scheme == corev1.URISchemeHTTPS {
		return fmt.Errorf("the sandbox node runs httpGet probes over HTTP only")
	}
	port, err := containerPort(spec, g.Port.String())
	if err != nil {
		return err
	}
	conn, err := w.dial(ctx, port)
	if err != nil {
		return err
	}
	defer conn.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	host := w.addr
	if g.Host != "" {
		host = g.Host
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, strconv.Itoa(port))+"/"+strings.TrimPrefix(g.Path, "/"), nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "kube-probe/sandbox")
	for _, h := range g.HTTPHeaders {
		req.Header.Set(h.Name, h.Value)
	}
	if err := req.Write(conn); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("HTTP probe failed with statuscode: %d", resp.StatusCode)
	}
	return nil
}

// volumes writes the pod's ConfigMap and Secret volumes into dir/volumes/<name>/<key>, each
// file replaced whole.
func (k *Kubelet) volumes(ctx context.Context, p *corev1.Pod, dir string) error {
	for _, v := range p.Spec.Volumes {
		var data map[string]string
		var items []corev1.KeyToPath
		var err error
		switch {
		case v.ConfigMap != nil:
			items = v.ConfigMap.Items
			data, err = k.source(ctx, p.Namespace, &corev1.ConfigMapEnvSource{LocalObjectReference: v.ConfigMap.LocalObjectReference, Optional: v.ConfigMap.Optional}, nil)
		case v.Secret != nil:
			items = v.Secret.Items
			data, err = k.source(ctx, p.Namespace, nil, &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: v.Secret.SecretName}, Optional: v.Secret.Optional})
		default:
			continue
		}
		if err != nil {
			return fmt.Errorf("volume %s: %w", v.Name, err)
		}
		if len(items) > 0 { // only these keys, at these paths
			picked := map[string]string{}
			for _, it := range items {
				if val, ok := data[it.Key]; ok {
					picked[it.Path] = val
				}
			}
			data = picked
		}
		vd := filepath.Join(dir, "volumes", v.Name)
		if err := os.MkdirAll(vd, 0o700); err != nil {
			return err
		}
		for key, val := range data {
			path := filepath.Join(vd, filepath.Clean("/"+key)) // an item's path stays inside
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				return err
			}
			if old, err := os.ReadFile(path); err == nil && string(old) == val {
				continue
			}
			if err := os.WriteFile(path+".tmp", []byte(val), 0o600); err != nil {
				return err
			}
			if err := os.Rename(path+".tmp", path); err != nil {
				return err
			}
		}
	}
	return nil
}
