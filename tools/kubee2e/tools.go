//go:build tools

// Package tools pins Kubernetes' e2e suite (k8s.io/kubernetes/test/e2e), which
// `make conformance` builds into e2e.test with `go test -c`, and the ginkgo CLI of the
// Ginkgo release that suite uses (it runs e2e.test's specs in parallel processes).
package tools

import (
	_ "github.com/onsi/ginkgo/v2/ginkgo"
	_ "k8s.io/kubernetes/test/e2e"
)
