package network

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ovs-sdn/ovs-sdn/pkg/testenv"
)

// TestGeneratedCodeIsCurrent runs hack/verify-codegen.sh, which regenerates deepcopy,
// clientset, listers, informers and CRD YAML into a scratch copy of the tree and diffs them
// against the checked-in files.
func TestGeneratedCodeIsCurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("regenerates all generated code (~1-2 minutes); skipped with -short")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatalf("hack/verify-codegen.sh needs the go command in PATH: %v", err)
	}
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), filepath.Join(root, "hack", "verify-codegen.sh"))
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("generated files are stale or generation failed (run `make generate`): %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
