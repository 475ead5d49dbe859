package manifests

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/ovs-sdn/ovs-sdn/pkg/apis/network/crds"
	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/clusternetwork"
)

// ConfigMapName is the ConfigMap carrying the effective config (key ConfigMapKey).
const (
	ConfigMapName = "sdn-config"
	ConfigMapKey  = "config.yaml"
	// ConfigHashAnnotation on both pod templates changes whenever the config does, so
	// re-rendering and applying rolls the pods.
	ConfigHashAnnotation = "network.ovs-sdn.io/config-hash"
)

// namespaceObject is privileged for Pod Security admission: sdn-node needs the host.
func (c *Config) namespaceObject() *corev1.Namespace {
	ns := &corev1.Namespace{
		TypeMeta:   typeMeta("v1", "Namespace"),
		ObjectMeta: metav1.ObjectMeta{Name: c.Namespace, Labels: commonLabels("")},
	}
	for _, mode := range []string{"enforce", "audit", "warn"} {
		ns.Labels["pod-security.kubernetes.io/"+mode] = "privileged"
	}
	return ns
}

// crdObjects are the generated CRDs, unchanged.
func crdObjects() ([]runtime.Object, error) {
	list, err := crds.All()
	if err != nil {
		return nil, err
	}
	out := make([]runtime.Object, 0, len(list))
	for _, crd := range list {
		crd.TypeMeta = typeMeta("apiextensions.k8s.io/v1", "CustomResourceDefinition")
		out = append(out, crd)
	}
	return out, nil
}

// clusterNetworkObject is ClusterNetwork "default" (reference §9.1; hostSubnetLength =
// 32 − hostPrefix as CNO renders it). The legacy network/hostsubnetlength fields repeat
// the first entry, as OpenShift's did, so old readers keep working.
func (c *Config) clusterNetworkObject() *networkv1.ClusterNetwork {
	cn := &networkv1.ClusterNetwork{
		TypeMeta:   typeMeta(networkv1.SchemeGroupVersion.String(), "ClusterNetwork"),
		ObjectMeta: metav1.ObjectMeta{Name: networkv1.ClusterNetworkDefault, Labels: commonLabels("")},
		PluginName: c.Mode.PluginName(),
	}
	if len(c.ServiceNetwork) > 0 {
		cn.ServiceNetwork = c.ServiceNetwork[0]
	}
	for _, e := range c.ClusterNetwork {
		cn.ClusterNetworks = append(cn.ClusterNetworks, networkv1.ClusterNetworkEntry{
			CIDR: e.CIDR, HostSubnetLength: uint32(max(32-e.HostPrefix, 0)),
		})
	}
	if len(cn.ClusterNetworks) > 0 {
		cn.Network, cn.HostSubnetLength = cn.ClusterNetworks[0].CIDR, cn.ClusterNetworks[0].HostSubnetLength
	}
	port, mtu := uint32(c.VXLANPort), uint32(c.MTU)
	cn.VXLANPort, cn.MTU = &port, &mtu
	return cn
}

// globalNetNamespaces pre-creates netid 0 NetNamespaces in multitenant mode (CNO's
// 004-multitenant.yaml). The controller keeps an existing NetNamespace, so these
// namespaces stay global; in the other modes nothing is rendered.
func (c *Config) globalNetNamespaces() []runtime.Object {
	if c.Mode != clusternetwork.ModeMultitenant {
		return nil
	}
	names := append([]string(nil), c.Multitenant.GlobalNamespaces...)
	sort.Strings(names)
	var out []runtime.Object
	for _, name := range names {
		out = append(out, &networkv1.NetNamespace{
			TypeMeta:   typeMeta(networkv1.SchemeGroupVersion.String(), "NetNamespace"),
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: commonLabels("")},
			NetName:    name,
			NetID:      0,
		})
	}
	return out
}

// configMap carries the effective (defaulted) config: what was rendered, for operators and
// for re-rendering on upgrade.
func (c *Config) configMap() (*corev1.ConfigMap, error) {
	data, err := yaml.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("marshalling config: %w", err)
	}
	return &corev1.ConfigMap{
		TypeMeta:   typeMeta("v1", "ConfigMap"),
		ObjectMeta: c.objectMeta(ConfigMapName, ""),
		Data:       map[string]string{ConfigMapKey: string(data)},
	}, nil
}

// configHash is a short digest of the effective config.
func (c *Config) configHash() (string, error) {
	data, err := yaml.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("marshalling config: %w", err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:8]), nil
}

func typeMeta(apiVersion, kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}
}

// commonLabels mark everything ovs-sdn renders; component is set on per-daemon objects.
func commonLabels(component string) map[string]string {
	l := map[string]string{"app.kubernetes.io/part-of": "ovs-sdn"}
	if component != "" {
		l["app.kubernetes.io/name"] = component
	}
	return l
}

func (c *Config) objectMeta(name, component string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: c.Namespace, Labels: commonLabels(component)}
}
