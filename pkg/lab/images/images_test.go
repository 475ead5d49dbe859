package images

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	defs "github.com/ovs-sdn/ovs-sdn/images"
)

// readTar returns name → content of every regular file, and the headers in order.
func readTar(t *testing.T, r io.Reader) (map[string][]byte, []*tar.Header) {
	t.Helper()
	files := map[string][]byte{}
	var hdrs []*tar.Header
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files, hdrs
		}
		if err != nil {
			t.Fatal(err)
		}
		hdrs = append(hdrs, h)
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			files[h.Name] = b
		}
	}
}

func writeTemp(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFilesLayerIsDeterministic(t *testing.T) {
	dir := t.TempDir()
	a, b := writeTemp(t, dir, "a", "binary a"), writeTemp(t, dir, "b", "binary b")
	st := layerStore{dir: filepath.Join(dir, "layers")}
	put := func(files ...layerFile) Layer {
		l, err := st.put(func(w io.Writer) error { return writeFilesLayer(w, files) })
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	l1 := put(layerFile{"/usr/bin/a", a, 0o755}, layerFile{"/usr/libexec/x/b", b, 0o755})
	time.Sleep(10 * time.Millisecond)
	l2 := put(layerFile{"/usr/libexec/x/b", b, 0o755}, layerFile{"/usr/bin/a", a, 0o755})
	if l1 != l2 {
		t.Fatalf("same files in another order: %v, then %v", l1, l2)
	}
	f, err := os.Open(l1.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data, _ := io.ReadAll(f)
	if sum := sha256.Sum256(data); "sha256:"+hex.EncodeToString(sum[:]) != l1.DiffID || int64(len(data)) != l1.Size {
		t.Errorf("layer %s of %d bytes does not match its content", l1.DiffID, l1.Size)
	}
	files, hdrs := readTar(t, bytes.NewReader(data))
	var names []string
	for _, h := range hdrs {
		names = append(names, h.Name)
		if h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(created) || h.Mode != 0o755 {
			t.Errorf("%s: uid %d gid %d mtime %v mode %o", h.Name, h.Uid, h.Gid, h.ModTime, h.Mode)
		}
	}
	want := []string{"usr/", "usr/bin/", "usr/bin/a", "usr/libexec/", "usr/libexec/x/", "usr/libexec/x/b"}
	if !slices.Equal(names, want) {
		t.Errorf("entries %v, want %v", names, want)
	}
	if string(files["usr/bin/a"]) != "binary a" {
		t.Errorf("usr/bin/a = %q", files["usr/bin/a"])
	}
	if _, err := st.put(func(w io.Writer) error {
		return writeFilesLayer(w, []layerFile{{"relative/path", a, 0o755}})
	}); err == nil {
		t.Error("a relative image path was accepted")
	}
}

func TestWriteArchive(t *testing.T) {
	dir := t.TempDir()
	st := layerStore{dir: dir}
	mk := func(name, content string) Layer {
		src := writeTemp(t, t.TempDir(), "f", content)
		l, err := st.put(func(w io.Writer) error { return writeFilesLayer(w, []layerFile{{"/" + name, src, 0o755}}) })
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	base, top1, top2 := mk("base", "shared"), mk("one", "1"), mk("two", "2")
	imgs := []Image{
		{Refs: []string{"example.test/one:v1", "example.test/one:latest"}, Layers: []Layer{base, top1},
			Config: Config{Entrypoint: []string{"/one"}, User: "65534:65534"}},
		{Refs: []string{"example.test/two:v1"}, Layers: []Layer{base, top2}, Config: Config{Cmd: []string{"/two"}}},
	}
	var a1, a2 bytes.Buffer
	if err := WriteArchive(&a1, imgs, "amd64"); err != nil {
		t.Fatal(err)
	}
	if err := WriteArchive(&a2, imgs, "amd64"); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a1.Bytes(), a2.Bytes()) {
		t.Error("the same images gave two different archives")
	}
	files, hdrs := readTar(t, &a1)
	if n := len(hdrs); n != 6 { // 2 configs, 3 distinct layers, manifest.json
		t.Errorf("%d entries, want 6 (the shared layer once)", n)
	}
	var manifest []manifestEntry
	if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil {
		t.Fatal(err)
	}
	if len(manifest) != 2 || !slices.Equal(manifest[0].RepoTags, imgs[0].Refs) {
		t.Fatalf("manifest.json = %+v", manifest)
	}
	for i, m := range manifest {
		checkManifestEntry(t, files, m, imgs[i])
	}
}

func checkManifestEntry(t *testing.T, files map[string][]byte, m manifestEntry, img Image) {
	t.Helper()
	cfg := files[m.Config]
	if sha256Hex(cfg)+".json" != m.Config {
		t.Errorf("config %s is not named by its digest", m.Config)
	}
	var c imageConfig
	if err := json.Unmarshal(cfg, &c); err != nil {
		t.Fatal(err)
	}
	if c.OS != "linux" || c.Architecture != "amd64" || !slices.Equal(c.Config.Entrypoint, img.Config.Entrypoint) ||
		c.Config.User != img.Config.User {
		t.Errorf("config of %v: %+v", img.Refs, c)
	}
	for j, name := range m.Layers {
		if id := "sha256:" + sha256Hex(files[name]); id != c.RootFS.DiffIDs[j] || id != img.Layers[j].DiffID {
			t.Errorf("%v layer %d: content %s, diff_id %s, want %s", img.Refs, j, id, c.RootFS.DiffIDs[j], img.Layers[j].DiffID)
		}
	}
}

// TestBuildIsCachedByContent: a second Build of the same inputs reuses the archive; a
// changed file gives a new archive and the old one and its layer are pruned.
func TestBuildIsCachedByContent(t *testing.T) {
	dir := t.TempDir()
	src := writeTemp(t, dir, "tool", "v1")
	b := &Builder{CacheDir: filepath.Join(dir, "cache")}
	specs := []Spec{{Refs: []string{"example.test/tool:v1", "example.test/tool:" + IDTag}, Files: []File{{Path: "/tool", Source: src}},
		Config: Config{Entrypoint: []string{"/tool"}}}}
	ctx := context.Background()
	r1, err := b.Build(ctx, specs)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := b.Build(ctx, specs)
	if err != nil {
		t.Fatal(err)
	}
	if r1.Cached || !r2.Cached || r1.Archive != r2.Archive || r1.Images[0].ID != r2.Images[0].ID {
		t.Fatalf("rebuild of the same inputs: first %+v, second %+v", r1, r2)
	}
	if want := "example.test/tool:" + r1.Images[0].ID[len("sha256:"):][:12]; r1.Images[0].Refs[1] != want {
		t.Errorf("ID-tagged reference %q, want %q", r1.Images[0].Refs[1], want)
	}
	writeTemp(t, dir, "tool", "v2")
	r3, err := b.Build(ctx, specs)
	if err != nil {
		t.Fatal(err)
	}
	if r3.Cached || r3.Archive == r1.Archive || r3.Images[0].ID == r1.Images[0].ID || r3.Images[0].Refs[1] == r1.Images[0].Refs[1] {
		t.Fatalf("a changed file did not change the image: %+v", r3)
	}
	if _, err := os.Stat(r1.Archive); !os.IsNotExist(err) {
		t.Errorf("the old archive %s was not pruned: %v", r1.Archive, err)
	}
	layers, _ := filepath.Glob(filepath.Join(b.CacheDir, "layers", "*.tar"))
	if len(layers) != 1 {
		t.Errorf("layers after the rebuild: %v, want only the new one", layers)
	}
}

// TestDebianLayerFromCache: a root file system recorded in the cache is used without
// running mmdebstrap (PATH is empty, so running it would fail).
func TestDebianLayerFromCache(t *testing.T) {
	b := &Builder{CacheDir: t.TempDir()}
	d := Debian{Suite: "bookworm", Packages: []string{"iproute2", "iptables"}}
	l, err := b.layers().put(func(w io.Writer) error { _, err := w.Write([]byte("rootfs")); return err })
	if err != nil {
		t.Fatal(err)
	}
	must(t, os.MkdirAll(filepath.Join(b.CacheDir, "debian"), 0o755))
	must(t, os.WriteFile(filepath.Join(b.CacheDir, "debian", d.key()), []byte(l.DiffID+"\n"), 0o644))
	t.Setenv("PATH", "")
	got, err := b.debianLayer(context.Background(), Debian{Suite: "bookworm", Packages: []string{"iptables", "iproute2"}})
	if err != nil || got != l {
		t.Fatalf("debianLayer = %v, %v; want the cached %v", got, err, l)
	}
	if _, err := b.debianLayer(context.Background(), Debian{Suite: "bookworm"}); err == nil ||
		!strings.Contains(err.Error(), "mmdebstrap") {
		t.Errorf("an uncached root file system did not run mmdebstrap: %v", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestDebianRecipe(t *testing.T) {
	a := Debian{Suite: "bookworm", Packages: []string{"b", "a"}}
	if a.key() != (Debian{Suite: "bookworm", Packages: []string{"a", "b"}}).key() {
		t.Error("the package order changed the key")
	}
	if a.key() == (Debian{Suite: "bookworm", Packages: []string{"a"}}).key() || a.key() == (Debian{Suite: "trixie", Packages: []string{"a", "b"}}).key() {
		t.Error("another package list or suite kept the key")
	}
	args := strings.Join(a.mmdebstrapArgs("/out.tar"), " ")
	for _, want := range []string{"--variant=minbase", "--include=b,a", "--skip=output/dev", "path-exclude=/usr/share/doc/*",
		"bookworm /out.tar deb http://deb.debian.org/debian bookworm main", "debian-security bookworm-security main"} {
		if !strings.Contains(args, want) {
			t.Errorf("mmdebstrap %s: no %q", args, want)
		}
	}
}

// TestProjectImagesFollowTheirDefinitions: the lab's sdn-node and sdn-controller are built
// from images/<name> exactly: packages.txt on the Dockerfile's Debian suite, binaries.txt,
// entrypoint, user and labels.
func TestProjectImagesFollowTheirDefinitions(t *testing.T) {
	for _, name := range defs.Names() {
		d, err := defs.Load(name)
		if err != nil {
			t.Fatal(err)
		}
		s, err := Project(name, "lab/"+name+":x")
		if err != nil {
			t.Fatal(err)
		}
		if s.Base == nil || s.Base.Suite != "bookworm" || !slices.Equal(s.Base.Packages, d.Packages) {
			t.Errorf("%s: base %+v, want bookworm with %v", name, s.Base, d.Packages)
		}
		var bins []defs.Binary
		for _, f := range s.Files {
			bins = append(bins, defs.Binary{Package: f.GoPackage, Path: f.Path})
		}
		if !slices.Equal(bins, d.Binaries) {
			t.Errorf("%s: files %v, want binaries.txt %v", name, bins, d.Binaries)
		}
		if !slices.Equal(s.Config.Entrypoint, d.Entrypoint) || s.Config.User != d.User || len(s.Config.Labels) != len(d.Labels) {
			t.Errorf("%s: config %+v, want the Dockerfile's %v %q %v", name, s.Config, d.Entrypoint, d.User, d.Labels)
		}
	}
	ag, err := Agnhost("/tools")
	if err != nil {
		t.Fatal(err)
	}
	ctl, _ := Project("sdn-controller", "x")
	if ag.Base.Suite != ctl.Base.Suite || ag.Files[0].Source != "/tools/agnhost" {
		t.Errorf("agnhost %+v is not on sdn-controller's suite %+v", ag, ctl.Base)
	}
	for _, f := range ag.Files[1:] {
		// The module is in the cache once `make tools` has built agnhost (not so for -short).
		if _, err := os.Stat(f.Source); err != nil && !testing.Short() {
			t.Errorf("agnhost file %s: %v", f.Path, err)
		}
	}
	for _, tool := range []string{"curl", "netcat-openbsd", "bind9-dnsutils", "iproute2"} {
		if !slices.Contains(ag.Base.Packages, tool) {
			t.Errorf("agnhost base %v lacks %s (the e2e tests run it inside agnhost)", ag.Base.Packages, tool)
		}
	}
	dns, err := CoreDNS("/tools")
	if err != nil {
		t.Fatal(err)
	}
	if dns.Base.key() != ctl.Base.key() || dns.Files[0].Source != "/tools/coredns" || dns.Refs[0] != CoreDNSImage {
		t.Errorf("coredns %+v does not share sdn-controller's base %+v or is misnamed", dns, ctl.Base)
	}
}

// TestCoreDNSImageIsThePinnedRelease: the CoreDNS image's tag is the release tools/coredns
// pins, so the name says what the lab runs.
func TestCoreDNSImageIsThePinnedRelease(t *testing.T) {
	mod, err := os.ReadFile(filepath.Join("..", "..", "..", "tools", "coredns", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*github\.com/coredns/coredns (v\S+)`).FindSubmatch(mod)
	if m == nil || string(m[1]) != CoreDNSVersion || !strings.HasSuffix(CoreDNSImage, ":"+CoreDNSVersion) {
		t.Errorf("tools/coredns pins %q, the image is %s (CoreDNSVersion %s)", m, CoreDNSImage, CoreDNSVersion)
	}
}
