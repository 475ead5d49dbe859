package controller

import (
	"errors"
	"net/http"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// cached turns a lister Get into (object or nil, error), NotFound being nil.
func cached[T any](obj *T, err error) (*T, error) {
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return obj, err
}

// writeRejected reports whether a failed write was certainly not applied:
// the API server answered with a status other than a timeout or an internal
// error. Only then may an allocation made for the write be released; after
// an ambiguous failure (timeout, lost connection) the object may exist, so
// the allocation stays reserved until the informer shows what happened (or
// the next leader rebuilds from the API).
func writeRejected(err error) bool {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return false
	}
	switch status.Status().Code {
	case http.StatusRequestTimeout, http.StatusGatewayTimeout, http.StatusInternalServerError,
		http.StatusServiceUnavailable, 0:
		return false
	}
	return !apierrors.IsTimeout(err) && !apierrors.IsServerTimeout(err)
}

// deleteOnly deletes only the object with this UID: a newer object that
// reuses the name is not touched (the precondition fails with a Conflict).
func deleteOnly(uid types.UID) metav1.DeleteOptions {
	return metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}
}

// ignoreGone treats NotFound (already deleted) and Conflict (the name now
// belongs to a newer object) as success for deletes.
func ignoreGone(err error) error {
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

// internalIP returns the first IPv4 InternalIP address of node.
func internalIP(node *corev1.Node) (string, bool) {
	s := internalIPString(node)
	return s, s != ""
}

func internalIPString(node *corev1.Node) string {
	for _, a := range node.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		if ip, err := parseIPv4(a.Address); err == nil {
			return ip
		}
	}
	return ""
}
