package controllers

import (
	"context"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
	"github.com/crossgate-io/crossgate/wellknown"
)

// The helpers below run on every informer event and status write; they are tested here without
// an API server (test/member covers them on real ones).

func TestMergeConditionsKeepsTransitionTime(t *testing.T) {
	t0 := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	now := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	have := []metav1.Condition{{Type: "Valid", Status: metav1.ConditionTrue, Reason: "Valid", Message: "ok", ObservedGeneration: 1, LastTransitionTime: t0}}

	if mergeConditions(&have, []metav1.Condition{{Type: "Valid", Status: metav1.ConditionTrue, Reason: "Valid", Message: "ok", ObservedGeneration: 1}}, now) {
		t.Error("an identical condition reported as a change")
	}
	if !mergeConditions(&have, []metav1.Condition{{Type: "Valid", Status: metav1.ConditionTrue, Reason: "Valid", Message: "still ok", ObservedGeneration: 2}}, now) {
		t.Fatal("a new message and generation not reported as a change")
	}
	if got := have[0]; got.Message != "still ok" || got.ObservedGeneration != 2 || !got.LastTransitionTime.Equal(&t0) {
		t.Errorf("same status: want the message and generation updated and the transition time kept, got %+v", got)
	}
	if !mergeConditions(&have, []metav1.Condition{{Type: "Valid", Status: metav1.ConditionFalse, Reason: "ServiceNotFound", Message: "gone", ObservedGeneration: 2}}, now) {
		t.Fatal("a flip not reported as a change")
	}
	if got := have[0]; got.Status != metav1.ConditionFalse || !got.LastTransitionTime.Time.Equal(now) {
		t.Errorf("a flip: want the transition time now, got %+v", got)
	}
	if !mergeConditions(&have, []metav1.Condition{{Type: "Conflict", Status: metav1.ConditionFalse, Reason: "NoConflict", Message: "m"}}, now) || len(have) != 2 {
		t.Errorf("a new condition type: want it added, got %+v", have)
	}
}

func TestStatusOnly(t *testing.T) {
	export := func(gen int64, labels map[string]string, cond string) *flomeshv1alpha1.ServiceExport {
		e := &flomeshv1alpha1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Name: "e", Generation: gen, Labels: labels}}
		if cond != "" {
			e.Status.Conditions = []metav1.Condition{{Type: cond}}
		}
		return e
	}
	for _, tc := range []struct {
		name     string
		old, new any
		want     bool
	}{
		{"status written", export(1, nil, ""), export(1, nil, "Valid"), true},
		{"spec changed", export(1, nil, ""), export(2, nil, ""), false},
		{"labels changed", export(1, nil, ""), export(1, map[string]string{"a": "b"}, ""), false},
		{"route status written", &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Generation: 3}}, &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Generation: 3}}, true},
		{"a kind without generation (Service)", &corev1.Service{}, &corev1.Service{}, false},
		{"a Pod (its status matters)", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Generation: 1}}, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Generation: 1}}, false},
		{"a tombstone", "x", export(1, nil, ""), false},
	} {
		if got := statusOnly(tc.old, tc.new); got != tc.want {
			t.Errorf("%s: statusOnly = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestNodeKey(t *testing.T) {
	for id, want := range map[string]string{
		"sidecar~curl/curl":      "sidecar~curl/curl",
		"gateway~ns/gw":          "gateway~ns/gw",
		"proxyless~curl/curl":    "proxyless~curl/curl",
		"curl/curl":              "proxyless~curl/curl",
		"router~curl/curl":       "",
		"sidecar~curl":           "",
		"sidecar~/curl":          "",
		"sidecar~curl/curl/more": "",
		"":                       "",
	} {
		got, err := NodeKey(context.Background(), &corev3.Node{Id: id})
		if want == "" {
			if err == nil {
				t.Errorf("NodeKey(%q) = %q, want an error", id, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("NodeKey(%q) = %q, %v; want %q", id, got, err, want)
		}
	}
}

func TestCompact(t *testing.T) {
	managed := []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", ManagedFields: managed, Annotations: map[string]string{corev1.LastAppliedConfigAnnotation: "{}", "keep": "me"}},
		Spec:       corev1.PodSpec{ServiceAccountName: "sa", NodeName: "n", Containers: []corev1.Container{{Name: "app", Image: "app"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1", ContainerStatuses: []corev1.ContainerStatus{{Name: "app"}}},
	}
	out, err := compact(pod)
	if err != nil {
		t.Fatal(err)
	}
	p := out.(*corev1.Pod)
	if p.ManagedFields != nil || len(p.Spec.Containers) != 0 || p.Status.ContainerStatuses != nil {
		t.Errorf("pod: managed fields, containers and container statuses should be dropped: %+v", p)
	}
	if p.Spec.ServiceAccountName != "sa" || p.Status.PodIP != "10.0.0.1" || p.Annotations["keep"] != "me" {
		t.Errorf("pod: what the translator reads was dropped: %+v", p)
	}
	if _, ok := p.Annotations[corev1.LastAppliedConfigAnnotation]; ok {
		t.Error("pod: the last-applied annotation was kept")
	}

	placeholder := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "s", ManagedFields: managed, Labels: map[string]string{wellknown.ImportLabel: "s"}}}
	if out, _ := compact(placeholder); out.(*corev1.Service).ManagedFields == nil {
		t.Error("a placeholder Service lost its managed fields, which tell whether a user took it over")
	}

	replicas := int32(3)
	theirs := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: appsv1.DeploymentSpec{Replicas: &replicas}, Status: appsv1.DeploymentStatus{AvailableReplicas: 3}}
	if out, _ := compact(theirs); out.(*appsv1.Deployment).Spec.Replicas != nil || out.(*appsv1.Deployment).Status.AvailableReplicas != 0 || out.(*appsv1.Deployment).Name != "web" {
		t.Error("a Deployment that is not crossgate's kept more than its metadata")
	}
	gateway := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "gw", Labels: map[string]string{wellknown.ManagedByLabel: wellknown.ManagedByValue}}, Status: appsv1.DeploymentStatus{AvailableReplicas: 1}}
	if out, _ := compact(gateway); out.(*appsv1.Deployment).Status.AvailableReplicas != 1 {
		t.Error("a gateway's Deployment lost its status, which is the Gateway's Programmed")
	}

	if out, err := compact("tombstone"); err != nil || out != "tombstone" {
		t.Errorf("a tombstone must pass through unchanged: %v %v", out, err)
	}
}
