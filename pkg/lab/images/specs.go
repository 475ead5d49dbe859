package images

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	defs "github.com/ovs-sdn/ovs-sdn/images"
)

// References of the images a real node needs besides ovs-sdn's own.
const (
	// PauseImage is the sandbox image the lab's containerd is configured with.
	PauseImage = "registry.k8s.io/pause:3.10"
	// E2EPauseImage is the same image under the tag Kubernetes v1.34.4's e2e tests give
	// their pause pods (test/utils/image: "pause" "3.10.1").
	E2EPauseImage = "registry.k8s.io/pause:3.10.1"
	// AgnhostImage is the name and tag under which Kubernetes v1.34.4's e2e tests run
	// agnhost (k8s.io/kubernetes test/utils/image: PromoterE2eRegistry "agnhost" "2.56").
	AgnhostImage = "registry.k8s.io/e2e-test-images/agnhost:2.56"
	// JessieDnsutilsImage is the e2e tests' DNS querier (test/utils/image: "jessie-dnsutils"
	// "1.7"): Debian with dig.
	JessieDnsutilsImage = "registry.k8s.io/e2e-test-images/jessie-dnsutils:1.7"
	// CoreDNSImage is the lab's cluster DNS under CoreDNS's own image name, at the release
	// tools/coredns pins (CoreDNSVersion).
	CoreDNSImage = "registry.k8s.io/coredns/coredns:" + CoreDNSVersion
	// CoreDNSVersion is the CoreDNS release tools/coredns pins; change both together.
	CoreDNSVersion = "v1.14.7"
)

// agnhostPackages are the tools upstream's agnhost image adds to its base (its Dockerfile:
// bind-tools curl netcat-openbsd iproute2 iperf bash), by their Debian names: the e2e tests
// run curl, nc, dig and nslookup inside agnhost containers.
var agnhostPackages = []string{"bash", "bind9-dnsutils", "curl", "iperf", "iproute2", "netcat-openbsd"}

// debianPath is the PATH of Debian's container images.
const debianPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Pause is the sandbox image: our own static pause binary and nothing else, run as the
// user Kubernetes' pause image runs as.
func Pause() Spec {
	return Spec{
		Refs:   []string{PauseImage, E2EPauseImage},
		Files:  []File{{Path: "/pause", GoPackage: "./pkg/lab/images/pause"}},
		Config: Config{Entrypoint: []string{"/pause"}, User: "65535:65535"},
	}
}

// KubernetesModule is the k8s.io/kubernetes release whose agnhost tools/kubenode builds.
const KubernetesModule = "k8s.io/kubernetes@v1.34.4"

// Agnhost is Kubernetes' e2e test image: the agnhost binary pinned by tools/kubenode
// (toolsBin/agnhost) on a Debian base of the sdn-controller image's suite with the tools of
// upstream's image (agnhostPackages), with agnhost's entrypoint and default command, and
// the TLS certificate agnhost porter serves by default (/localhost.crt and .key, from the
// pinned Kubernetes module, which building agnhost put in the Go module cache).
func Agnhost(toolsBin string) (Spec, error) {
	suite, err := labSuite()
	if err != nil {
		return Spec{}, err
	}
	modCache, err := goModCache()
	if err != nil {
		return Spec{}, err
	}
	porter := filepath.Join(modCache, KubernetesModule, "test", "images", "agnhost", "porter")
	return Spec{
		Refs: []string{AgnhostImage},
		Base: &Debian{Suite: suite, Packages: agnhostPackages},
		Files: []File{{Path: "/agnhost", Source: filepath.Join(toolsBin, "agnhost")},
			{Path: "/localhost.crt", Source: filepath.Join(porter, "localhost.crt")},
			{Path: "/localhost.key", Source: filepath.Join(porter, "localhost.key")}},
		Config: Config{Entrypoint: []string{"/agnhost"}, Cmd: []string{"pause"},
			Env: []string{debianPath}, WorkingDir: "/"},
	}, nil
}

// goModCache is the Go module cache ($GOMODCACHE, else `go env GOMODCACHE`).
func goModCache() (string, error) {
	if d := os.Getenv("GOMODCACHE"); d != "" {
		return d, nil
	}
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		return "", fmt.Errorf("images: locating the Go module cache: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// JessieDnsutils is the e2e tests' DNS querier: Debian (the sdn-controller image's suite)
// with dig, whose probe scripts need nothing else than the base's sh, seq and getent.
func JessieDnsutils() (Spec, error) {
	suite, err := labSuite()
	if err != nil {
		return Spec{}, err
	}
	return Spec{
		Refs:   []string{JessieDnsutilsImage},
		Base:   &Debian{Suite: suite, Packages: []string{"bind9-dnsutils"}},
		Config: Config{Cmd: []string{"bash"}, Env: []string{debianPath}},
	}, nil
}

// labSuite is the Debian suite of the lab's own images (sdn-controller's base).
func labSuite() (string, error) {
	base, err := debianBase("sdn-controller")
	if err != nil {
		return "", err
	}
	return base.Suite, nil
}

// CoreDNS is the containerd lab's cluster DNS: the coredns binary pinned by tools/coredns
// (toolsBin/coredns) on the sdn-controller image's Debian base (sharing its big layer), with CoreDNS's entrypoint; the
// Corefile comes from the command line (-conf).
func CoreDNS(toolsBin string) (Spec, error) {
	base, err := debianBase("sdn-controller")
	if err != nil {
		return Spec{}, err
	}
	return Spec{
		Refs:   []string{CoreDNSImage},
		Base:   base,
		Files:  []File{{Path: "/coredns", Source: filepath.Join(toolsBin, "coredns")}},
		Config: Config{Entrypoint: []string{"/coredns"}, Env: []string{debianPath}},
	}, nil
}

// FromDefinition is the lab's build of image definition d (images/<name>): the Debian
// suite of its Dockerfile's base with packages.txt, binaries.txt built as the Dockerfile
// builds them, and the Dockerfile's entrypoint, user and labels.
func FromDefinition(d defs.Definition, refs ...string) (Spec, error) {
	suite, err := defs.DebianSuite(d.BaseImage)
	if err != nil {
		return Spec{}, fmt.Errorf("image %s: %w", d.Name, err)
	}
	s := Spec{
		Refs: refs,
		Base: &Debian{Suite: suite, Packages: d.Packages},
		Config: Config{Entrypoint: d.Entrypoint, User: d.User, Labels: d.Labels,
			Env: []string{debianPath}},
	}
	for _, b := range d.Binaries {
		s.Files = append(s.Files, File{Path: b.Path, GoPackage: b.Package})
	}
	return s, nil
}

// Project returns the lab's build of images/<name> under refs.
func Project(name string, refs ...string) (Spec, error) {
	d, err := defs.Load(name)
	if err != nil {
		return Spec{}, err
	}
	return FromDefinition(d, refs...)
}

func debianBase(name string) (*Debian, error) {
	s, err := Project(name, name)
	if err != nil {
		return nil, err
	}
	return s.Base, nil
}
