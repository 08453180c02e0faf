package translator

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	flomeshv1alpha1 "github.com/crossgate-io/crossgate/api/flomesh/v1alpha1"
)

// cond builds a condition; LastTransitionTime is left for the status writer.
func cond(typ string, ok bool, reason, message string, generation int64) metav1.Condition {
	s := metav1.ConditionFalse
	if ok {
		s = metav1.ConditionTrue
	}
	return metav1.Condition{Type: typ, Status: s, Reason: reason, Message: flomeshv1alpha1.ConditionMessage(message), ObservedGeneration: generation}
}

// condition is True with okReason and okMessage when problem is nil, and False with the
// problem's reason and message otherwise.
func condition(typ string, problem *flomeshv1alpha1.ConditionError, okReason, okMessage string, generation int64) metav1.Condition {
	if problem != nil {
		return cond(typ, false, problem.Reason, problem.Message, generation)
	}
	return cond(typ, true, okReason, okMessage, generation)
}
