package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
	"github.com/crossgate-io/crossgate/controllers/federation/plan"
	"github.com/crossgate-io/crossgate/debounce"
	"github.com/crossgate-io/crossgate/wellknown"
)

// loop is the aggregation loop: after any change in the control plane or a member (debounced),
// it reads every member, computes the plan and writes what differs. Only the leader runs it.
type loop struct {
	f      *Federation
	cancel context.CancelFunc
}

func (l *loop) NeedLeaderElection() bool { return true }

func (l *loop) Start(ctx context.Context) error {
	f := l.f
	defer func() {
		l.cancel()
		f.mu.Lock()
		var conns []*connection
		for _, m := range f.members {
			if m.conn != nil {
				conns = append(conns, m.conn)
			}
		}
		f.mu.Unlock()
		for _, c := range conns {
			c.stop()
		}
	}()
	// One aggregation pass after a burst of changes (debounce: a quiet period, at most MaxDelay
	// after the first); a pass that could not write everything runs again a second later.
	var deb *debounce.Debouncer
	deb = debounce.New(f.opts.Quiet, f.opts.MaxDelay, func() {
		if err := f.sync(ctx); err != nil && ctx.Err() == nil {
			f.opts.Log.Warn("federation pass incomplete; retrying", "error", err)
			time.AfterFunc(time.Second, deb.Trigger)
		}
	})
	defer deb.Stop()
	deb.Trigger()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-f.kick:
			deb.Trigger()
		}
	}
}

// target is a member the pass writes to.
type target struct {
	m   *member
	cl  client.Client
	src *plan.Source
}

// sync is one aggregation pass.
func (f *Federation) sync(ctx context.Context) error {
	var clusters flomeshv1alpha1.ClusterList
	if err := f.cp.List(ctx, &clusters); err != nil {
		return err
	}
	var sources []*plan.Source
	var targets []target
	var errs []error
	f.mu.Lock()
	for i := range clusters.Items {
		c := &clusters.Items[i]
		m := f.members[c.Name]
		if !c.DeletionTimestamp.IsZero() || (m != nil && m.leaving) {
			continue
		}
		src := &plan.Source{Key: c.Key(), Gateway: plan.GatewayTarget(c)}
		switch {
		case m != nil && m.conn != nil && m.conn.synced.Load():
			if err := read(ctx, m.conn.cache, src); err != nil {
				errs = append(errs, fmt.Errorf("reading cluster %s: %w", c.Name, err))
				continue
			}
			m.last = src
			if m.conn.healthy.Load() {
				targets = append(targets, target{m: m, cl: m.conn.client, src: src})
			}
		case m != nil && m.last != nil:
			last := *m.last
			last.Key, last.Gateway = src.Key, src.Gateway
			src = &last
		}
		sources = append(sources, src)
	}
	f.mu.Unlock()

	p := plan.Aggregate(sources)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, t := range targets {
		wg.Go(func() {
			if err := f.apply(ctx, t, p); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("writing to cluster %s: %w", t.m.name, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// read fills src from a member's cache.
func read(ctx context.Context, c client.Reader, src *plan.Source) error {
	var exports flomeshv1alpha1.ServiceExportList
	if err := c.List(ctx, &exports); err != nil {
		return err
	}
	var imports flomeshv1alpha1.ServiceImportList
	if err := c.List(ctx, &imports); err != nil {
		return err
	}
	src.Known = true
	src.Services = map[types.NamespacedName]*corev1.Service{}
	for i := range exports.Items {
		e := &exports.Items[i]
		src.Exports = append(src.Exports, e)
		var svc corev1.Service
		k := types.NamespacedName{Namespace: e.Namespace, Name: e.Name}
		if err := c.Get(ctx, k, &svc); err == nil {
			src.Services[k] = &svc
		} else if !apierrors.IsNotFound(err) {
			return err
		}
	}
	for i := range imports.Items {
		src.Imports = append(src.Imports, &imports.Items[i])
	}
	return nil
}

// apply writes to one member what differs between the plan and what the member holds.
func (f *Federation) apply(ctx context.Context, t target, p *plan.Plan) error {
	t.m.writeMu.Lock()
	defer t.m.writeMu.Unlock()
	f.mu.Lock()
	leaving := t.m.leaving
	f.mu.Unlock()
	if leaving {
		return nil
	}
	var errs []error
	current := map[types.NamespacedName]*flomeshv1alpha1.ServiceImport{}
	for _, imp := range t.src.Imports {
		current[types.NamespacedName{Namespace: imp.Namespace, Name: imp.Name}] = imp
	}
	for _, want := range p.Imports[t.src.Key] {
		k := types.NamespacedName{Namespace: want.Namespace, Name: want.Name}
		cur := current[k]
		delete(current, k)
		errs = append(errs, f.applyImport(ctx, t.cl, cur, want))
	}
	for _, stale := range current {
		err := t.cl.Delete(ctx, stale, client.Preconditions{UID: &stale.UID})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			errs = append(errs, fmt.Errorf("deleting ServiceImport %s/%s: %w", stale.Namespace, stale.Name, err))
		}
	}
	exports := map[types.NamespacedName]*flomeshv1alpha1.ServiceExport{}
	for _, e := range t.src.Exports {
		exports[types.NamespacedName{Namespace: e.Namespace, Name: e.Name}] = e
	}
	for _, s := range p.Exports[t.src.Key] {
		if e := exports[types.NamespacedName{Namespace: s.Namespace, Name: s.Name}]; e != nil {
			errs = append(errs, f.applyConflict(ctx, t.cl, e, s.Condition))
		}
	}
	return errors.Join(errs...)
}

// importApply is the body of the server-side apply of an import: only the fields the federation
// owns, so spec.ips, written by the member, is left alone.
type importApply struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   applyMeta         `json:"metadata"`
	Spec       *importApplySpec  `json:"spec,omitempty"`
	Status     *importApplyState `json:"status,omitempty"`
}

type applyMeta struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Labels    map[string]string `json:"labels,omitempty"`
}

type importApplySpec struct {
	Ports              []flomeshv1alpha1.ServicePort     `json:"ports"`
	Type               flomeshv1alpha1.ServiceImportType `json:"type,omitempty"`
	ServiceAccountName string                            `json:"serviceAccountName,omitempty"`
}

type importApplyState struct {
	Clusters []flomeshv1alpha1.SourceCluster `json:"clusters"`
}

func (f *Federation) applyImport(ctx context.Context, cl client.Client, cur, want *flomeshv1alpha1.ServiceImport) error {
	head := importApply{
		APIVersion: flomeshv1alpha1.GroupVersion.String(), Kind: "ServiceImport",
		Metadata: applyMeta{Name: want.Name, Namespace: want.Namespace},
	}
	obj := &flomeshv1alpha1.ServiceImport{ObjectMeta: metav1.ObjectMeta{Namespace: want.Namespace, Name: want.Name}}
	owned := []client.PatchOption{client.FieldOwner(FieldManager), client.ForceOwnership}
	specSame := cur != nil && equality.Semantic.DeepEqual(cur.Spec.Ports, want.Spec.Ports) &&
		cur.Spec.Type == want.Spec.Type && cur.Spec.ServiceAccountName == want.Spec.ServiceAccountName &&
		cur.Labels[wellknown.FederatedLabel] == "true" && cur.Labels[wellknown.ManagedByLabel] == wellknown.ManagedByValue
	if !specSame {
		body := head
		body.Metadata.Labels = want.Labels
		body.Spec = &importApplySpec{Ports: want.Spec.Ports, Type: want.Spec.Type, ServiceAccountName: want.Spec.ServiceAccountName}
		raw, err := json.Marshal(body)
		if err != nil {
			return err
		}
		err = cl.Patch(ctx, obj, client.RawPatch(types.ApplyPatchType, raw), owned...)
		if apierrors.IsNotFound(err) {
			// The namespace is missing in this member: create it, as the import's home.
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: want.Namespace, Labels: map[string]string{wellknown.ManagedByLabel: wellknown.ManagedByValue}}}
			if cerr := cl.Create(ctx, ns); cerr != nil && !apierrors.IsAlreadyExists(cerr) {
				return fmt.Errorf("creating namespace %s for ServiceImport %s: %w", want.Namespace, want.Name, cerr)
			}
			err = cl.Patch(ctx, obj, client.RawPatch(types.ApplyPatchType, raw), owned...)
		}
		if err != nil {
			return fmt.Errorf("applying ServiceImport %s/%s: %w", want.Namespace, want.Name, err)
		}
	}
	if cur != nil && equality.Semantic.DeepEqual(cur.Status.Clusters, want.Status.Clusters) {
		return nil
	}
	body := head
	body.Status = &importApplyState{Clusters: want.Status.Clusters}
	raw, err := json.Marshal(body)
	if err != nil {
		return err
	}
	if err := cl.Status().Patch(ctx, obj, client.RawPatch(types.ApplyPatchType, raw), client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		return fmt.Errorf("applying the status of ServiceImport %s/%s: %w", want.Namespace, want.Name, err)
	}
	return nil
}

// applyConflict sets an export's Conflict condition when it differs, keeping its transition time
// while its status holds. Only that condition is applied: Valid belongs to the member.
func (f *Federation) applyConflict(ctx context.Context, cl client.Client, e *flomeshv1alpha1.ServiceExport, want metav1.Condition) error {
	old := meta.FindStatusCondition(e.Status.Conditions, want.Type)
	if old != nil && old.Status == want.Status && old.Reason == want.Reason && old.Message == want.Message && old.ObservedGeneration == want.ObservedGeneration {
		return nil
	}
	want.LastTransitionTime = metav1.NewTime(time.Now())
	if old != nil && old.Status == want.Status {
		want.LastTransitionTime = old.LastTransitionTime
	}
	body := map[string]any{
		"apiVersion": flomeshv1alpha1.GroupVersion.String(), "kind": "ServiceExport",
		"metadata": map[string]any{"name": e.Name, "namespace": e.Namespace},
		"status":   map[string]any{"conditions": []metav1.Condition{want}},
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return err
	}
	obj := &flomeshv1alpha1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: e.Namespace, Name: e.Name}}
	err = cl.Status().Patch(ctx, obj, client.RawPatch(types.ApplyPatchType, raw), client.FieldOwner(FieldManager), client.ForceOwnership)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("setting Conflict on ServiceExport %s/%s: %w", e.Namespace, e.Name, err)
	}
	return nil
}
