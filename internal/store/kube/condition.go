package kubestore

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The NetworkUnavailable condition flannel sets once its data plane is up.
// Kept byte for byte, since tools and runbooks grep for it.
const (
	conditionReason  = "FlannelIsUp"
	conditionMessage = "Flannel is running on this node"
)

// How MarkNetworkAvailable retries, as flannel retries its node patches.
const (
	markRetry    = 3 * time.Second
	markAttempts = 10
)

// MarkNetworkAvailable sets the own node's NetworkUnavailable condition to
// False (reason FlannelIsUp, message "Flannel is running on this node"),
// with one strategic-merge patch of nodes/<name>/status, exactly as
// flanneld does once its data plane is up; the scheduler and cloud route
// controllers wait for it. It does nothing when the store was built with
// SetNodeNetworkUnavailable false. It retries for about 30 s, then returns
// the last error.
func (s *Store) MarkNetworkAvailable(ctx context.Context) error {
	if !s.markUp {
		s.log.Debug("not setting the NetworkUnavailable condition (--set-node-network-unavailable=false)")
		return nil
	}
	body, err := conditionPatch(time.Now())
	if err != nil {
		return err
	}
	for i := 1; ; i++ {
		err = s.patchStatus(ctx, body)
		if err == nil {
			s.log.Info("set node condition NetworkUnavailable=False", "reason", conditionReason)
			return nil
		}
		if i == markAttempts || ctx.Err() != nil {
			return fmt.Errorf("set condition NetworkUnavailable=False on node %q: %w", s.node, err)
		}
		s.log.Warn("cannot set the node's NetworkUnavailable condition; retrying", "err", err, "retry-in", markRetry)
		if err := sleep(ctx, markRetry); err != nil {
			return err
		}
	}
}

// conditionPatch renders flannel's patch body:
//
//	{"status":{"conditions":[{"type":"NetworkUnavailable","status":"False",
//	  "lastHeartbeatTime":"...","lastTransitionTime":"...",
//	  "reason":"FlannelIsUp","message":"Flannel is running on this node"}]}}
//
// Conditions merge by type in a strategic-merge patch, so other
// conditions are untouched.
func conditionPatch(now time.Time) ([]byte, error) {
	t := metav1.NewTime(now)
	type status struct {
		Conditions []corev1.NodeCondition `json:"conditions"`
	}
	body, err := json.Marshal(struct {
		Status status `json:"status"`
	}{status{Conditions: []corev1.NodeCondition{{
		Type:               corev1.NodeNetworkUnavailable,
		Status:             corev1.ConditionFalse,
		LastHeartbeatTime:  t,
		LastTransitionTime: t,
		Reason:             conditionReason,
		Message:            conditionMessage,
	}}}})
	if err != nil {
		return nil, fmt.Errorf("encode the NetworkUnavailable condition: %w", err)
	}
	return body, nil
}
