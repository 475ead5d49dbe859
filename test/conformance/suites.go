package main

// A suite is one selection of Kubernetes' own e2e specs (k8s.io/kubernetes v1.34.4
// test/e2e, unmodified) that `make conformance` runs against the lab.
type suite struct {
	// Name names the suite's report directory and its lines in the summary.
	Name string
	// Focus is the --ginkgo.focus regular expression: what the suite is.
	Focus string
	// Skips are the specs of Focus left out, each with its reason; every entry's
	// Pattern is joined into --ginkgo.skip.
	Skips []skip
	// PairTraces: a failing spec's log names client and server pods whose probe gave
	// the wrong answer (the Netpol reachability matrix); trace each such pair.
	PairTraces bool
}

// A skip is a spec (or group) the lab cannot run, and why.
type skip struct {
	Pattern string
	Reason  string
}

// netpolSuite is all of `[sig-network] Netpol` except the specs that need SCTP sockets.
// The two specs that only create policies naming SCTP ("should not mistakenly treat
// 'protocol: SCTP' as 'protocol: TCP'", "should properly isolate pods that are selected
// by a policy allowing SCTP") probe over TCP and run.
var netpolSuite = suite{
	Name:  "netpol",
	Focus: `\[sig-network\] Netpol`,
	Skips: []skip{{
		Pattern: `\[Feature:SCTPConnectivity\]`,
		Reason: "the pods serve and probe SCTP with kernel SCTP sockets (agnhost --protocol=sctp); " +
			"this machine's kernel has no SCTP module. ovs-sdn's SCTP policy is tested with raw packets instead (test/e2e TestNetworkPolicySCTP*)",
	}},
	PairTraces: true,
}

// networkSuite is the `[sig-network]` `[Conformance]` specs: Services, EndpointSlices,
// DNS, pod networking, HostPort, Proxy and the network APIs.
var networkSuite = suite{
	Name:  "sig-network-conformance",
	Focus: `\[sig-network\].*\[Conformance\]`,
}

// skipPattern is the --ginkgo.skip value for s ("" when nothing is skipped).
func (s suite) skipPattern() string {
	out := ""
	for i, k := range s.Skips {
		if i > 0 {
			out += "|"
		}
		out += k.Pattern
	}
	return out
}
