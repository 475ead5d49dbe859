package shim

import (
	"os/exec"
	"strings"
	"testing"
)

// TestShimImports: sdn-cni (this package) links nothing but the standard
// library and the CNI library (with what that needs) — every pod start
// pays for what the binary links, twice.
func TestShimImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/ovs-sdn/ovs-sdn/cmd/sdn-cni").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	allowed := []string{
		"github.com/containernetworking/cni/",
		"github.com/vishvananda/netns", // cni/pkg/ns
		"golang.org/x/sys/",
		"github.com/ovs-sdn/ovs-sdn/pkg/cni/shim",
		"github.com/ovs-sdn/ovs-sdn/cmd/sdn-cni",
	}
	for _, pkg := range strings.Fields(string(out)) {
		first, _, _ := strings.Cut(pkg, "/")
		if !strings.Contains(first, ".") {
			continue // standard library
		}
		ok := false
		for _, a := range allowed {
			ok = ok || strings.HasPrefix(pkg, a)
		}
		if !ok {
			t.Errorf("sdn-cni links %s; keep the shim to the standard library and the CNI library", pkg)
		}
	}
}
