package node

import (
	"context"
	"fmt"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/ovs-sdn/ovs-sdn/pkg/apigate"
	"github.com/ovs-sdn/ovs-sdn/pkg/client/clientset/versioned"
)

// NewClients returns the agent's API clients for rc (Config.Network and
// Config.Kube) behind one apigate.Gate: while the API server is
// unreachable the agent's reads are held and the server is probed (/readyz,
// at most once a second), and the moment it is ready again every informer
// resumes, instead of after client-go's back-off of up to a minute
// (pkg/apigate). ctx bounds the probing; rc is copied, not changed.
func NewClients(ctx context.Context, rc *rest.Config) (versioned.Interface, kubernetes.Interface, error) {
	rc = rest.CopyConfig(rc)
	if _, err := apigate.ForConfig(ctx, rc, apigate.Options{OnChange: logGate}); err != nil {
		return nil, nil, err
	}
	network, err := versioned.NewForConfig(rc)
	if err != nil {
		return nil, nil, fmt.Errorf("network client: %w", err)
	}
	kube, err := kubernetes.NewForConfig(rc) // Pods, Namespaces, NetworkPolicies, Events
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return network, kube, nil
}

func logGate(down bool, err error, closedFor time.Duration) {
	if down {
		klog.InfoS("API server unreachable: holding reads and probing /readyz until it is ready; the dataplane is unaffected", "err", err)
		return
	}
	klog.InfoS("API server ready again: informers resume", "unreachableFor", closedFor.Round(time.Millisecond))
}
