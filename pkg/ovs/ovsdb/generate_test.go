package ovsdb

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestGeneratedModelsUpToDate regenerates the models with the vswitchd
// package's //go:generate command into a temporary directory and compares
// them with the checked-in files.
func TestGeneratedModelsUpToDate(t *testing.T) {
	gen, err := os.ReadFile("vswitchd/gen.go")
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, line := range strings.Split(string(gen), "\n") {
		if rest, ok := strings.CutPrefix(line, "//go:generate "); ok {
			args = strings.Fields(rest)
		}
	}
	// Expect `go tool modelgen … -o . SCHEMA`; redirect -o.
	i := slices.Index(args, "-o")
	if len(args) < 4 || args[0] != "go" || i < 0 || i+1 >= len(args) {
		t.Fatalf("unexpected //go:generate line in vswitchd/gen.go: %q", args)
	}
	out := t.TempDir()
	args[i+1] = out
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = "vswitchd"
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, msg)
	}

	fresh, _ := filepath.Glob(filepath.Join(out, "*.go"))
	checkedIn, _ := filepath.Glob("vswitchd/*.go")
	var names, want []string
	for _, f := range fresh {
		names = append(names, filepath.Base(f))
	}
	for _, f := range checkedIn {
		if b := filepath.Base(f); b != "gen.go" {
			want = append(want, b)
		}
	}
	if !slices.Equal(names, want) {
		t.Fatalf("generated files %v, checked in %v: run go generate ./pkg/ovs/ovsdb/...", names, want)
	}
	if len(names) < 4 {
		t.Fatalf("only %d files generated", len(names))
	}
	for _, name := range names {
		a, _ := os.ReadFile(filepath.Join(out, name))
		b, _ := os.ReadFile(filepath.Join("vswitchd", name))
		if !bytes.Equal(a, b) {
			t.Errorf("vswitchd/%s differs from a fresh generation: run go generate ./pkg/ovs/ovsdb/...", name)
		}
	}
}
