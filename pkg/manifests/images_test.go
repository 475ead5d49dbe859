package manifests

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/ovs-sdn/ovs-sdn/pkg/testutil"

	"github.com/ovs-sdn/ovs-sdn/images"
)

const repoRoot = "../.."

// cmdDirs lists cmd/<name> directories holding a main package at test time.
func cmdDirs(t *testing.T) map[string]bool {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(repoRoot, "cmd"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, e := range entries {
		files, _ := filepath.Glob(filepath.Join(repoRoot, "cmd", e.Name(), "*.go"))
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err == nil && !strings.HasSuffix(f, "_test.go") && regexp.MustCompile(`(?m)^package main$`).Match(data) {
				out[e.Name()] = true
			}
		}
	}
	return out
}

// TestDockerfilesBuildExistingBinaries: every binary an image definition (images/<name>/
// binaries.txt, which the Dockerfile builds) names is a main package in cmd/, the image of
// each daemon carries its own binary, and every path a Dockerfile copies from the
// repository exists.
func TestDockerfilesBuildExistingBinaries(t *testing.T) {
	cmds := cmdDirs(t)
	for _, name := range []string{"sdn-node", "sdn-controller"} {
		d := loadImage(t, name)
		checkImage(t, d, cmds)
		if !slices.ContainsFunc(d.Binaries, func(b images.Binary) bool { return b.Package == "./cmd/"+name }) {
			t.Errorf("images/%s does not build ./cmd/%s", name, name)
		}
	}
}

// goModTools lists the tool directives of the repository's go.mod.
func goModTools(t *testing.T) []string {
	return testutil.GoModTools(t, filepath.Join(repoRoot, "go.mod"))
}

func loadImage(t *testing.T, name string) images.Definition {
	t.Helper()
	d, err := images.Load(name)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func checkImage(t *testing.T, d images.Definition, cmds map[string]bool) {
	t.Helper()
	tools := goModTools(t)
	for _, b := range d.Binaries {
		if slices.Contains(tools, b.Package) {
			continue // pinned in go.mod, built like ours
		}
		if !strings.HasPrefix(b.Package, "./cmd/") || !cmds[path.Base(b.Package)] {
			t.Errorf("images/%s builds %s, which is neither a main package in cmd/ nor a tool of go.mod", d.Name, b.Package)
		}
	}
	df, err := images.File(d.Name, "Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range images.ParseDockerfile(string(df)) {
		fields := strings.Fields(in.Args)
		if in.Keyword != "COPY" || strings.HasPrefix(in.Args, "--") || len(fields) < 2 {
			continue
		}
		for _, src := range fields[:len(fields)-1] {
			if _, err := os.Stat(filepath.Join(repoRoot, src)); err != nil {
				t.Errorf("images/%s/Dockerfile copies %s from the repository: %v", d.Name, src, err)
			}
		}
	}
}

// imagePaths are project binaries named in a container spec.
var imagePaths = regexp.MustCompile(`/usr/(?:bin|libexec)/[A-Za-z0-9._/-]+`)

// TestManifestsNameOnlyBuiltBinaries: each container of the checked-in manifests (and of
// every mode's rendering) runs an image built by images/<name>/Dockerfile, and every
// project path it names (/usr/bin/…, /usr/libexec/…) is installed there from a ./cmd/…
// that exists. Tools it execs without a path (sh, test, rm, cp) need a Debian base.
func TestManifestsNameOnlyBuiltBinaries(t *testing.T) {
	cmds := cmdDirs(t)
	containers := checkedInContainers(t)
	if len(containers) < 3 {
		t.Fatalf("found %d containers in manifests/, want sdn-node, install-cni and sdn-controller", len(containers))
	}
	for _, c := range containers {
		name := imageName(c.Image)
		d := loadImage(t, name)
		checkImage(t, d, cmds)
		spec, _ := yaml.Marshal(c)
		for _, p := range imagePaths.FindAllString(string(spec), -1) {
			if !slices.ContainsFunc(d.Binaries, func(b images.Binary) bool { return b.Path == p }) {
				t.Errorf("container %s names %s, which images/%s/binaries.txt does not install", c.Name, p, name)
			}
		}
		if usesBaseTools(c) && !strings.Contains(d.BaseImage, "debian") {
			t.Errorf("container %s runs shell tools but images/%s is based on %s", c.Name, name, d.BaseImage)
		}
	}
}

func usesBaseTools(c corev1.Container) bool {
	return len(c.Command) > 0 && !strings.HasPrefix(c.Command[0], "/usr/") ||
		c.ReadinessProbe != nil && c.ReadinessProbe.Exec != nil ||
		c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Exec != nil
}

// imageName maps ghcr.io/ovs-sdn/sdn-node:v1 (or @sha256:…) to sdn-node.
func imageName(image string) string {
	name := path.Base(image)
	if i := strings.IndexAny(name, ":@"); i >= 0 {
		name = name[:i]
	}
	return name
}

// checkedInContainers decodes the containers of the workloads in manifests/ plus those of
// the Multitenant and Subnet renderings.
func checkedInContainers(t *testing.T) []corev1.Container {
	t.Helper()
	var objs []runtime.Object
	names, err := RenderedFiles(repoManifests)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(repoManifests, n))
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, decodeWorkloads(t, data)...)
	}
	for _, mode := range []string{"Subnet", "Multitenant"} {
		for _, f := range mustRender(t, "mode: "+mode) {
			objs = append(objs, f.Objects...)
		}
	}
	var out []corev1.Container
	for _, o := range objs {
		switch w := o.(type) {
		case *appsv1.DaemonSet:
			out = append(append(out, w.Spec.Template.Spec.InitContainers...), w.Spec.Template.Spec.Containers...)
		case *appsv1.Deployment:
			out = append(append(out, w.Spec.Template.Spec.InitContainers...), w.Spec.Template.Spec.Containers...)
		}
	}
	return out
}

func decodeWorkloads(t *testing.T, data []byte) []runtime.Object {
	t.Helper()
	var out []runtime.Object
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := reader.Read()
		if err != nil {
			break
		}
		var meta struct{ Kind string }
		if yaml.Unmarshal(doc, &meta) != nil {
			continue
		}
		var obj runtime.Object
		switch meta.Kind {
		case "DaemonSet":
			obj = &appsv1.DaemonSet{}
		case "Deployment":
			obj = &appsv1.Deployment{}
		default:
			continue
		}
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			t.Fatalf("decoding %s: %v", meta.Kind, err)
		}
		out = append(out, obj)
	}
	return out
}

// TestManifestFlagsExist builds the daemons and checks that every --flag the manifests
// pass is one the binary accepts (a renamed flag would crash-loop every pod).
func TestManifestFlagsExist(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	bin := t.TempDir()
	for _, c := range checkedInContainers(t) {
		if len(c.Command) == 0 || !strings.HasPrefix(c.Command[0], "/usr/bin/") {
			continue
		}
		name := path.Base(c.Command[0])
		exe := filepath.Join(bin, name)
		if _, err := os.Stat(exe); err != nil {
			build := exec.Command("go", "build", "-o", exe, "./cmd/"+name)
			build.Dir = repoRoot
			if out, err := build.CombinedOutput(); err != nil {
				t.Fatalf("go build ./cmd/%s: %v\n%s", name, err, out)
			}
		}
		help, _ := exec.Command(exe, "--help").CombinedOutput()
		for _, arg := range c.Args {
			flag, _, _ := strings.Cut(arg, "=")
			if strings.HasPrefix(flag, "--") && !bytes.Contains(help, []byte(flag+" ")) {
				t.Errorf("container %s passes %s, which `%s --help` does not list", c.Name, flag, name)
			}
		}
	}
}
