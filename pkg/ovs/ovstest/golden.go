package ovstest

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/testutil"
)

// AssertGolden compares flows, sorted (ovs.SortFlows) and rendered with
// StringNamed one per line, with testdata/<name>.flows relative to the test's
// package directory. With -update it rewrites the file instead. On mismatch
// the failure shows a line diff (- golden, + got).
func AssertGolden(t testing.TB, name string, flows []ovs.Flow) {
	t.Helper()
	assertGoldenText(t, name, RenderGolden(flows))
}

// AssertGoldenWithGroups is AssertGolden for a state with groups: the
// groups, sorted by ID, one per line in their dump-groups form, come first,
// then the flows as AssertGolden renders them.
func AssertGoldenWithGroups(t testing.TB, name string, groups []ovs.GroupEntry, flows []ovs.Flow) {
	t.Helper()
	assertGoldenText(t, name, RenderGoldenWithGroups(groups, flows))
}

// RenderGoldenWithGroups renders groups and flows as AssertGoldenWithGroups
// stores them.
func RenderGoldenWithGroups(groups []ovs.GroupEntry, flows []ovs.Flow) string {
	sorted := slices.Clone(groups)
	slices.SortFunc(sorted, func(a, b ovs.GroupEntry) int { return cmp.Compare(a.ID, b.ID) })
	var b strings.Builder
	for _, g := range sorted {
		b.WriteString(g.String())
		b.WriteByte('\n')
	}
	return b.String() + RenderGolden(flows)
}

func assertGoldenText(t testing.TB, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".flows")
	if testutil.Update() {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden %s: %v (run with -update to create it)", path, err)
	}
	if d := LineDiff(string(want), got); d != "" {
		t.Errorf("flows differ from golden %s (- golden, + got); if intended, run with -update "+
			"and bump the pipeline version note if the base pipeline changed:\n%s", path, d)
	}
}

// RenderGolden renders flows as AssertGolden stores them.
func RenderGolden(flows []ovs.Flow) string {
	sorted := append([]ovs.Flow(nil), flows...)
	ovs.SortFlows(sorted)
	var b strings.Builder
	for _, f := range sorted {
		b.WriteString(f.StringNamed())
		b.WriteByte('\n')
	}
	return b.String()
}

// LineDiff returns the lines only in want ("- ") and only in got ("+ "),
// multiset-wise, in order; "" when both hold the same lines.
func LineDiff(want, got string) string {
	count := map[string]int{}
	for _, l := range splitLines(got) {
		count[l]++
	}
	var b strings.Builder
	for _, l := range splitLines(want) {
		if count[l] > 0 {
			count[l]--
			continue
		}
		fmt.Fprintf(&b, "- %s\n", l)
	}
	for _, l := range splitLines(got) {
		if count[l] > 0 {
			count[l]--
			fmt.Fprintf(&b, "+ %s\n", l)
		}
	}
	return b.String()
}

func splitLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}
