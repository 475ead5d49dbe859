package node

import (
	"context"
	"errors"

	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// baseFeature renders the static pipeline (pipeline.BaseFlows) and the
// version note, which the flow store writes after everything else.
type baseFeature struct{ e *env }

func (*baseFeature) name() string          { return featureBase }
func (*baseFeature) stage() pipeline.Stage { return pipeline.StageBase }
func (*baseFeature) start(context.Context, *env) ([]cache.InformerSynced, error) {
	return nil, nil
}

func (f *baseFeature) render(_ context.Context, _ []string, all bool) error {
	if !all {
		return nil
	}
	return errors.Join(
		f.e.set(featureBase, pipeline.OwnerPipeline, pipeline.BaseFlows(f.e.fc)),
		f.e.set(featureBase, pipeline.OwnerVersion, []ovs.Flow{pipeline.VersionFlow(f.e.fc)}))
}

// isolationFeature renders the isolation mode's static flows and, for the
// modes that have them (multitenant), the tenant rule of every VNID a local
// pod uses. The pods feature marks it when the local pods change.
type isolationFeature struct {
	e       *env
	tenants map[uint32]struct{} // VNIDs with tenant flows set
}

func (f *isolationFeature) name() string          { return featureIsolation }
func (f *isolationFeature) stage() pipeline.Stage { return f.e.iso.Stage() }
func (*isolationFeature) start(context.Context, *env) ([]cache.InformerSynced, error) {
	return nil, nil
}

func (f *isolationFeature) render(_ context.Context, _ []string, all bool) error {
	var errs []error
	if all {
		errs = append(errs, f.e.set(featureIsolation, pipeline.OwnerIsolation, f.e.iso.StaticFlows(f.e.fc)))
	}
	inUse := map[uint32]struct{}{}
	for _, p := range f.e.local {
		inUse[p.VNID] = struct{}{}
	}
	for id := range f.tenants {
		if _, ok := inUse[id]; !ok {
			f.e.store.Delete(pipeline.TenantOwner(id))
			delete(f.tenants, id)
		}
	}
	if f.tenants == nil {
		f.tenants = map[uint32]struct{}{}
	}
	for id := range inUse {
		if _, ok := f.tenants[id]; ok && !all {
			continue
		}
		flows := f.e.iso.TenantFlows(id)
		if len(flows) == 0 {
			continue
		}
		if err := f.e.set(featureIsolation, pipeline.TenantOwner(id), flows); err != nil {
			errs = append(errs, err)
			continue
		}
		f.tenants[id] = struct{}{}
	}
	return errors.Join(errs...)
}

// allowAllFeature stands in for NetworkPolicy in networkpolicy mode when
// the agent has no Kubernetes client (tests and labs without Pods or
// NetworkPolicies): policies cannot be enforced, so all pod traffic is
// allowed, and the agent says so.
type allowAllFeature struct{ e *env }

func (*allowAllFeature) name() string          { return featureNetworkPolicy }
func (*allowAllFeature) stage() pipeline.Stage { return pipeline.StagePolicyAllowAll }
func (*allowAllFeature) start(context.Context, *env) ([]cache.InformerSynced, error) {
	klog.InfoS("NetworkPolicy is NOT enforced: networkpolicy mode without a Kubernetes client; all pod traffic is allowed")
	return nil, nil
}

func (f *allowAllFeature) render(_ context.Context, _ []string, all bool) error {
	if !all {
		return nil
	}
	return f.e.set(featureNetworkPolicy, pipeline.OwnerPolicyAllowAll, pipeline.PolicyAllowAllFlows())
}
