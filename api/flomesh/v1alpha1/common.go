package v1alpha1

import (
	"strings"
	"unicode/utf8"
)

// DefaultClusterSetValue is the default of a Cluster's region, zone and group.
const DefaultClusterSetValue = "default"

// AnyServiceAccount in a ServiceExport or ServiceImport serviceAccountName matches any identity.
const AnyServiceAccount = "*"

// ClusterKey is the identity of a cluster inside a cluster set, `region/zone/group/name`, as
// used by ServiceImport endpoints and GlobalTrafficPolicy targets.
//
// +kubebuilder:validation:MaxLength=255
// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?/[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?/[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?/[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$')",message="must be a cluster key region/zone/group/name, each part a DNS label, for example default/default/default/cluster-1"
type ClusterKey string

// NewClusterKey builds the key of a cluster from its four parts.
func NewClusterKey(region, zone, group, name string) ClusterKey {
	return ClusterKey(region + "/" + zone + "/" + group + "/" + name)
}

// Parts splits a key into region, zone, group and name; ok is false when it is not a key.
func (k ClusterKey) Parts() (region, zone, group, name string, ok bool) {
	p := strings.Split(string(k), "/")
	if len(p) != 4 {
		return "", "", "", "", false
	}
	for _, s := range p {
		if s == "" {
			return "", "", "", "", false
		}
	}
	return p[0], p[1], p[2], p[3], true
}

// PathMatchType says how an exported path is matched at the gateway.
//
// +kubebuilder:validation:Enum=Exact;Prefix
type PathMatchType string

const (
	// PathMatchExact matches the path exactly.
	PathMatchExact PathMatchType = "Exact"
	// PathMatchPrefix matches the path and everything below it, element by element.
	PathMatchPrefix PathMatchType = "Prefix"
)

// MaxConditionMessage is the longest message a condition may hold (metav1.Condition's
// validation: maxLength 32768); a longer one makes the whole status write fail.
const MaxConditionMessage = 32768

// MaxEventNote is the longest note an Event may hold (events.k8s.io/v1 validation: 1024
// bytes); the API server drops a longer Event whole.
const MaxEventNote = 1024

// ConditionMessage cuts a condition's message to MaxConditionMessage bytes, at a character
// boundary, saying it was cut.
func ConditionMessage(msg string) string { return cutMessage(msg, MaxConditionMessage) }

// EventNote cuts an Event's note to MaxEventNote bytes the same way.
func EventNote(msg string) string { return cutMessage(msg, MaxEventNote) }

func cutMessage(msg string, max int) string {
	if len(msg) <= max {
		return msg
	}
	const tail = " ... (cut)"
	cut := max - len(tail)
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut] + tail
}
