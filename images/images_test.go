package images

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ovs-sdn/ovs-sdn/pkg/testutil"
)

func TestLoadDefinitions(t *testing.T) {
	if got := Names(); !slices.Equal(got, []string{"sdn-controller", "sdn-node"}) {
		t.Fatalf("Names() = %v", got)
	}
	node, err := Load("sdn-node")
	if err != nil {
		t.Fatal(err)
	}
	wantBins := []Binary{{"./cmd/sdn-node", "/usr/bin/sdn-node"}, {"./cmd/sdnctl", "/usr/bin/sdnctl"},
		{"./cmd/sdn-cni", "/usr/libexec/ovs-sdn/sdn-cni"},
		{"github.com/containernetworking/plugins/plugins/meta/portmap", "/usr/libexec/ovs-sdn/portmap"}}
	if !slices.Equal(node.Binaries, wantBins) {
		t.Errorf("sdn-node binaries = %v, want %v", node.Binaries, wantBins)
	}
	if !slices.Contains(node.Packages, "openvswitch-common") || !slices.Contains(node.Packages, "iptables") {
		t.Errorf("sdn-node packages = %v, want OVS tools and iptables", node.Packages)
	}
	if !slices.Equal(node.Entrypoint, []string{"/usr/bin/sdn-node"}) || node.User != "" {
		t.Errorf("sdn-node entrypoint %v user %q", node.Entrypoint, node.User)
	}
	ctl, err := Load("sdn-controller")
	if err != nil {
		t.Fatal(err)
	}
	if len(ctl.Packages) != 0 || ctl.User != "65534:65534" || ctl.BaseImage != "docker.io/library/debian:12.11-slim" {
		t.Errorf("sdn-controller: packages %v user %q base %q", ctl.Packages, ctl.User, ctl.BaseImage)
	}
	if ctl.Labels["org.opencontainers.image.title"] != "sdn-controller" {
		t.Errorf("sdn-controller labels %v", ctl.Labels)
	}
}

// TestEntrypointIsInstalled: what the image runs is one of its binaries.
func TestEntrypointIsInstalled(t *testing.T) {
	for _, name := range Names() {
		d, err := Load(name)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(d.Binaries, func(b Binary) bool { return b.Path == d.Entrypoint[0] }) {
			t.Errorf("%s: ENTRYPOINT %s is not in binaries.txt %v", name, d.Entrypoint[0], d.Binaries)
		}
		tools := goModTools(t)
		for _, b := range d.Binaries {
			if strings.HasPrefix(b.Package, "./") {
				if _, err := os.Stat(filepath.Join("..", b.Package)); err != nil || !strings.HasPrefix(b.Package, "./cmd/") {
					t.Errorf("%s: binaries.txt builds %s, which is not a ./cmd/ directory: %v", name, b.Package, err)
				}
			} else if !slices.Contains(tools, b.Package) {
				t.Errorf("%s: binaries.txt builds %s, which is neither a ./cmd/ directory nor a tool of go.mod (pinned there)", name, b.Package)
			}
		}
	}
}

// TestDockerfilesInstallTheLists runs each Dockerfile's two install steps with stub `go`
// and `apt-get` (and `rm`) that only record how they were called, and checks that the
// Dockerfile builds exactly binaries.txt with GoBuildEnv/GoBuildFlags and installs exactly
// packages.txt — so a Dockerfile that stops reading a list, or builds differently from
// sdn-lab's image builder, fails here.
func TestDockerfilesInstallTheLists(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			d, err := Load(name)
			if err != nil {
				t.Fatal(err)
			}
			df, _ := File(name, "Dockerfile")
			steps := installSteps(t, name, string(df))
			calls := runStubbed(t, name, steps)
			var wantCalls []string
			for _, b := range d.Binaries {
				wantCalls = append(wantCalls, "go "+strings.Join(GoBuildEnv, " ")+" build "+
					strings.Join(GoBuildFlags, " ")+" -o OUT"+b.Path+" "+b.Package)
			}
			if len(d.Packages) > 0 {
				wantCalls = append(wantCalls, "apt-get update",
					"apt-get install -y --no-install-recommends "+strings.Join(d.Packages, " "))
			}
			if !slices.Equal(calls, wantCalls) {
				t.Errorf("images/%s/Dockerfile install steps ran\n  %s\nwant\n  %s",
					name, strings.Join(calls, "\n  "), strings.Join(wantCalls, "\n  "))
			}
		})
	}
}

// installSteps returns the RUN commands that read the two lists, and checks the COPY
// instructions that put the lists where they read them and the binaries into the image.
func installSteps(t *testing.T, name, dockerfile string) []string {
	t.Helper()
	var runs []string
	copies := map[string]bool{}
	for _, in := range ParseDockerfile(dockerfile) {
		switch in.Keyword {
		case "COPY":
			copies[in.Args] = true
		case "RUN":
			if strings.Contains(in.Args, "/tmp/binaries.txt") || strings.Contains(in.Args, "/tmp/packages.txt") {
				runs = append(runs, in.Args)
			}
		}
	}
	for _, want := range []string{"images/" + name + "/binaries.txt /tmp/binaries.txt",
		"images/" + name + "/packages.txt /tmp/packages.txt", "--from=build /out/ /"} {
		if !copies[want] {
			t.Errorf("images/%s/Dockerfile has no COPY %s", name, want)
		}
	}
	if len(runs) != 2 {
		t.Fatalf("images/%s/Dockerfile: %d RUN steps read binaries.txt or packages.txt, want 2", name, len(runs))
	}
	return runs
}

// runStubbed runs steps with /tmp and /out redirected to a temporary directory holding the
// lists, and PATH holding only stubs and the harmless tools the steps use.
func runStubbed(t *testing.T, name string, steps []string) []string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	log := filepath.Join(dir, "calls")
	must(t, os.MkdirAll(filepath.Join(dir, "tmp"), 0o755))
	for _, f := range []string{"binaries.txt", "packages.txt"} {
		data, err := File(name, f)
		must(t, err)
		must(t, os.WriteFile(filepath.Join(dir, "tmp", f), data, 0o644))
	}
	must(t, os.MkdirAll(bin, 0o755))
	for _, tool := range []string{"sed", "xargs", "echo"} {
		p, err := exec.LookPath(tool)
		must(t, err)
		must(t, os.Symlink(p, filepath.Join(bin, tool)))
	}
	stubs := map[string]string{
		"go":      `echo "go CGO_ENABLED=$CGO_ENABLED $*" | ` + "/usr/bin/env sed -e \"s#$OUT#OUT#\" >>" + log,
		"apt-get": `echo "apt-get $*" >>` + log,
		"rm":      `:`,
	}
	for n, body := range stubs {
		must(t, os.WriteFile(filepath.Join(bin, n), []byte("#!/bin/sh\n"+body+"\n"), 0o755))
	}
	for _, step := range steps {
		step = strings.ReplaceAll(step, "/tmp/", dir+"/tmp/")
		step = strings.ReplaceAll(step, `"/out`, `"`+dir+`/out`)
		cmd := exec.Command("/bin/sh", "-ec", step)
		cmd.Env = []string{"PATH=" + bin, "OUT=" + dir + "/out"}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("running %q: %v\n%s", step, err, out)
		}
	}
	data, err := os.ReadFile(log)
	if os.IsNotExist(err) {
		return nil
	}
	must(t, err)
	return strings.Split(strings.TrimSpace(string(data)), "\n")
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestDebianSuite(t *testing.T) {
	for in, want := range map[string]string{
		"docker.io/library/debian:12.11-slim":    "bookworm",
		"debian:bookworm-slim":                   "bookworm",
		"debian:13@sha256:0123":                  "trixie",
		"docker.io/library/debian:11.9-slim@sha": "bullseye",
	} {
		if got, err := DebianSuite(in); err != nil || got != want {
			t.Errorf("DebianSuite(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"alpine:3.21", "debian:9"} {
		if _, err := DebianSuite(bad); err == nil {
			t.Errorf("DebianSuite(%q): no error", bad)
		}
	}
}

func TestReadListRejectsBadLines(t *testing.T) {
	if _, err := readList("sdn-node/binaries.txt", 1); err == nil || !strings.Contains(err.Error(), "sdn-node/binaries.txt:") {
		t.Errorf("a two-field list read as one field: %v", err)
	}
}

// TestGoImageSatisfiesGoMod: the Go image of every Dockerfile's build stage is at least the
// go directive of go.mod (an older one would download another toolchain mid-build, or fail
// with GOTOOLCHAIN=local).
func TestGoImageSatisfiesGoMod(t *testing.T) {
	mod, err := os.ReadFile(filepath.Join("..", "go.mod"))
	must(t, err)
	want := regexp.MustCompile(`(?m)^go (\d+\.\d+(?:\.\d+)?)$`).FindSubmatch(mod)
	if want == nil {
		t.Fatal("go.mod has no go directive")
	}
	for _, name := range Names() {
		df, _ := File(name, "Dockerfile")
		m := regexp.MustCompile(`GO_IMAGE=\S*golang:(\d+\.\d+(?:\.\d+)?)`).FindSubmatch(df)
		if m == nil {
			t.Errorf("images/%s/Dockerfile: no golang GO_IMAGE", name)
			continue
		}
		if semverLess(string(m[1]), string(want[1])) {
			t.Errorf("images/%s/Dockerfile builds with Go %s, go.mod needs %s", name, m[1], want[1])
		}
	}
}

// semverLess compares dotted version numbers (1.24.2 < 1.25.0; a missing patch is 0).
func semverLess(a, b string) bool {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < 3; i++ {
		x, y := 0, 0
		if i < len(pa) {
			x, _ = strconv.Atoi(pa[i])
		}
		if i < len(pb) {
			y, _ = strconv.Atoi(pb[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}

// goModTools lists the tool directives of the repository's go.mod.
func goModTools(t *testing.T) []string { return testutil.GoModTools(t, filepath.Join("..", "go.mod")) }
