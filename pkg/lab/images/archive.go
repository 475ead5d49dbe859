package images

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Layer is an uncompressed layer tarball on disk.
type Layer struct {
	// Path of the tar file.
	Path string
	// DiffID is "sha256:<hex>" of the tar file (uncompressed, so also its blob digest).
	DiffID string
	// Size of the tar file in bytes.
	Size int64
}

func (l Layer) hex() string { return strings.TrimPrefix(l.DiffID, "sha256:") }

// Config is the runtime part of an image configuration (OCI image-spec "config").
type Config struct {
	Entrypoint []string          `json:"Entrypoint,omitempty"`
	Cmd        []string          `json:"Cmd,omitempty"`
	Env        []string          `json:"Env,omitempty"`
	User       string            `json:"User,omitempty"`
	WorkingDir string            `json:"WorkingDir,omitempty"`
	Labels     map[string]string `json:"Labels,omitempty"`
}

// Image is one image of an archive: its names, layers (bottom first) and configuration.
type Image struct {
	// Refs are full references, e.g. registry.k8s.io/pause:3.10.
	Refs   []string
	Layers []Layer
	Config Config
}

// created is the creation time written into every image configuration: fixed, so an image
// built twice from the same layers has the same ID.
var created = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

// imageConfig is the image configuration JSON (OCI image-spec, docker compatible).
type imageConfig struct {
	Architecture string    `json:"architecture"`
	OS           string    `json:"os"`
	Created      time.Time `json:"created"`
	Config       Config    `json:"config"`
	RootFS       struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

// manifestEntry is one element of a docker-archive's manifest.json.
type manifestEntry struct {
	Config   string   `json:"Config"`
	RepoTags []string `json:"RepoTags"`
	Layers   []string `json:"Layers"`
}

// ConfigJSON returns the image configuration document of img for arch (amd64, …); its
// sha256 is the image ID.
func ConfigJSON(img Image, arch string) ([]byte, error) {
	c := imageConfig{Architecture: arch, OS: "linux", Created: created, Config: img.Config}
	c.RootFS.Type = "layers"
	c.RootFS.DiffIDs = []string{}
	for _, l := range img.Layers {
		c.RootFS.DiffIDs = append(c.RootFS.DiffIDs, l.DiffID)
	}
	return json.Marshal(c)
}

// WriteArchive writes imgs as one docker-archive (the format of `docker save`, which
// `ctr images import` reads): manifest.json, one <id>.json configuration per image and one
// <diffid>/layer.tar per distinct layer. Entries are written in a fixed order, so the same
// images give the same bytes.
func WriteArchive(w io.Writer, imgs []Image, arch string) error {
	tw := tar.NewWriter(w)
	var manifest []manifestEntry
	written := map[string]bool{}
	for _, img := range imgs {
		cfg, err := ConfigJSON(img, arch)
		if err != nil {
			return err
		}
		id := sha256Hex(cfg)
		entry := manifestEntry{Config: id + ".json", RepoTags: img.Refs}
		if err := writeBytes(tw, entry.Config, cfg); err != nil {
			return err
		}
		for _, l := range img.Layers {
			name := l.hex() + "/layer.tar"
			entry.Layers = append(entry.Layers, name)
			if written[name] {
				continue
			}
			written[name] = true
			if err := writeFile(tw, name, l); err != nil {
				return err
			}
		}
		manifest = append(manifest, entry)
	}
	data, err := json.Marshal(manifest)
	if err != nil {
		return err
	}
	if err := writeBytes(tw, "manifest.json", data); err != nil {
		return err
	}
	return tw.Close()
}

func writeBytes(tw *tar.Writer, name string, data []byte) error {
	hdr := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: created, Typeflag: tar.TypeReg}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("archive %s: %w", name, err)
	}
	_, err := tw.Write(data)
	return err
}

func writeFile(tw *tar.Writer, name string, l Layer) error {
	f, err := os.Open(l.Path)
	if err != nil {
		return fmt.Errorf("archive layer %s: %w", l.DiffID, err)
	}
	defer f.Close()
	hdr := &tar.Header{Name: name, Mode: 0o644, Size: l.Size, ModTime: created, Typeflag: tar.TypeReg}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("archive %s: %w", name, err)
	}
	if _, err := io.Copy(tw, f); err != nil {
		return fmt.Errorf("archive layer %s: %w", l.DiffID, err)
	}
	return nil
}
