package main

import (
	"encoding/xml"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// summary is what Ginkgo prints at the end of a run:
//
//	Ran 47 of 7144 Specs in 1620.3 seconds
//	SUCCESS! -- 47 Passed | 0 Failed | 0 Pending | 7097 Skipped
type summary struct {
	Ran, Of                          int
	Seconds                          float64
	Passed, Failed, Pending, Skipped int
	Lines                            []string // the two lines as printed
}

var (
	ranLine    = regexp.MustCompile(`Ran (\d+) of (\d+) Specs in ([0-9.]+) seconds`)
	resultLine = regexp.MustCompile(`(SUCCESS!|FAIL!).* -- (\d+) Passed \| (\d+) Failed \| (\d+) Pending \| (\d+) Skipped`)
)

// parseSummary finds Ginkgo's summary in a run's output; ok is false when the run
// ended before printing it (a crash or a timeout).
func parseSummary(out string) (s summary, ok bool) {
	var gotRan, gotResult bool
	for _, line := range strings.Split(out, "\n") {
		if m := ranLine.FindStringSubmatch(line); m != nil {
			fmt.Sscan(m[1], &s.Ran)
			fmt.Sscan(m[2], &s.Of)
			fmt.Sscan(m[3], &s.Seconds)
			s.Lines = append(s.Lines, strings.TrimSpace(line))
			gotRan = true
		}
		if m := resultLine.FindStringSubmatch(line); m != nil {
			fmt.Sscan(m[2], &s.Passed)
			fmt.Sscan(m[3], &s.Failed)
			fmt.Sscan(m[4], &s.Pending)
			fmt.Sscan(m[5], &s.Skipped)
			s.Lines = append(s.Lines, strings.TrimSpace(line))
			gotResult = true
		}
	}
	return s, gotRan && gotResult
}

// failedSpec is one failed spec of a JUnit report: the upstream test's own message and
// the log Ginkgo captured for it.
type failedSpec struct {
	Name    string
	Message string
	Log     string
}

// junitReport is the part of Ginkgo's JUnit XML (--report-dir/junit_01.xml) we read.
type junitReport struct {
	Suites []struct {
		Cases []struct {
			Name    string `xml:"name,attr"`
			Status  string `xml:"status,attr"`
			Failure *struct {
				Message string `xml:"message,attr"`
				Body    string `xml:",chardata"`
			} `xml:"failure"`
			SystemErr string `xml:"system-err"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// failedSpecs reads the failed specs of a JUnit report.
func failedSpecs(path string) ([]failedSpec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r junitReport
	if err := xml.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var out []failedSpec
	for _, s := range r.Suites {
		for _, c := range s.Cases {
			if c.Failure == nil && c.Status != "failed" && c.Status != "panicked" && c.Status != "timedout" {
				continue
			}
			f := failedSpec{Name: c.Name, Log: c.SystemErr}
			if c.Failure != nil {
				f.Message = strings.TrimSpace(c.Failure.Message)
				if f.Message == "" {
					f.Message = strings.TrimSpace(c.Failure.Body)
				}
			}
			out = append(out, f)
		}
	}
	return out, nil
}

// A wrongPair is a probe of the Netpol reachability matrix that gave the wrong answer.
type wrongPair struct {
	From, To string // pods as "namespace/name"
	Addr     string // what the probe dialled: "<Service IP>:<port>"
	Protocol string // tcp, udp or sctp
	Expected string // "allowed" or "blocked"
}

var (
	validationFailed = regexp.MustCompile(`Validation of (\S+/\S+) -> (\S+/\S+) FAILED`)
	probeCommand     = regexp.MustCompile(`Expected (allowed|blocked) pod connection was instead \w+ --- run '.*connect (\S+) .*--protocol=(\w+)`)
)

// wrongPairs finds the wrong probes a Netpol spec logged, in order, without repeats
// (the suite probes the matrix twice before failing and logs both rounds).
func wrongPairs(log string) []wrongPair {
	var out []wrongPair
	seen := map[wrongPair]bool{}
	var cur *wrongPair
	for _, line := range strings.Split(log, "\n") {
		if m := validationFailed.FindStringSubmatch(line); m != nil {
			cur = &wrongPair{From: m[1], To: m[2]}
			continue
		}
		if m := probeCommand.FindStringSubmatch(line); m != nil && cur != nil {
			cur.Expected, cur.Addr, cur.Protocol = m[1], m[2], m[3]
			if !seen[*cur] {
				seen[*cur] = true
				out = append(out, *cur)
			}
			cur = nil
		}
	}
	return out
}
