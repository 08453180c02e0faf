package federation

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
)

// The Cluster's status: its Managed condition (with an Event when it flips) and
// status.lastProbeTime.

// onlyProbed reports whether b differs from a in its status.lastProbeTime only.
func onlyProbed(a, b *flomeshv1alpha1.Cluster) bool {
	a, b = a.DeepCopy(), b.DeepCopy()
	a.Status.LastProbeTime, b.Status.LastProbeTime = nil, nil
	a.ResourceVersion, b.ResourceVersion = "", ""
	a.ManagedFields, b.ManagedFields = nil, nil
	return equality.Semantic.DeepEqual(a, b)
}

// probed records that the member of Cluster name was reached at now: status.lastProbeTime,
// written when this controller last wrote it ProbeInterval ago (remembered, not read back: a
// merge patch of that field alone).
func (f *Federation) probed(ctx context.Context, name string, now time.Time) {
	f.mu.Lock()
	m := f.members[name]
	if m != nil {
		if now.Sub(m.probedAt) < f.opts.ProbeInterval {
			f.mu.Unlock()
			return
		}
		m.probedAt = now
	}
	f.mu.Unlock()
	c := &flomeshv1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: name}}
	patch := []byte(fmt.Sprintf(`{"status":{"lastProbeTime":%q}}`, now.UTC().Format(time.RFC3339)))
	if err := f.cp.Status().Patch(ctx, c, client.RawPatch(types.MergePatchType, patch)); err != nil && !apierrors.IsNotFound(err) {
		f.opts.Log.Debug("writing the probe time", "cluster", name, "error", err)
	}
}

// setManaged writes the Cluster's Managed condition when it changed.
func (f *Federation) setManaged(ctx context.Context, name string, ok bool, reason, msg string) error {
	want := metav1.Condition{Type: flomeshv1alpha1.ConditionManaged, Status: metav1.ConditionFalse, Reason: reason, Message: flomeshv1alpha1.ConditionMessage(msg)}
	if ok {
		want.Status = metav1.ConditionTrue
	}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var c flomeshv1alpha1.Cluster
		if err := f.api.Get(ctx, client.ObjectKey{Name: name}, &c); err != nil {
			return err
		}
		want.ObservedGeneration = c.Generation
		old := meta.FindStatusCondition(c.Status.Conditions, want.Type)
		if old != nil && old.Status == want.Status && old.Reason == want.Reason && old.Message == want.Message && old.ObservedGeneration == want.ObservedGeneration {
			return nil
		}
		if old == nil || old.Status != want.Status {
			f.recorder.Eventf(&c, nil, map[bool]string{true: corev1.EventTypeNormal, false: corev1.EventTypeWarning}[ok], reason, "Connect", "%s", msg)
		}
		meta.SetStatusCondition(&c.Status.Conditions, want)
		return f.cp.Status().Update(ctx, &c)
	})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
