package ovs

// Internals exported to the external tests.
var (
	Fingerprint = fingerprint
	DumpPrint   = dumpPrint
)
