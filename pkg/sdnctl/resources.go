package sdnctl

import (
	"fmt"
	"sort"
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/ovs-sdn/ovs-sdn/pkg/apis/network/crds"
)

// resourceInfo describes one network.openshift.io kind the way discovery and the CRD describe
// it to kubectl. It is derived from the embedded CRDs, so the names, short names and printer
// columns sdnctl uses are exactly the ones the API server serves: no second copy to drift.
type resourceInfo struct {
	GVR        schema.GroupVersionResource
	Kind       string
	Singular   string
	ShortNames []string
	Namespaced bool
	// Columns are the additional printer columns of the served version, or the API server's
	// default single "Age" column when the CRD declares none (as for EgressNetworkPolicy).
	Columns []apiextensionsv1.CustomResourceColumnDefinition
}

// GroupResource is the "hostsubnets.network.openshift.io" form used in API error messages.
func (r resourceInfo) GroupResource() schema.GroupResource { return r.GVR.GroupResource() }

// GroupKind is what `-o name` prints before the slash ("hostsubnet.network.openshift.io").
func (r resourceInfo) GroupKind() schema.GroupKind {
	return schema.GroupKind{Group: r.GVR.Group, Kind: r.Kind}
}

// aliases are the spellings a user may type for the resource, lower-case: plural, singular,
// short names, each also qualified with the group, as kubectl's REST mapper accepts them.
func (r resourceInfo) aliases() []string {
	names := append([]string{r.GVR.Resource, r.Singular, strings.ToLower(r.Kind)}, r.ShortNames...)
	out := make([]string, 0, 2*len(names))
	for _, n := range names {
		out = append(out, n, n+"."+r.GVR.Group)
	}
	return out
}

// defaultAgeColumn is what kube-apiserver serves for a CRD version without printer columns.
var defaultAgeColumn = apiextensionsv1.CustomResourceColumnDefinition{
	Name: "Age", Type: "date", JSONPath: ".metadata.creationTimestamp",
}

// resourceRegistry resolves the resource argument of `get`.
type resourceRegistry struct {
	byAlias map[string]resourceInfo
	all     []resourceInfo
}

// loadResources builds the registry from the embedded CRDs, using each CRD's storage version.
func loadResources() (*resourceRegistry, error) {
	list, err := crds.All()
	if err != nil {
		return nil, fmt.Errorf("loading network CRDs: %w", err)
	}
	reg := &resourceRegistry{byAlias: map[string]resourceInfo{}}
	for _, crd := range list {
		info, err := resourceFromCRD(crd)
		if err != nil {
			return nil, err
		}
		reg.all = append(reg.all, info)
		for _, a := range info.aliases() {
			reg.byAlias[a] = info
		}
	}
	sort.Slice(reg.all, func(i, j int) bool { return reg.all[i].GVR.Resource < reg.all[j].GVR.Resource })
	return reg, nil
}

func resourceFromCRD(crd *apiextensionsv1.CustomResourceDefinition) (resourceInfo, error) {
	for _, v := range crd.Spec.Versions {
		if !v.Storage {
			continue
		}
		cols := v.AdditionalPrinterColumns
		if len(cols) == 0 {
			cols = []apiextensionsv1.CustomResourceColumnDefinition{defaultAgeColumn}
		}
		names := crd.Spec.Names
		return resourceInfo{
			GVR:        schema.GroupVersionResource{Group: crd.Spec.Group, Version: v.Name, Resource: names.Plural},
			Kind:       names.Kind,
			Singular:   names.Singular,
			ShortNames: names.ShortNames,
			Namespaced: crd.Spec.Scope == apiextensionsv1.NamespaceScoped,
			Columns:    cols,
		}, nil
	}
	return resourceInfo{}, fmt.Errorf("CRD %s has no storage version", crd.Name)
}

// lookup resolves a user-typed resource name, case-insensitively.
func (r *resourceRegistry) lookup(name string) (resourceInfo, error) {
	if info, ok := r.byAlias[strings.ToLower(name)]; ok {
		return info, nil
	}
	return resourceInfo{}, fmt.Errorf("the server doesn't have a resource type %q", name)
}

// names lists the plural resource names, for help texts.
func (r *resourceRegistry) names() []string {
	out := make([]string, 0, len(r.all))
	for _, info := range r.all {
		out = append(out, info.GVR.Resource)
	}
	return out
}
