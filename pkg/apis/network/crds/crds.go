// Package crds embeds the generated CustomResourceDefinitions of network.openshift.io, so the
// test environment, sdn-lab and the manifest renderer install exactly what `make generate`
// produced.
package crds

import (
	"embed"
	"fmt"
	"io/fs"
	"sort"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

//go:embed *.yaml
var files embed.FS

// YAML returns the CRD documents by file name, sorted by name.
func YAML() (names []string, docs [][]byte, err error) {
	entries, err := fs.Glob(files, "*.yaml")
	if err != nil {
		return nil, nil, err
	}
	sort.Strings(entries)
	for _, n := range entries {
		b, err := files.ReadFile(n)
		if err != nil {
			return nil, nil, err
		}
		names = append(names, n)
		docs = append(docs, b)
	}
	return names, docs, nil
}

// All returns the decoded CRDs, sorted by file name.
func All() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	names, docs, err := YAML()
	if err != nil {
		return nil, err
	}
	out := make([]*apiextensionsv1.CustomResourceDefinition, 0, len(docs))
	for i, d := range docs {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.UnmarshalStrict(d, crd); err != nil {
			return nil, fmt.Errorf("decoding CRD %s: %w", names[i], err)
		}
		out = append(out, crd)
	}
	return out, nil
}
