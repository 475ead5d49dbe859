package testenv

import (
	"context"
	"fmt"

	"github.com/ovs-sdn/ovs-sdn/pkg/apis/network/crds"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
)

// installCRDs creates (or, in a reused Dir, updates) every CRD of crds.All(), waits until
// each is Established, and until discovery serves all their resources.
func (e *Env) installCRDs(ctx context.Context) error {
	list, err := crds.All()
	if err != nil {
		return fmt.Errorf("loading CRDs: %w", err)
	}
	client, err := apiextensionsclient.NewForConfig(e.Config)
	if err != nil {
		return fmt.Errorf("building apiextensions client: %w", err)
	}
	crdClient := client.ApiextensionsV1().CustomResourceDefinitions()
	for _, crd := range list {
		if err := applyCRD(ctx, crdClient, crd); err != nil {
			return err
		}
	}
	for _, crd := range list {
		if err := e.waitEstablished(ctx, crdClient, crd.Name); err != nil {
			return err
		}
	}
	return e.waitDiscovery(ctx, list)
}

// crdInterface is the part of the generated CRD client installCRDs uses.
type crdInterface interface {
	Create(context.Context, *apiextensionsv1.CustomResourceDefinition, metav1.CreateOptions) (*apiextensionsv1.CustomResourceDefinition, error)
	Update(context.Context, *apiextensionsv1.CustomResourceDefinition, metav1.UpdateOptions) (*apiextensionsv1.CustomResourceDefinition, error)
	Get(context.Context, string, metav1.GetOptions) (*apiextensionsv1.CustomResourceDefinition, error)
}

// applyCRD creates crd, or replaces the spec of an existing one.
func applyCRD(ctx context.Context, c crdInterface, crd *apiextensionsv1.CustomResourceDefinition) error {
	_, err := c.Create(ctx, crd, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		var cur *apiextensionsv1.CustomResourceDefinition
		if cur, err = c.Get(ctx, crd.Name, metav1.GetOptions{}); err == nil {
			cur.Spec = crd.Spec
			_, err = c.Update(ctx, cur, metav1.UpdateOptions{})
		}
	}
	if err != nil {
		return fmt.Errorf("installing CRD %s: %w", crd.Name, err)
	}
	return nil
}

// waitEstablished waits for the CRD's Established condition; a NamesAccepted=False
// condition fails at once with the server's reason.
func (e *Env) waitEstablished(ctx context.Context, c crdInterface, name string) error {
	return waitReady(ctx, e.apiserver, "CRD "+name+" Established", func(ctx context.Context) error {
		crd, err := c.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cond := range crd.Status.Conditions {
			switch {
			case cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue:
				return nil
			case cond.Type == apiextensionsv1.NamesAccepted && cond.Status == apiextensionsv1.ConditionFalse:
				return fmt.Errorf("names not accepted: %s", cond.Message)
			}
		}
		return fmt.Errorf("not established yet: conditions %+v", crd.Status.Conditions)
	})
}

// waitDiscovery waits until discovery lists every served version's resource of list.
func (e *Env) waitDiscovery(ctx context.Context, list []*apiextensionsv1.CustomResourceDefinition) error {
	dc, err := discovery.NewDiscoveryClientForConfig(e.Config)
	if err != nil {
		return fmt.Errorf("building discovery client: %w", err)
	}
	want := map[string][]string{} // group/version → plurals
	for _, crd := range list {
		for _, v := range crd.Spec.Versions {
			if v.Served {
				gv := crd.Spec.Group + "/" + v.Name
				want[gv] = append(want[gv], crd.Spec.Names.Plural)
			}
		}
	}
	for gv, plurals := range want {
		err := waitReady(ctx, e.apiserver, "discovery of "+gv, func(context.Context) error {
			return discoveryServes(dc, gv, plurals)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// discoveryServes checks that discovery lists each plural under gv.
func discoveryServes(dc discovery.DiscoveryInterface, gv string, plurals []string) error {
	rl, err := dc.ServerResourcesForGroupVersion(gv)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, r := range rl.APIResources {
		have[r.Name] = true
	}
	for _, p := range plurals {
		if !have[p] {
			return fmt.Errorf("discovery of %s lacks %s", gv, p)
		}
	}
	return nil
}
