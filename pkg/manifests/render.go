package manifests

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

// Header starts every rendered file; Write only ever deletes files that carry it.
const Header = "# Rendered by `sdnctl render-manifests` (make manifests) from config.yaml. DO NOT EDIT.\n"

// File is one rendered manifest file. Applying the files in name order works: the
// Namespace and CRDs come first, the ClusterNetwork after the CRDs.
type File struct {
	Name    string
	Objects []runtime.Object
}

// Render builds every object of cfg, which must be completed and valid (Load/Parse do that).
func Render(cfg *Config) ([]File, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	crdObjs, err := crdObjects()
	if err != nil {
		return nil, err
	}
	cm, err := cfg.configMap()
	if err != nil {
		return nil, err
	}
	hash, err := cfg.configHash()
	if err != nil {
		return nil, err
	}
	files := []File{
		{"000-namespace.yaml", []runtime.Object{cfg.namespaceObject()}},
		{"001-crds.yaml", crdObjs},
		{"002-rbac-node.yaml", cfg.nodeRBAC()},
		{"003-rbac-controller.yaml", cfg.controllerRBAC()},
		{"004-clusternetwork.yaml", []runtime.Object{cfg.clusterNetworkObject()}},
		{"005-multitenant.yaml", cfg.globalNetNamespaces()},
		{"006-config.yaml", []runtime.Object{cm}},
		{"007-sdn-node.yaml", []runtime.Object{cfg.nodeDaemonSet(hash)}},
		{"008-sdn-controller.yaml", []runtime.Object{cfg.controllerDeployment(hash)}},
		{"009-metrics.yaml", cfg.metricsServices()},
	}
	out := files[:0]
	for _, f := range files {
		if len(f.Objects) > 0 {
			out = append(out, f)
		}
	}
	return out, nil
}

// YAML renders the file: the header, then one document per object.
func (f File) YAML() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString(Header)
	for _, obj := range f.Objects {
		doc, err := marshalObject(obj)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name, err)
		}
		buf.WriteString("---\n")
		buf.Write(doc)
	}
	return buf.Bytes(), nil
}

// marshalObject renders obj as YAML without the fields a typed object always carries but
// a manifest must not (status, null creationTimestamps), which would otherwise show up as
// noise in every file and in server-side apply's managed fields.
func marshalObject(obj runtime.Object) ([]byte, error) {
	data, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	delete(m, "status")
	if spec, ok := m["spec"].(map[string]any); ok && len(spec) == 0 {
		delete(m, "spec")
	}
	dropNullTimestamps(m)
	return yaml.Marshal(m)
}

func dropNullTimestamps(v any) {
	switch v := v.(type) {
	case map[string]any:
		if ts, ok := v["creationTimestamp"]; ok && ts == nil {
			delete(v, "creationTimestamp")
		}
		for key, child := range v {
			dropNullTimestamps(child)
			if m, ok := child.(map[string]any); ok && len(m) == 0 && key == "metadata" {
				delete(v, key)
			}
		}
	case []any:
		for _, child := range v {
			dropNullTimestamps(child)
		}
	}
}

// RenderYAML renders cfg into one multi-document stream, files in order.
func RenderYAML(cfg *Config) ([]byte, error) {
	files, err := Render(cfg)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	for _, f := range files {
		data, err := f.YAML()
		if err != nil {
			return nil, err
		}
		buf.Write(bytes.TrimPrefix(data, []byte(Header)))
	}
	return append([]byte(Header), buf.Bytes()...), nil
}

// Write renders cfg into dir: each file is replaced atomically, and earlier rendered
// files (those starting with Header) that are no longer rendered are removed, so a mode
// change cannot leave, say, 005-multitenant.yaml behind. Other files (config.yaml, a
// README) are left alone.
func Write(cfg *Config, dir string) error {
	files, err := Render(cfg)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	keep := map[string]bool{}
	for _, f := range files {
		data, err := f.YAML()
		if err != nil {
			return err
		}
		if err := writeAtomic(filepath.Join(dir, f.Name), data); err != nil {
			return err
		}
		keep[f.Name] = true
	}
	return removeStale(dir, keep)
}

func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return errors.Join(fmt.Errorf("writing %s: %w", path, err), os.Remove(tmp))
	}
	return nil
}

func removeStale(dir string, keep map[string]bool) error {
	stale, err := RenderedFiles(dir)
	if err != nil {
		return err
	}
	for _, name := range stale {
		if keep[name] {
			continue
		}
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("removing stale %s: %w", name, err)
		}
	}
	return nil
}

// RenderedFiles lists the *.yaml files in dir that start with Header, sorted.
func RenderedFiles(dir string) ([]string, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		if strings.HasPrefix(string(data), Header) {
			out = append(out, filepath.Base(p))
		}
	}
	return out, nil
}
