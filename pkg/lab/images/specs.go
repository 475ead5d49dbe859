package images

import (
	"fmt"
	"path/filepath"

	defs "github.com/ovs-sdn/ovs-sdn/images"
)

// References of the images a real node needs besides ovs-sdn's own.
const (
	// PauseImage is the sandbox image the lab's containerd is configured with.
	PauseImage = "registry.k8s.io/pause:3.10"
	// AgnhostImage is the name and tag under which Kubernetes v1.34.4's e2e tests run
	// agnhost (k8s.io/kubernetes test/utils/image: PromoterE2eRegistry "agnhost" "2.56").
	AgnhostImage = "registry.k8s.io/e2e-test-images/agnhost:2.56"
	// CoreDNSImage is the lab's cluster DNS under CoreDNS's own image name, at the release
	// tools/coredns pins (CoreDNSVersion).
	CoreDNSImage = "registry.k8s.io/coredns/coredns:" + CoreDNSVersion
	// CoreDNSVersion is the CoreDNS release tools/coredns pins; change both together.
	CoreDNSVersion = "v1.14.7"
)

// debianPath is the PATH of Debian's container images.
const debianPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Pause is the sandbox image: our own static pause binary and nothing else, run as the
// user Kubernetes' pause image runs as.
func Pause() Spec {
	return Spec{
		Refs:   []string{PauseImage},
		Files:  []File{{Path: "/pause", GoPackage: "./pkg/lab/images/pause"}},
		Config: Config{Entrypoint: []string{"/pause"}, User: "65535:65535"},
	}
}

// Agnhost is Kubernetes' e2e test image: the agnhost binary pinned by tools/kubenode
// (toolsBin/agnhost) on the Debian base the sdn-controller image uses (so the two share
// their big layer), with agnhost's entrypoint and default command.
func Agnhost(toolsBin string) (Spec, error) {
	base, err := debianBase("sdn-controller")
	if err != nil {
		return Spec{}, err
	}
	return Spec{
		Refs:  []string{AgnhostImage},
		Base:  base,
		Files: []File{{Path: "/agnhost", Source: filepath.Join(toolsBin, "agnhost")}},
		Config: Config{Entrypoint: []string{"/agnhost"}, Cmd: []string{"pause"},
			Env: []string{debianPath}},
	}, nil
}

// CoreDNS is the containerd lab's cluster DNS: the coredns binary pinned by tools/coredns
// (toolsBin/coredns) on the same Debian base as agnhost, with CoreDNS's entrypoint; the
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
