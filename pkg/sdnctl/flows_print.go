package sdnctl

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// flowGroup is the flows of one owner: one cookie under ovs.OwnerMask (every round).
type flowGroup struct {
	owner    uint64 // cookie & ovs.OwnerMask
	category ovs.CookieCategory
	named    bool
	name     string // "" for the pipeline's own block
	detail   string // e.g. the port and IP of a pod
	flows    []ovs.DumpedFlow
	// groups are the OpenFlow groups the flows use (attachGroups);
	// missingGroups those they use that the bridge does not hold.
	groups        []ovs.GroupEntry
	missingGroups []uint32
}

// groupFlows groups flows by owner and sorts each group by table, priority (highest
// first) and text. Groups are sorted by name later, once named.
func groupFlows(flows []ovs.DumpedFlow) []*flowGroup {
	byOwner := map[uint64]*flowGroup{}
	var groups []*flowGroup
	for _, f := range flows {
		owner := f.Cookie & ovs.OwnerMask
		g := byOwner[owner]
		if g == nil {
			g = &flowGroup{owner: owner, category: ovs.CookieCategoryOf(owner)}
			byOwner[owner] = g
			groups = append(groups, g)
		}
		g.flows = append(g.flows, f)
	}
	for _, g := range groups {
		slices.SortStableFunc(g.flows, func(a, b ovs.DumpedFlow) int {
			return cmp.Or(
				cmp.Compare(a.Table.ID, b.Table.ID),
				cmp.Compare(b.Priority, a.Priority),
				strings.Compare(a.String(), b.String()))
		})
	}
	sortGroups(groups)
	return groups
}

// sortGroups orders groups by kind (pipeline first), then named before unnamed, by name,
// then by cookie.
func sortGroups(groups []*flowGroup) {
	slices.SortFunc(groups, func(a, b *flowGroup) int {
		return cmp.Or(
			cmp.Compare(pipeline.CategoryRank(a.category), pipeline.CategoryRank(b.category)),
			cmpBool(!a.named, !b.named),
			strings.Compare(a.name, b.name),
			cmp.Compare(a.owner, b.owner))
	})
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}

// needs reports whether some group has one of the categories.
func needs(groups []*flowGroup, categories ...ovs.CookieCategory) bool {
	for _, g := range groups {
		if slices.Contains(categories, g.category) {
			return true
		}
	}
	return false
}

// printFlowGroups writes the header and one block per owner. labels, when not nil, holds
// a comment for flows by Key, written after the flow ("  # ingress[0]").
func printFlowGroups(w io.Writer, header string, groups []*flowGroup, wide bool, labels map[string]string) error {
	var b strings.Builder
	b.WriteString(header)
	b.WriteByte('\n')
	for _, g := range groups {
		b.WriteByte('\n')
		b.WriteString(groupHeader(g))
		b.WriteByte('\n')
		for _, f := range g.flows {
			if wide {
				fmt.Fprintf(&b, "duration=%.3fs, n_packets=%d, n_bytes=%d, ", f.Stats.Duration.Seconds(), f.Stats.Packets, f.Stats.Bytes)
			}
			b.WriteString(f.StringNamed())
			if l := labels[f.Key()]; l != "" {
				b.WriteString("  # " + l)
			}
			b.WriteByte('\n')
		}
		for _, e := range g.groups {
			b.WriteString(e.String())
			b.WriteByte('\n')
		}
		for _, id := range g.missingGroups {
			fmt.Fprintf(&b, "# group_id=%d: used by these flows, not on the bridge\n", id)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// groupHeader is "# <kind> <name> (<detail>; cookie 0x…, N flows[, M groups])".
func groupHeader(g *flowGroup) string {
	var b strings.Builder
	b.WriteString("# ")
	b.WriteString(pipeline.CategoryName(g.category))
	switch {
	case g.named && g.name != "":
		b.WriteString(" " + g.name)
	case !g.named && g.category != 0:
		b.WriteString(" <unknown>")
	}
	b.WriteString(" (")
	if g.detail != "" {
		b.WriteString(g.detail + "; ")
	}
	fmt.Fprintf(&b, "cookie %#x, %s", g.owner, plural(len(g.flows), "flow"))
	if n := len(g.groups) + len(g.missingGroups); n > 0 {
		b.WriteString(", " + plural(n, "group"))
	}
	b.WriteString(")")
	return b.String()
}

// printRawFlows writes the flows in ovs-ofctl syntax, one per line, in block order
// (without groups, so that the output stays a flow file).
func printRawFlows(w io.Writer, groups []*flowGroup) error {
	var b strings.Builder
	for _, g := range groups {
		for _, f := range g.flows {
			b.WriteString(f.String())
			b.WriteByte('\n')
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
