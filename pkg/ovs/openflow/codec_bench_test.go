package openflow

import (
	"testing"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// corpusFlows returns every flow of the corpus.
func corpusFlows(b *testing.B) []ovs.Flow {
	var flows []ovs.Flow
	for _, c := range corpus(b) {
		flows = append(flows, c.flows...)
	}
	if len(flows) == 0 {
		b.Fatal("empty corpus")
	}
	return flows
}

// BenchmarkEncodeBundle: a bundle adding every corpus flow (the Go share
// of a full sync of an empty bridge).
func BenchmarkEncodeBundle(b *testing.B) {
	flows := corpusFlows(b)
	changes := make([]ovs.Change, len(flows))
	for i, f := range flows {
		changes[i] = ovs.AddFlow(f)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := encodeBundle(1, 1, nil, changes); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(flows)), "ns/flow")
}

// BenchmarkDecodeFlows: decoding the corpus flows as a dump returns them.
func BenchmarkDecodeFlows(b *testing.B) {
	flows := corpusFlows(b)
	var m message
	for _, f := range flows {
		start := len(m.b)
		m.u16(0)
		m.u8(f.Table.ID)
		m.zeros(1)
		m.u32(1)
		m.u32(0)
		m.u16(f.Priority)
		m.zeros(12)
		m.u64(f.Cookie)
		m.zeros(16)
		m.match(f.Match)
		m.instructions(f.Actions)
		m.setU16(start, uint16(len(m.b)-start))
	}
	b.ReportAllocs()
	for b.Loop() {
		got, err := decodeFlowStats(&reader{b: m.b})
		if err != nil || len(got) != len(flows) {
			b.Fatalf("%d flows, %v", len(got), err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(flows)), "ns/flow")
}

// BenchmarkTextBaseline is what the ovs-ofctl transport's Go side costs
// for the same corpus: rendering every flow as ovs-ofctl text (a bundle
// of adds) and parsing it back (a dump) — the baselines of
// BenchmarkEncodeBundle and BenchmarkDecodeFlows. ovs-ofctl's own
// parsing and printing come on top of it.
func BenchmarkTextBaseline(b *testing.B) {
	flows := corpusFlows(b)
	texts := make([]string, len(flows))
	for i, f := range flows {
		texts[i] = f.String()
	}
	b.Run("render", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, f := range flows {
				_ = f.String()
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(flows)), "ns/flow")
	})
	b.Run("parse", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, s := range texts {
				if _, err := ovs.ParseFlow(s); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(flows)), "ns/flow")
	})
}
