package main

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
)

// controller-runtime's and client-go's logs reach the controller's log, at its level.
func TestLibraryLogsReachTheControllerLog(t *testing.T) {
	var buf bytes.Buffer
	setupLogging(&buf, slog.LevelInfo)
	ctrl.Log.WithName("controller").Error(errors.New("reconcile failed"), "Reconciler error", "name", "web")
	klog.ErrorS(errors.New("watch failed"), "client-go warning")
	ctrl.Log.V(1).Info("debug detail")
	out := buf.String()
	for _, want := range []string{`"msg":"Reconciler error"`, `"err":"reconcile failed"`, `"name":"web"`, `"msg":"client-go warning"`} {
		if !strings.Contains(out, want) {
			t.Errorf("the log lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "debug detail") {
		t.Errorf("a V(1) message was logged at info level:\n%s", out)
	}
}
