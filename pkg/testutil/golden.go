// Package testutil holds helpers shared by the tests of several packages.
package testutil

import "flag"

// update is the one -update flag of every test binary: golden-file helpers in several
// packages consult it, and a flag defined twice in one binary panics.
var update = flag.Bool("update", false, "rewrite golden files instead of comparing with them")

// Update reports whether the test binary runs with -update.
func Update() bool { return *update }
