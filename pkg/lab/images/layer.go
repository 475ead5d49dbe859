package images

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// layerStore keeps layers by content: <dir>/<hex>.tar, hex = sha256 of the tar.
type layerStore struct{ dir string }

func (s layerStore) path(hex string) string { return filepath.Join(s.dir, hex+".tar") }

// put writes a layer with fill, hashing it on the way, and stores it under its digest (an
// existing identical layer is kept). Concurrent puts of the same content are safe: each
// writes its own temporary file and the rename is atomic.
func (s layerStore) put(fill func(io.Writer) error) (Layer, error) {
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return Layer{}, err
	}
	tmp, err := os.CreateTemp(s.dir, ".layer-*")
	if err != nil {
		return Layer{}, err
	}
	defer os.Remove(tmp.Name()) // after the rename this removes nothing
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(tmp, h)}
	err = fill(cw)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Layer{}, err
	}
	return s.adopt(tmp.Name(), h, cw.n)
}

// adopt renames the finished tar file at p to its content address.
func (s layerStore) adopt(p string, h hash.Hash, size int64) (Layer, error) {
	sum := hex.EncodeToString(h.Sum(nil))
	l := Layer{Path: s.path(sum), DiffID: "sha256:" + sum, Size: size}
	if err := os.Chmod(p, 0o644); err != nil {
		return Layer{}, err
	}
	if err := os.Rename(p, l.Path); err != nil {
		return Layer{}, fmt.Errorf("storing layer %s: %w", l.DiffID, err)
	}
	return l, nil
}

// putFile moves an existing tar file into the store.
func (s layerStore) putFile(p string) (Layer, error) {
	f, err := os.Open(p)
	if err != nil {
		return Layer{}, err
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	f.Close()
	if err != nil {
		return Layer{}, err
	}
	return s.adopt(p, h, n)
}

// get returns the stored layer with digest diffID, if present.
func (s layerStore) get(diffID string) (Layer, bool) {
	p := s.path(strings.TrimPrefix(diffID, "sha256:"))
	st, err := os.Stat(p)
	if err != nil {
		return Layer{}, false
	}
	return Layer{Path: p, DiffID: diffID, Size: st.Size()}, true
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// layerFile is a regular file of a files layer.
type layerFile struct {
	Path   string // absolute path in the image
	Source string // file on this machine
	Mode   int64
}

// writeFilesLayer writes a layer holding files and their parent directories (0755),
// everything owned by root with a fixed time, in sorted order: the same files give the
// same digest.
func writeFilesLayer(w io.Writer, files []layerFile) error {
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	tw := tar.NewWriter(w)
	dirs := map[string]bool{}
	for _, f := range files {
		if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path {
			return fmt.Errorf("image path %q: want a clean absolute path", f.Path)
		}
		if err := writeParents(tw, path.Dir(f.Path), dirs); err != nil {
			return err
		}
		if err := writeRegular(tw, f); err != nil {
			return err
		}
	}
	return tw.Close()
}

func writeParents(tw *tar.Writer, dir string, done map[string]bool) error {
	if dir == "/" || done[dir] {
		return nil
	}
	if err := writeParents(tw, path.Dir(dir), done); err != nil {
		return err
	}
	done[dir] = true
	return tw.WriteHeader(&tar.Header{Name: dir[1:] + "/", Mode: 0o755, ModTime: created, Typeflag: tar.TypeDir})
}

func writeRegular(tw *tar.Writer, f layerFile) error {
	src, err := os.Open(f.Source)
	if err != nil {
		return err
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		return err
	}
	hdr := &tar.Header{Name: f.Path[1:], Mode: f.Mode, Size: st.Size(), ModTime: created, Typeflag: tar.TypeReg}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("layer file %s: %w", f.Path, err)
	}
	if _, err := io.Copy(tw, src); err != nil {
		return fmt.Errorf("layer file %s from %s: %w", f.Path, f.Source, err)
	}
	return nil
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
