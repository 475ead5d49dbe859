package ovs_test

import (
	"os"
	"strings"
	"testing"

	. "github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// TestSyncFingerprints: for flows as the agent and the fixtures render them,
// the text fingerprint of the desired flow equals that of the line OVS 3.1
// dumped for it (testdata/ovs31-*.dump, verbatim dump-flows of these very
// flows), so a periodic full sync of an unchanged bridge decides everything
// on the fast path without parsing the dump.
func TestSyncFingerprints(t *testing.T) {
	_, model := modelState()
	for file, flows := range map[string][]Flow{"testdata/ovs31-model.dump": model, "testdata/ovs31-sample.dump": samplePipeline()} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		dumped := map[string]bool{}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")[1:]
		for _, l := range lines {
			p, ok := DumpPrint(strings.TrimSpace(l))
			if !ok {
				t.Fatalf("%s: cannot fingerprint %q", file, l)
			}
			dumped[p] = true
		}
		if len(lines) != len(flows) {
			t.Errorf("%s: %d lines for %d flows", file, len(lines), len(flows))
		}
		for _, f := range flows {
			if !dumped[Fingerprint(f)] {
				t.Errorf("%s: no fast-path match for %s\n  print %s", file, f, Fingerprint(f))
			}
		}
	}
}
