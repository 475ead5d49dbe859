package images

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// Debian is a root file system of Debian packages: the minbase variant of Suite (what the
// Debian images the Dockerfiles start from hold, without documentation, as their -slim
// variants) plus Packages, built with mmdebstrap from deb.debian.org.
type Debian struct {
	Suite    string
	Packages []string
}

// dpkgExcludes are the paths Debian's -slim images leave out.
var dpkgExcludes = []string{
	"/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*",
	"/usr/share/lintian/*", "/usr/share/linda/*",
}

// debianFormat versions the recipe below: bump it when the mmdebstrap command changes,
// so cached root file systems built the old way are not reused.
const debianFormat = "debian-v1"

// key identifies the root file system: the recipe, suite and sorted package list.
func (d Debian) key() string {
	pkgs := slices.Clone(d.Packages)
	slices.Sort(pkgs)
	return sha256Hex([]byte(debianFormat + "\n" + d.Suite + "\n" + strings.Join(pkgs, ",")))[:32]
}

// mmdebstrapArgs is the command line that writes the root file system as a tarball to out.
// /dev is left out (the runtime mounts its own); SOURCE_DATE_EPOCH (see buildDebian) makes
// the tarball reproducible for the same package versions.
func (d Debian) mmdebstrapArgs(out string) []string {
	args := []string{"--mode=root", "--variant=minbase", "--format=tar", "--skip=output/dev", "--quiet"}
	if len(d.Packages) > 0 {
		args = append(args, "--include="+strings.Join(d.Packages, ","))
	}
	for _, p := range dpkgExcludes {
		args = append(args, "--dpkgopt=path-exclude="+p)
	}
	return append(args, d.Suite, out,
		"deb http://deb.debian.org/debian "+d.Suite+" main",
		"deb http://deb.debian.org/debian "+d.Suite+"-updates main",
		"deb http://deb.debian.org/debian-security "+d.Suite+"-security main")
}

// debianLayer returns the layer of d, from the cache when it was built before (the index
// <cache>/debian/<key> holds its digest), else built now with mmdebstrap (a minute or so).
func (b *Builder) debianLayer(ctx context.Context, d Debian) (Layer, error) {
	index := filepath.Join(b.CacheDir, "debian", d.key())
	if id, err := os.ReadFile(index); err == nil {
		if l, ok := b.layers().get(strings.TrimSpace(string(id))); ok {
			return l, nil
		}
	}
	b.progress("building a Debian %s root file system with %v (mmdebstrap)", d.Suite, d.Packages)
	l, err := b.buildDebian(ctx, d)
	if err != nil {
		return Layer{}, err
	}
	if err := os.MkdirAll(filepath.Dir(index), 0o755); err != nil {
		return Layer{}, err
	}
	return l, os.WriteFile(index, []byte(l.DiffID+"\n"), 0o644)
}

func (b *Builder) buildDebian(ctx context.Context, d Debian) (Layer, error) {
	if err := os.MkdirAll(b.layers().dir, 0o755); err != nil {
		return Layer{}, err
	}
	out := filepath.Join(b.layers().dir, ".debian-"+d.key()+".tar")
	defer os.Remove(out)
	cmd := exec.CommandContext(ctx, "mmdebstrap", d.mmdebstrapArgs(out)...)
	cmd.Env = append(os.Environ(), fmt.Sprintf("SOURCE_DATE_EPOCH=%d", created.Unix()))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return Layer{}, fmt.Errorf("mmdebstrap %s %v (is mmdebstrap installed? `make tools`): %w: %s",
			d.Suite, d.Packages, err, tail(stderr.String(), 2000))
	}
	return b.layers().putFile(out)
}

func tail(s string, max int) string {
	s = strings.TrimSpace(s)
	if len(s) > max {
		s = "…" + s[len(s)-max:]
	}
	return s
}
