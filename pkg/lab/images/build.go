package images

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	defs "github.com/ovs-sdn/ovs-sdn/images"
)

// IDTag in a reference is replaced by the first 12 hex digits of the image ID, so a tag
// changes exactly when the image does ("sdn-lab.local/ovs-sdn/sdn-node:" + IDTag).
const IDTag = "{id}"

// Spec is one image to build: an optional Debian root file system and one layer of files
// on top of it.
type Spec struct {
	// Refs name the image, e.g. registry.k8s.io/pause:3.10 (at least one); see IDTag.
	Refs []string
	// Base is the bottom layer; nil builds FROM scratch.
	Base *Debian
	// Files make the top layer.
	Files  []File
	Config Config
}

// File is a file of an image's top layer, built from a Go package of this module or copied
// from a file on this machine (exactly one of GoPackage and Source).
type File struct {
	// Path in the image, absolute.
	Path string
	// GoPackage is a main package relative to the module root ("./cmd/sdn-node"), built
	// as the Dockerfiles build binaries (defs.GoBuildEnv, defs.GoBuildFlags).
	GoPackage string
	// Source is a file to copy, e.g. a pinned tool binary.
	Source string
}

// Builder builds images into a content-addressed cache. Its zero value needs ModuleRoot
// when a Spec has GoPackage files; Build fills the other defaults. A Builder is safe for
// one Build at a time per CacheDir.
type Builder struct {
	// CacheDir holds layers, Debian root file systems, built binaries and archives
	// (default <ModuleRoot>/_output/images).
	CacheDir string
	// ModuleRoot is the directory of this module's go.mod, where go build runs.
	ModuleRoot string
	// Arch of the images (default runtime.GOARCH).
	Arch string
	// Out receives progress lines (nil: discarded).
	Out io.Writer
}

// Result is what Build produced.
type Result struct {
	// Archive is a docker-archive holding every image, for `ctr images import`.
	Archive string
	// Images are the built images, in Spec order.
	Images []Built
	// Duration of the Build; Cached reports that the archive already existed.
	Duration time.Duration
	Cached   bool
}

// Built describes one built image.
type Built struct {
	Refs []string
	// ID is the image ID, "sha256:<hex>" of its configuration.
	ID string
	// Size is the sum of its (uncompressed) layers.
	Size int64
}

func (b *Builder) layers() layerStore { return layerStore{dir: filepath.Join(b.CacheDir, "layers")} }

func (b *Builder) progress(format string, args ...any) {
	if b.Out != nil {
		fmt.Fprintf(b.Out, "images: "+format+"\n", args...)
	}
}

func (b *Builder) complete() error {
	if b.Arch == "" {
		b.Arch = runtime.GOARCH
	}
	if b.CacheDir == "" {
		if b.ModuleRoot == "" {
			return errors.New("images: Builder needs CacheDir or ModuleRoot")
		}
		b.CacheDir = filepath.Join(b.ModuleRoot, "_output", "images")
	}
	return os.MkdirAll(b.CacheDir, 0o755)
}

// Build builds specs and writes them into one archive. Every step is cached by content:
// Debian root file systems by recipe and package list, layers and archives by digest, so a
// second Build of unchanged inputs only re-runs `go build` (itself cached) and hashes the
// binaries. Layers and archives no longer used by this Build are removed; Debian root file
// systems are kept.
func (b *Builder) Build(ctx context.Context, specs []Spec) (*Result, error) {
	begin := time.Now()
	if err := b.complete(); err != nil {
		return nil, err
	}
	bins, err := b.goBuild(ctx, specs)
	if err != nil {
		return nil, err
	}
	imgs, err := b.assemble(ctx, specs, bins)
	if err != nil {
		return nil, err
	}
	res, err := b.writeArchive(imgs)
	if err != nil {
		return nil, err
	}
	b.prune(imgs, res.Archive)
	res.Duration = time.Since(begin)
	return res, nil
}

// goBuild builds every GoPackage of specs in one go invocation into <cache>/bin and
// returns package → binary.
func (b *Builder) goBuild(ctx context.Context, specs []Spec) (map[string]string, error) {
	out := map[string]string{}
	byName := map[string]string{}
	for _, s := range specs {
		for _, f := range s.Files {
			if f.GoPackage == "" || out[f.GoPackage] != "" {
				continue
			}
			name := path.Base(f.GoPackage)
			if other := byName[name]; other != "" && other != f.GoPackage {
				return nil, fmt.Errorf("images: %s and %s both build a binary called %s", other, f.GoPackage, name)
			}
			byName[name] = f.GoPackage
			out[f.GoPackage] = filepath.Join(b.CacheDir, "bin", name)
		}
	}
	if len(out) == 0 {
		return out, nil
	}
	if b.ModuleRoot == "" {
		return nil, errors.New("images: Builder.ModuleRoot is needed to build Go packages")
	}
	// -buildvcs=false: the binary depends on the source only, not on the commit, so an
	// unchanged binary keeps its layer (the Dockerfile build has no .git either).
	args := append([]string{"build"}, defs.GoBuildFlags...)
	args = append(args, "-buildvcs=false", "-o", filepath.Join(b.CacheDir, "bin")+"/")
	for pkg := range byName {
		args = append(args, byName[pkg])
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = b.ModuleRoot
	cmd.Env = append(os.Environ(), defs.GoBuildEnv...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("images: go %s: %w: %s", strings.Join(args, " "), err, tail(stderr.String(), 4000))
	}
	return out, nil
}

// assemble builds the layers of every spec (Debian bases concurrently) and returns the
// images.
func (b *Builder) assemble(ctx context.Context, specs []Spec, bins map[string]string) ([]Image, error) {
	bases, err := b.baseLayers(ctx, specs)
	if err != nil {
		return nil, err
	}
	var imgs []Image
	for _, s := range specs {
		if len(s.Refs) == 0 {
			return nil, errors.New("images: a spec without a name")
		}
		img := Image{Refs: slices.Clone(s.Refs), Config: s.Config}
		if s.Base != nil {
			img.Layers = append(img.Layers, bases[s.Base.key()])
		}
		top, err := b.filesLayer(s, bins)
		if err != nil {
			return nil, fmt.Errorf("images: %s: %w", s.Refs[0], err)
		}
		imgs = append(imgs, Image{Refs: img.Refs, Config: img.Config, Layers: append(img.Layers, top)})
	}
	return imgs, nil
}

func (b *Builder) baseLayers(ctx context.Context, specs []Spec) (map[string]Layer, error) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	var errs []error
	out := map[string]Layer{}
	for _, s := range specs {
		if s.Base == nil {
			continue
		}
		k := s.Base.key()
		mu.Lock()
		_, started := out[k]
		out[k] = Layer{}
		mu.Unlock()
		if started {
			continue
		}
		wg.Add(1)
		go func(d Debian) {
			defer wg.Done()
			l, err := b.debianLayer(ctx, d)
			mu.Lock()
			defer mu.Unlock()
			out[k], errs = l, append(errs, err)
		}(*s.Base)
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

func (b *Builder) filesLayer(s Spec, bins map[string]string) (Layer, error) {
	var files []layerFile
	for _, f := range s.Files {
		src := f.Source
		if f.GoPackage != "" {
			src = bins[f.GoPackage]
		}
		if src == "" || (f.GoPackage != "" && f.Source != "") {
			return Layer{}, fmt.Errorf("file %s: want exactly one of GoPackage and Source", f.Path)
		}
		files = append(files, layerFile{Path: f.Path, Source: src, Mode: 0o755})
	}
	return b.layers().put(func(w io.Writer) error { return writeFilesLayer(w, files) })
}

// writeArchive writes the archive of imgs unless an archive of the same content exists:
// its name is the digest of the archive's manifest (names, configurations, layer digests).
func (b *Builder) writeArchive(imgs []Image) (*Result, error) {
	res := &Result{}
	var keyDoc []string
	for _, img := range imgs {
		cfg, err := ConfigJSON(img, b.Arch)
		if err != nil {
			return nil, err
		}
		id := sha256Hex(cfg)
		for i, r := range img.Refs {
			img.Refs[i] = strings.ReplaceAll(r, IDTag, id[:12])
		}
		built := Built{Refs: img.Refs, ID: "sha256:" + id}
		for _, l := range img.Layers {
			built.Size += l.Size
		}
		res.Images = append(res.Images, built)
		refs, _ := json.Marshal(img.Refs)
		keyDoc = append(keyDoc, built.ID+" "+string(refs))
	}
	dir := filepath.Join(b.CacheDir, "archives")
	res.Archive = filepath.Join(dir, sha256Hex([]byte(strings.Join(keyDoc, "\n")))[:32]+".tar")
	if _, err := os.Stat(res.Archive); err == nil {
		res.Cached = true
		return res, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(dir, ".archive-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	err = WriteArchive(tmp, imgs, b.Arch)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), res.Archive)
	}
	if err != nil {
		return nil, fmt.Errorf("images: writing %s: %w", res.Archive, err)
	}
	return res, nil
}

// prune removes layers and archives this build does not use, except Debian root file
// systems, which are expensive to rebuild.
func (b *Builder) prune(imgs []Image, archive string) {
	keep := map[string]bool{archive: true}
	for _, img := range imgs {
		for _, l := range img.Layers {
			keep[l.Path] = true
		}
	}
	indexes, _ := filepath.Glob(filepath.Join(b.CacheDir, "debian", "*"))
	for _, idx := range indexes {
		if id, err := os.ReadFile(idx); err == nil {
			keep[b.layers().path(strings.TrimPrefix(strings.TrimSpace(string(id)), "sha256:"))] = true
		}
	}
	for _, pattern := range []string{filepath.Join(b.layers().dir, "*.tar"), filepath.Join(b.CacheDir, "archives", "*.tar")} {
		old, _ := filepath.Glob(pattern)
		for _, p := range old {
			if !keep[p] {
				_ = os.Remove(p)
			}
		}
	}
}
