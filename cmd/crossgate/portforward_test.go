package main

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestDebugPort(t *testing.T) {
	pod := func(args ...string) *corev1.Pod {
		return &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "controller", Args: args}}}}
	}
	for _, tc := range []struct {
		pod  *corev1.Pod
		want int
	}{
		{pod("--namespace=crossgate-system"), 9091},
		{pod("--debug-address=127.0.0.1:7000"), 7000},
		{pod("--debug-address", "[::1]:7001"), 7001},
		{pod("--debug-address=localhost:7002"), 7002},
	} {
		if got, err := debugPort(tc.pod); err != nil || got != tc.want {
			t.Errorf("%v: %d %v, want %d", tc.pod.Spec.Containers[0].Args, got, err, tc.want)
		}
	}
	for _, bad := range []*corev1.Pod{pod("--debug-address="), pod("--debug-address=127.0.0.1")} {
		if _, err := debugPort(bad); err == nil {
			t.Errorf("%v: no error", bad.Spec.Containers[0].Args)
		}
	}
}
