// Package events bounds what crossgate's controllers record: an Event whose note passes the
// API's limit is dropped whole by the API server, so every note is cut to fit first.
package events

import (
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
)

// Bounded wraps r so that every note fits flomeshv1alpha1.MaxEventNote.
func Bounded(r events.EventRecorder) events.EventRecorder { return bounded{r} }

type bounded struct{ r events.EventRecorder }

func (b bounded) Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any) {
	b.r.Eventf(regarding, related, eventtype, reason, action, "%s", flomeshv1alpha1.EventNote(fmt.Sprintf(note, args...)))
}
