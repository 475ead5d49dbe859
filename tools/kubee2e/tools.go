//go:build tools

// Package tools pins Kubernetes' e2e suite (k8s.io/kubernetes/test/e2e), which
// `make conformance` builds into e2e.test with `go test -c`.
package tools

import _ "k8s.io/kubernetes/test/e2e"
