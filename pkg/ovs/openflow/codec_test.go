package openflow

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// corpusFiles are the goldens of every flow the repository renders: the
// pipeline in each mode, the NetworkPolicy compiler's features, pkg/ovs's
// sample pipeline and Services fixture, and OVS 3.1's dump of every model
// construct.
var corpusFiles = []string{
	"../testdata/*.flows",
	"../testdata/*.dump",
	"../../pipeline/testdata/*.flows",
	"../../networkpolicy/testdata/*.flows",
	"../../proxy/testdata/*.flows",
}

// corpusFile is the flows and groups of one corpus file.
type corpusFile struct {
	flows  []ovs.Flow
	groups []ovs.GroupEntry
}

// corpus returns every corpus file's flows and groups, by file.
func corpus(t testing.TB) map[string]corpusFile {
	t.Helper()
	out := map[string]corpusFile{}
	for _, pattern := range corpusFiles {
		files, err := filepath.Glob(pattern)
		if err != nil || len(files) == 0 {
			t.Fatalf("no corpus files %s: %v", pattern, err)
		}
		for _, file := range files {
			out[file] = parseFile(t, file)
		}
	}
	return out
}

func parseFile(t testing.TB, file string) corpusFile {
	t.Helper()
	text, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var c corpusFile
	for _, line := range strings.Split(string(text), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "OFPST_FLOW"):
		case strings.HasPrefix(line, "group_id="):
			g, err := ovs.ParseGroup(line)
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			c.groups = append(c.groups, g)
		default:
			f, err := ovs.ParseFlow(line)
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			c.flows = append(c.flows, f)
		}
	}
	return c
}

// roundTrip encodes f as a flow mod and decodes the match and instructions
// back, as they come back in a flow stats reply.
func roundTrip(t *testing.T, f ovs.Flow) ovs.Flow {
	t.Helper()
	var m message
	m.change(7, ovs.AddFlow(f))
	if m.err != nil {
		t.Fatalf("encode %s: %v", f, m.err)
	}
	if got := parseHeader(m.b); int(got.length) != len(m.b) || got.typ != typeFlowMod || len(m.b)%8 != 0 {
		t.Fatalf("encode %s: header %+v for %d bytes", f, got, len(m.b))
	}
	r := &reader{b: m.b[headerLen:]}
	cookie := r.u64()
	r.skip(8)
	table := r.u8()
	r.skip(5)
	prio := r.u16()
	r.skip(16)
	match, err := decodeMatch(r)
	if err != nil {
		t.Fatalf("decode match of %s: %v", f, err)
	}
	acts, err := decodeInstructions(r)
	if err != nil {
		t.Fatalf("decode instructions of %s: %v", f, err)
	}
	tb, _ := ovs.TableByID(table)
	return ovs.Flow{Table: tb, Priority: prio, Cookie: cookie, Match: match, Actions: acts}
}

// TestCodecRoundTrip: every flow of the corpus encodes and decodes back to
// the same flow (Canonical), and its actions render exactly as before
// (decoding gives the typed values the text parser gives).
func TestCodecRoundTrip(t *testing.T) {
	n := 0
	for file, c := range corpus(t) {
		for _, f := range c.flows {
			got := roundTrip(t, f)
			if got.Canonical() != f.Canonical() {
				t.Errorf("%s: round trip changed the flow\n want %s\n got  %s", file, f.Canonical(), got.Canonical())
			}
			n++
		}
	}
	if n < 400 {
		t.Errorf("corpus has only %d flows", n)
	}
}

// TestCodecGroups: groups of both types with the bucket actions Services
// use encode and decode back.
func TestCodecGroups(t *testing.T) {
	var groups []ovs.GroupEntry
	for _, c := range corpus(t) {
		groups = append(groups, c.groups...)
	}
	if len(groups) == 0 {
		t.Fatal("no groups in the corpus")
	}
	ep := netip.MustParseAddr("10.128.0.5")
	lb := ovs.RegBits(4, 16, 18, "LB").Value(2)
	groups = append(groups,
		ovs.SelectGroup(1, ovs.NewBucket(100, ovs.RegBits(3, 0, 31, "EP").Load(0x0a800005), lb.Load(), ovs.ResubmitTo(ovs.TableLocalPod)),
			ovs.NewBucket(1, ovs.Output(3))),
		ovs.AllGroup(7, ovs.BucketOf(ovs.Output(3)), ovs.BucketOf(ovs.CTCommit().WithZone(5).WithDNAT(ep, 8080)),
			ovs.BucketOf(ovs.NewLearn(ovs.TableServices, 200).WithHardTimeout(300).MatchProto(ovs.ProtoTCP).
				MatchSame(ovs.FieldIPSrc).LoadMark(lb)), ovs.BucketOf()))
	for _, g := range groups {
		var m message
		m.groupMod(3, groupCmdAddOrMod, g)
		if m.err != nil {
			t.Fatal(m.err)
		}
		r := &reader{b: m.b[headerLen:]}
		r.skip(2) // command; the rest is laid out as a group description
		got := decodeGroupDesc(r)
		if got.err != nil || got.group.String() != g.String() {
			t.Errorf("group round trip\n want %s\n got  %s (%v)", g, got.group, got.err)
		}
	}
}

// TestCodecRejects: constructs without an encoding, or that OVS could not
// take, fail to encode with an error naming them instead of sending
// something else.
func TestCodecRejects(t *testing.T) {
	for _, f := range []ovs.Flow{
		ovs.NewFlow(ovs.TableRouting, 10).With(ovs.ProtoIP, ovs.TpDst(80)).Action(ovs.Output(1)),              // tp_dst needs tcp/udp/sctp
		ovs.NewFlow(ovs.TableRouting, 10).Action(ovs.Goto(ovs.TableLocalPod), ovs.Output(1)),                  // goto not last
		ovs.NewFlow(ovs.TableRouting, 10).Action(ovs.RegBits(3, 0, 7, "x").MoveTo(ovs.RegBits(4, 0, 3, "y"))), // widths differ
	} {
		var m message
		m.change(1, ovs.AddFlow(f))
		if m.err == nil {
			t.Errorf("%s encoded without error", f)
		}
	}
}

// TestDecodeUnknown: a flow with an action outside the model decodes to
// an error (so a sync deletes it by its raw match) rather than to a wrong
// typed flow.
func TestDecodeUnknown(t *testing.T) {
	var m message
	m.instructionsRaw([]byte{0, 0, 0, 16, 0xff, 0xff, 0xff, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0}) // output:CONTROLLER
	if _, err := decodeInstructions(&reader{b: m.b}); err == nil {
		t.Error("output to CONTROLLER decoded without error")
	}
}

// instructionsRaw appends an apply-actions instruction with raw actions.
func (m *message) instructionsRaw(actions []byte) {
	m.u16(instApplyActions)
	m.u16(uint16(8 + len(actions)))
	m.zeros(4)
	m.b = append(m.b, actions...)
}

// TestUnreadableDesired: a full sync refuses (ErrUnsupported, naming the
// flow or group) when OVS holds an undecodable flow with a desired flow's
// table, priority and cookie, or an undecodable group with a desired ID;
// undecodable strangers are no reason to refuse (the sync deletes them).
func TestUnreadableDesired(t *testing.T) {
	want := ovs.NewFlow(ovs.TableLocalPod, 10).WithCookie(0x42).MatchIPv4().Action(ovs.Output(3))
	odd := errors.New("unsupported action type 99")
	stranger := rawFlow{table: 70, priority: 10, cookie: 0x43, err: odd}
	if err := unreadableDesiredFlow([]rawFlow{stranger}, []ovs.Flow{want}); err != nil {
		t.Errorf("stranger: %v", err)
	}
	ours := rawFlow{table: 70, priority: 10, cookie: 0x42, err: odd}
	err := unreadableDesiredFlow([]rawFlow{stranger, ours}, []ovs.Flow{want})
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), want.String()) {
		t.Errorf("ours: %v, want ErrUnsupported naming %s", err, want)
	}
	g := ovs.AllGroup(7, ovs.BucketOf(ovs.Output(3)))
	if err := unreadableDesiredGroup([]rawGroup{{group: ovs.GroupEntry{ID: 8}, err: odd}}, []ovs.GroupEntry{g}); err != nil {
		t.Errorf("stranger group: %v", err)
	}
	if err := unreadableDesiredGroup([]rawGroup{{group: ovs.GroupEntry{ID: 7}, err: odd}}, []ovs.GroupEntry{g}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("our group: %v, want ErrUnsupported", err)
	}
}
