package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// maxEventMessage is the longest Event message written (client-go's
// recorder truncates at the same length).
const maxEventMessage = 1024

// onceEvent is an Event recorded at most once per key: its name is derived
// from the involved object's UID and the key, so a second Create — by this
// replica, or by a new leader after a restart — fails with AlreadyExists and
// nothing is repeated. This holds while the first Event exists (the API
// server's --event-ttl, one hour by default); after that the fact is
// reported again once.
type onceEvent struct {
	Object    corev1.ObjectReference // Kind, APIVersion, Namespace, Name, UID
	Key       string                 // what makes the fact distinct, e.g. "generation 3"
	Type      string                 // corev1.EventTypeWarning or Normal
	Reason    string
	Message   string
	Namespace string // where the Event lives: the object's, or "default" for cluster-scoped ones
}

// name is <object name, at most 200 chars>.<16 hex of sha256(uid, reason, key)>.
func (e onceEvent) name() string {
	sum := sha256.Sum256([]byte(string(e.Object.UID) + "\x00" + e.Reason + "\x00" + e.Key))
	base := e.Object.Name
	if len(base) > 200 {
		base = base[:200]
	}
	return strings.TrimRight(base, ".-") + "." + hex.EncodeToString(sum[:8])
}

// recordOnce creates the Event unless it exists. It reports whether it was
// created now.
func (c *controller) recordOnce(ctx context.Context, e onceEvent) (bool, error) {
	msg := e.Message
	if len(msg) > maxEventMessage {
		msg = msg[:maxEventMessage-3] + "..."
	}
	now := metav1.NewTime(time.Now())
	ev := &corev1.Event{
		ObjectMeta:          metav1.ObjectMeta{Name: e.name(), Namespace: e.Namespace},
		InvolvedObject:      e.Object,
		Reason:              e.Reason,
		Message:             msg,
		Type:                e.Type,
		Source:              corev1.EventSource{Component: eventComponent, Host: c.opts.Identity},
		FirstTimestamp:      now,
		LastTimestamp:       now,
		Count:               1,
		ReportingController: eventComponent,
		ReportingInstance:   c.opts.Identity,
	}
	_, err := c.opts.Kube.CoreV1().Events(e.Namespace).Create(ctx, ev, metav1.CreateOptions{})
	switch {
	case err == nil:
		return true, nil
	case apierrors.IsAlreadyExists(err):
		return false, nil
	}
	return false, fmt.Errorf("recording %s Event on %s %s/%s: %w", e.Reason, e.Object.Kind, e.Object.Namespace, e.Object.Name, err)
}
