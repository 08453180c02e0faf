package main

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A bad or taken --gateway-port is refused before anything is built or started.
func TestSandboxUpRefusesBadGatewayPorts(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := l.Addr().(*net.TCPAddr).Port
	upFlagChanged = true
	defer func() { upFlagChanged = false }()
	for _, tc := range []struct {
		port int
		want string
	}{
		{-5, "--gateway-port -5: "},
		{0, "--gateway-port 0: "},
		{65534, "must be 1-65533"},
		{taken, "address already in use"},
	} {
		dir := t.TempDir()
		err := sandboxUp(context.Background(), &sandboxFlags{dir: dir, gatewayPortBase: tc.port}, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("--gateway-port %d: %v, want an error with %q", tc.port, err, tc.want)
		}
	}
}

func TestStaleProbe(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		last  *metav1.Time
		stale bool
	}{
		{nil, false},
		{&metav1.Time{Time: now.Add(-20 * time.Second)}, false},
		{&metav1.Time{Time: now.Add(-10 * time.Minute)}, true},
	} {
		if got := staleProbe(tc.last, now); got != tc.stale {
			t.Errorf("%v: stale %v", tc.last, got)
		}
	}
}
