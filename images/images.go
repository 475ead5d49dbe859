// Package images holds the definitions of ovs-sdn's container images, one directory per
// image: a Dockerfile (for docker/podman builds of a release) and the two lists it installs
// from, packages.txt (Debian packages) and binaries.txt (project binaries and where they go).
// sdn-lab builds its local copies of the same images without Docker (pkg/lab/images) from
// the definitions this package reads, so the lists exist exactly once; the package's tests
// run the Dockerfiles' install steps against the lists to prove the Dockerfiles consume them.
package images

import (
	"bufio"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strings"
)

//go:embed */Dockerfile */packages.txt */binaries.txt
var files embed.FS

// GoBuildEnv and GoBuildFlags are how every binary of binaries.txt is built (static,
// reproducible, stripped): `CGO_ENABLED=0 go build -trimpath -ldflags="-s -w"`. The
// Dockerfiles spell the same command; a test keeps them in step.
var (
	GoBuildEnv   = []string{"CGO_ENABLED=0"}
	GoBuildFlags = []string{"-trimpath", "-ldflags=-s -w"}
)

// Definition is one image: its Dockerfile's final stage and the lists it installs.
type Definition struct {
	// Name is the directory under images/ and the image's repository base name.
	Name string
	// BaseImage is the default of the Dockerfile's BASE_IMAGE argument, e.g.
	// docker.io/library/debian:12.11-slim.
	BaseImage string
	// Packages are the Debian packages of packages.txt, in file order.
	Packages []string
	// Binaries are the lines of binaries.txt, in file order.
	Binaries []Binary
	// Entrypoint and User come from the Dockerfile's final stage (User "" = root).
	Entrypoint []string
	User       string
	// Labels are the final stage's LABELs.
	Labels map[string]string
}

// Binary is a project binary of an image.
type Binary struct {
	// Package is the Go package built, relative to the module root (./cmd/sdn-node).
	Package string
	// Path is where the image installs it (/usr/bin/sdn-node).
	Path string
}

// Names lists the defined images, sorted.
func Names() []string {
	entries, _ := fs.ReadDir(files, ".")
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names
}

// Load reads the definition of image name.
func Load(name string) (Definition, error) {
	d := Definition{Name: name, Labels: map[string]string{}}
	df, err := files.ReadFile(path.Join(name, "Dockerfile"))
	if err != nil {
		return d, fmt.Errorf("image %q: %w", name, err)
	}
	if err := d.parseDockerfile(string(df)); err != nil {
		return d, fmt.Errorf("images/%s/Dockerfile: %w", name, err)
	}
	if d.Packages, err = readList(path.Join(name, "packages.txt"), 1); err != nil {
		return d, err
	}
	bins, err := readList(path.Join(name, "binaries.txt"), 2)
	if err != nil {
		return d, err
	}
	for _, b := range bins {
		pkg, dst, _ := strings.Cut(b, " ")
		d.Binaries = append(d.Binaries, Binary{Package: pkg, Path: dst})
	}
	return d, nil
}

// File returns the content of images/<name>/<file>, for tests and tools.
func File(name, file string) ([]byte, error) { return files.ReadFile(path.Join(name, file)) }

// readList returns the non-comment lines of file, each normalised to fields separated by
// one space; a line with other than want fields is an error naming the line.
func readList(file string, want int) ([]string, error) {
	data, err := files.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("images/%s: %w", file, err)
	}
	var out []string
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if len(fields) != want {
			return nil, fmt.Errorf("images/%s:%d: %q: want %d field(s)", file, n, sc.Text(), want)
		}
		out = append(out, strings.Join(fields, " "))
	}
	return out, nil
}

// Instruction is one logical Dockerfile line: its keyword (upper case) and the rest.
type Instruction struct {
	Keyword string
	Args    string
}

// ParseDockerfile splits a Dockerfile into instructions: continuation lines joined (with a
// space), comments and blank lines dropped.
func ParseDockerfile(text string) []Instruction {
	var out []Instruction
	var cur strings.Builder
	for _, raw := range strings.Split(text, "\n") {
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
			kw, args, _ := strings.Cut(s, " ")
			out = append(out, Instruction{Keyword: strings.ToUpper(kw), Args: strings.TrimSpace(args)})
		}
		cur.Reset()
	}
	return out
}

var labelRE = regexp.MustCompile(`([A-Za-z0-9._/-]+)="([^"]*)"`)

// parseDockerfile fills BaseImage, Entrypoint, User and Labels from the final stage.
func (d *Definition) parseDockerfile(text string) error {
	args := map[string]string{}
	for _, in := range ParseDockerfile(text) {
		switch in.Keyword {
		case "ARG":
			if k, v, ok := strings.Cut(in.Args, "="); ok {
				args[k] = v
			}
		case "FROM":
			from, _, _ := strings.Cut(in.Args, " ")
			d.BaseImage = strings.TrimSpace(expandArgs(from, args))
			d.Entrypoint, d.User, d.Labels = nil, "", map[string]string{}
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(in.Args), &d.Entrypoint); err != nil {
				return fmt.Errorf("ENTRYPOINT %s: want the JSON (exec) form: %w", in.Args, err)
			}
		case "USER":
			d.User = in.Args
		case "LABEL":
			for _, m := range labelRE.FindAllStringSubmatch(in.Args, -1) {
				d.Labels[m[1]] = m[2]
			}
		}
	}
	if d.BaseImage == "" || len(d.Entrypoint) == 0 {
		return fmt.Errorf("no FROM or no ENTRYPOINT in the final stage")
	}
	return nil
}

// expandArgs replaces ${NAME} and $NAME by the ARG defaults.
func expandArgs(s string, args map[string]string) string {
	for k, v := range args {
		s = strings.ReplaceAll(s, "${"+k+"}", v)
		s = strings.ReplaceAll(s, "$"+k, v)
	}
	return s
}

// DebianSuite maps a Debian base image (docker.io/library/debian:12.11-slim) to the suite
// its packages come from (bookworm).
func DebianSuite(baseImage string) (string, error) {
	repo, tag, _ := strings.Cut(path.Base(baseImage), ":")
	tag, _, _ = strings.Cut(tag, "@")
	if repo != "debian" {
		return "", fmt.Errorf("base image %s is not Debian", baseImage)
	}
	major, _, _ := strings.Cut(strings.TrimSuffix(tag, "-slim"), ".")
	suites := map[string]string{"11": "bullseye", "12": "bookworm", "13": "trixie",
		"bullseye": "bullseye", "bookworm": "bookworm", "trixie": "trixie"}
	if s, ok := suites[major]; ok {
		return s, nil
	}
	return "", fmt.Errorf("base image %s: unknown Debian release %q", baseImage, tag)
}
