package sdnctl

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/ovstest"
)

// TestRegenCannedDump rewrites testdata/flows/dump.txt from flowsScenario
// installed on a real ovs-vswitchd, keeping the packet counters the old dump
// had edited in (matched by flow). Run it after a pipeline change:
//
//	OVS_SDN_REGEN_DUMP=1 go test ./pkg/sdnctl/ -run TestRegenCannedDump
//
// then `go test ./pkg/sdnctl/ -update` for the goldens derived from it.
func TestRegenCannedDump(t *testing.T) {
	if os.Getenv("OVS_SDN_REGEN_DUMP") == "" {
		t.Skip("set OVS_SDN_REGEN_DUMP=1 to rewrite testdata/flows/dump.txt (needs root and OVS)")
	}
	path := filepath.Join("testdata", "flows", "dump.txt")
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	stats := regexp.MustCompile(`n_packets=(\d+), n_bytes=(\d+), `)
	duration := regexp.MustCompile(`duration=[0-9.]+s, `)
	key := func(l string) string {
		return strings.TrimSpace(stats.ReplaceAllString(duration.ReplaceAllString(l, ""), ""))
	}
	counters := map[string]string{}
	for _, l := range strings.Split(string(old), "\n") {
		if m := stats.FindString(l); m != "" && !strings.Contains(m, "n_packets=0,") {
			counters[key(l)] = m
		}
	}
	in := ovstest.Start(t)
	br := in.AddBridge("br0")
	if err := br.ReplaceFlows(context.Background(), flowsScenario()); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(in.Ofctl("dump-flows", "br0"), "\n"), "\n")
	for i, l := range lines[1:] {
		l = duration.ReplaceAllString(l, "duration=7215.042s, ")
		if c, ok := counters[key(l)]; ok {
			l = stats.ReplaceAllString(l, c)
		}
		lines[i+1] = l
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}
