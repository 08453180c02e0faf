package v1alpha1

import "fmt"

// Condition types and reasons crossgate writes, defined once: on its own objects (flomesh API)
// and, where Gateway API leaves a reason to the implementation, on Gateway API objects. Every
// condition is a metav1.Condition with ObservedGeneration set; an Event's reason is one of these
// or one of the Warning reasons below.

// Condition types.
const (
	// ConditionManaged is set on a Cluster: True while the control plane is connected to it.
	ConditionManaged = "Managed"
	// ConditionValid is set on a ServiceExport: False when it cannot be exported as written.
	ConditionValid = "Valid"
	// ConditionConflict is set on a ServiceExport that loses a conflict with an older export of
	// the same service in another cluster (Kubernetes MCS API rules).
	ConditionConflict = "Conflict"
	// ConditionAccepted is set on a GlobalTrafficPolicy and a MeshConfig once they are in use.
	ConditionAccepted = "Accepted"
	// ConditionResolvedRefs is set on a GlobalTrafficPolicy: False while a target cluster does not
	// export the service.
	ConditionResolvedRefs = "ResolvedRefs"
)

// Reasons of a ServiceExport's Valid condition.
const (
	ReasonValid               = "Valid"
	ReasonServiceNotFound     = "ServiceNotFound"
	ReasonPortNotFound        = "PortNotFound"
	ReasonNamespaceNotAllowed = "NamespaceNotAllowed"
)

// Reasons of a ServiceExport's Conflict condition, following the Kubernetes MCS API: the oldest
// export of a service wins, and every export that disagrees with it carries Conflict=True.
const (
	ReasonPortConflict               = "PortConflict"
	ReasonProtocolConflict           = "ProtocolConflict"
	ReasonTypeConflict               = "TypeConflict"
	ReasonServiceAccountNameConflict = "ServiceAccountNameConflict"
	ReasonNoConflict                 = "NoConflict"
	ReasonNotExported                = "NotExported"
)

// Reasons of a GlobalTrafficPolicy's Accepted and ResolvedRefs conditions (and ServiceNotFound).
const (
	ReasonAccepted          = "Accepted"
	ReasonResolvedRefs      = "ResolvedRefs"
	ReasonTargetNotExported = "TargetNotExported"
)

// Reasons of a Cluster's Managed condition.
const (
	ReasonConnected                    = "Connected"
	ReasonKubeconfigInvalid            = "KubeconfigInvalid"
	ReasonKubeconfigSecretNotFound     = "KubeconfigSecretNotFound"
	ReasonKubeconfigSecretNotAllowed   = "KubeconfigSecretNotAllowed"
	ReasonUnreachable                  = "Unreachable"
	ReasonUnauthorized                 = "Unauthorized"
	ReasonForbidden                    = "Forbidden"
	ReasonTLSError                     = "TLSError"
	ReasonCrossgateNotInstalled        = "CrossgateNotInstalled"
	ReasonManagedByAnotherControlPlane = "ManagedByAnotherControlPlane"
	ReasonAlreadyJoined                = "AlreadyJoined"
	ReasonLeaving                      = "Leaving"
)

// ReasonGatewayNotTrusted is the Accepted=False reason of a Gateway of crossgate's class that the
// operator did not declare: not in the controller's namespace and not the Gateway exports
// attach to.
const ReasonGatewayNotTrusted = "NotTrusted"

// Reasons of the Events crossgate's controllers record.
const (
	ReasonRouteCreated        = "RouteCreated"        // an export's HTTPRoute was created
	ReasonRouteNameTaken      = "RouteNameTaken"      // an HTTPRoute of that name is not the export's
	ReasonPlaceholderCreated  = "PlaceholderCreated"  // an import's placeholder Service was created
	ReasonPlaceholderReleased = "PlaceholderReleased" // a user took the placeholder Service over
	ReasonImportsLeftBehind   = "ImportsLeftBehind"   // a leaving member could not be cleaned up
	ReasonInvalidGateway      = "InvalidGateway"      // a Gateway's proxy cannot be rendered
)

// Reasons of Warning Events about objects the translator reads but cannot use as written.
const (
	ReasonAllowsNothing           = "AllowsNothing"
	ReasonProbesAnnotationInvalid = "ProbesAnnotationInvalid"
	ReasonReservedPort            = "ReservedPort"
)

// ConditionError is a problem a user must fix, carried as the condition that reports it: its
// reason and message. Code returns it as an error; the caller that writes status finds it with
// errors.As and writes the condition (as Envoy Gateway's RouteStatusError). Any other error is a
// failure to retry, not the user's to fix.
// +kubebuilder:object:generate=false
type ConditionError struct {
	Reason  string
	Message string
}

func (e *ConditionError) Error() string { return e.Reason + ": " + e.Message }

// Problem is a ConditionError with a formatted message.
func Problem(reason, format string, args ...any) *ConditionError {
	return &ConditionError{Reason: reason, Message: fmt.Sprintf(format, args...)}
}
