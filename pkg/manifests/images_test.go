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
)

const repoRoot = "../.."

// dockerfile is what the tests need to know about one images/*/Dockerfile.
type dockerfile struct {
	path string
	// built are the ./cmd/<name> packages compiled by `go build` in any stage.
	built []string
	// copiedFromBuild maps an installed path to the build-stage file it comes from.
	copiedFromBuild map[string]string
	// contextSources are COPY sources from the build context (the repository root).
	contextSources []string
	entrypoint     string
	finalBase      string
}

var cmdPackage = regexp.MustCompile(`\./cmd/([A-Za-z0-9_-]+)`)

func parseDockerfile(t *testing.T, file string) *dockerfile {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	d := &dockerfile{path: file, copiedFromBuild: map[string]string{}}
	args := map[string]string{}
	for _, line := range logicalLines(string(data)) {
		fields := strings.Fields(line)
		switch strings.ToUpper(fields[0]) {
		case "ARG":
			if name, value, ok := strings.Cut(fields[1], "="); ok {
				args[name] = value
			}
		case "FROM":
			d.finalBase = os.Expand(fields[1], func(name string) string { return args[name] })
		case "RUN":
			if strings.Contains(line, "go build") {
				for _, m := range cmdPackage.FindAllStringSubmatch(line, -1) {
					d.built = append(d.built, m[1])
				}
			}
		case "COPY":
			d.copy(fields[1:])
		case "ENTRYPOINT", "CMD":
			var argv []string
			if err := yaml.Unmarshal([]byte(strings.TrimSpace(strings.TrimPrefix(line, fields[0]))), &argv); err == nil && len(argv) > 0 {
				d.entrypoint = argv[0]
			}
		}
	}
	return d
}

func (d *dockerfile) copy(args []string) {
	from := ""
	for len(args) > 0 && strings.HasPrefix(args[0], "--") {
		if v, ok := strings.CutPrefix(args[0], "--from="); ok {
			from = v
		}
		args = args[1:]
	}
	srcs, dst := args[:len(args)-1], args[len(args)-1]
	for _, src := range srcs {
		if from == "" {
			d.contextSources = append(d.contextSources, src)
			continue
		}
		target := dst
		if strings.HasSuffix(dst, "/") {
			target = dst + path.Base(src)
		}
		d.copiedFromBuild[target] = src
	}
}

// logicalLines joins continuation lines and drops comments and blank lines.
func logicalLines(s string) []string {
	var out []string
	var cur strings.Builder
	for _, raw := range strings.Split(s, "\n") {
		line := strings.TrimSpace(raw)
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if body, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(line)
		if s := strings.TrimSpace(cur.String()); s != "" {
			out = append(out, s)
		}
		cur.Reset()
	}
	return out
}

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

// TestDockerfilesBuildExistingBinaries: every ./cmd/X a Dockerfile builds exists, every
// binary it installs is built, every context path it copies exists, and its ENTRYPOINT is
// installed.
func TestDockerfilesBuildExistingBinaries(t *testing.T) {
	cmds := cmdDirs(t)
	for _, name := range []string{"sdn-node", "sdn-controller"} {
		d := parseDockerfile(t, filepath.Join(repoRoot, "images", name, "Dockerfile"))
		checkDockerfile(t, d, cmds)
		if !slices.Contains(d.built, name) {
			t.Errorf("%s does not build ./cmd/%s", d.path, name)
		}
	}
}

func checkDockerfile(t *testing.T, d *dockerfile, cmds map[string]bool) {
	t.Helper()
	for _, b := range d.built {
		if !cmds[b] {
			t.Errorf("%s builds ./cmd/%s, which is not a main package in cmd/", d.path, b)
		}
	}
	for dst, src := range d.copiedFromBuild {
		if !slices.Contains(d.built, path.Base(src)) {
			t.Errorf("%s installs %s from %s, which no go build produces", d.path, dst, src)
		}
	}
	for _, src := range d.contextSources {
		if _, err := os.Stat(filepath.Join(repoRoot, src)); err != nil {
			t.Errorf("%s copies %s from the repository: %v", d.path, src, err)
		}
	}
	if _, ok := d.copiedFromBuild[d.entrypoint]; !ok {
		t.Errorf("%s: ENTRYPOINT %q is not installed by the Dockerfile", d.path, d.entrypoint)
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
		d := parseDockerfile(t, filepath.Join(repoRoot, "images", name, "Dockerfile"))
		checkDockerfile(t, d, cmds)
		spec, _ := yaml.Marshal(c)
		for _, p := range imagePaths.FindAllString(string(spec), -1) {
			src, ok := d.copiedFromBuild[p]
			switch {
			case !ok:
				t.Errorf("container %s names %s, which images/%s/Dockerfile does not install", c.Name, p, name)
			case !cmds[path.Base(src)]:
				t.Errorf("container %s names %s, built from ./cmd/%s, which does not exist", c.Name, p, path.Base(src))
			}
		}
		if usesBaseTools(c) && !strings.Contains(d.finalBase, "debian") {
			t.Errorf("container %s runs shell tools but images/%s is based on %s", c.Name, name, d.finalBase)
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
