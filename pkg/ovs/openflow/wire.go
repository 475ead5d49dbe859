package openflow

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The OpenFlow 1.3 wire constants this package uses (OpenFlow 1.3.5
// specification; Nicira and ONF extensions as Open vSwitch 3.1 implements
// them).
const (
	version13 = 0x04

	// Message types.
	typeHello          = 0
	typeError          = 1
	typeEchoRequest    = 2
	typeEchoReply      = 3
	typeExperimenter   = 4
	typeFlowMod        = 14
	typeGroupMod       = 15
	typeMultipartReq   = 18
	typeMultipartReply = 19
	typeBarrierRequest = 20
	typeBarrierReply   = 21

	headerLen = 8
	// maxMessage is the largest OpenFlow message (the length is 16 bits).
	maxMessage = 0xffff

	// Flow mod commands.
	flowAdd          = 0
	flowDelete       = 3
	flowDeleteStrict = 4

	// Group mod commands; groupAddOrMod is OVS's extension, accepted in
	// OpenFlow 1.3 ("group add_or_mod" of ovs-ofctl).
	groupCmdDelete   = 2
	groupCmdAddOrMod = 0x8000
	groupTypeAll     = 0
	groupTypeSelect  = 1

	// Multipart types and flags.
	multipartFlow      = 1
	multipartGroupDesc = 7
	multipartReplyMore = 1

	// Reserved ports and IDs.
	portInPort   = 0xfffffff8
	portAny      = 0xffffffff
	portMax      = 0xffffff00
	groupAny     = 0xffffffff
	tableAll     = 0xff
	bufferNone   = 0xffffffff
	portInPort16 = 0xfff8

	// Instructions.
	instGotoTable    = 1
	instApplyActions = 4

	// Standard actions.
	actOutput       = 0
	actGroup        = 22
	actSetField     = 25
	actExperimenter = 0xffff

	// Nicira action subtypes (vendor nxVendor).
	nxVendor         = 0x00002320
	nxResubmit       = 1
	nxRegMove        = 6
	nxRegLoad        = 7
	nxNote           = 8
	nxResubmitTable  = 14
	nxOutputReg      = 15
	nxMultipath      = 10
	nxLearn          = 16
	nxOutputReg2     = 32
	nxRegLoad2       = 33
	nxConjunction    = 34
	nxCT             = 35
	nxNAT            = 36
	nxCTClear        = 43
	nxActionHeadLen  = 10
	nxCTRecircNone   = 0xff
	nxCTFlagCommit   = 1
	nxLearnDelete    = 2
	nxLearnSrcImm    = 1 << 13
	nxLearnDstLoad   = 1 << 11
	nxLearnDstOutput = 2 << 11
	nxLearnDstMask   = 3 << 11
	nxLearnNBitsMask = 0x3ff

	// NAT flags and range bits (nx_action_nat).
	natFlagSrc        = 1
	natFlagDst        = 2
	natFlagPersistent = 4
	natFlagHash       = 8
	natFlagRandom     = 16
	natRangeIPv4Min   = 1
	natRangeIPv4Max   = 2
	natRangeProtoMin  = 16
	natRangeProtoMax  = 32

	// ONF extension 230: bundles in OpenFlow 1.3, as experimenter
	// messages.
	onfExperimenter   = 0x4f4e4600
	onfBundleControl  = 2300
	onfBundleAdd      = 2301
	bundleOpenReq     = 0
	bundleOpenReply   = 1
	bundleCommitReq   = 4
	bundleCommitReply = 5
	bundleDiscardReq  = 6
	bundleFlags       = 3 // atomic | ordered, as ovs-ofctl bundle
)

// errShort reports a message or structure cut short.
var errShort = errors.New("message too short")

// message is an encoder of OpenFlow messages: it appends to one buffer, so
// that a whole bundle goes out in one write. start/finish bracket each
// message and patch its length.
type message struct {
	b   []byte
	err error
}

func (m *message) u8(v uint8)   { m.b = append(m.b, v) }
func (m *message) u16(v uint16) { m.b = binary.BigEndian.AppendUint16(m.b, v) }
func (m *message) u32(v uint32) { m.b = binary.BigEndian.AppendUint32(m.b, v) }
func (m *message) u64(v uint64) { m.b = binary.BigEndian.AppendUint64(m.b, v) }
func (m *message) zeros(n int) {
	for range n {
		m.b = append(m.b, 0)
	}
}

// padTo appends zeros until the length since start is a multiple of 8.
func (m *message) padTo(start int) {
	m.zeros((8 - (len(m.b)-start)%8) % 8)
}

// setU16 writes v at offset off (a length field written afterwards).
func (m *message) setU16(off int, v uint16) { binary.BigEndian.PutUint16(m.b[off:], v) }

// fail records the first encoding error. Every encoding error is
// ErrUnsupported: whatever the codec cannot encode, it refuses before
// sending anything.
func (m *message) fail(err error) {
	if m.err == nil {
		m.err = fmt.Errorf("%w: %w", ErrUnsupported, err)
	}
}

// start appends a message header and returns its offset for finish.
func (m *message) start(typ uint8, xid uint32) int {
	off := len(m.b)
	m.u8(version13)
	m.u8(typ)
	m.u16(0)
	m.u32(xid)
	return off
}

// finish patches the length of the message started at off.
func (m *message) finish(off int) {
	n := len(m.b) - off
	if n > maxMessage {
		m.fail(fmt.Errorf("message of %d bytes exceeds the OpenFlow limit of %d", n, maxMessage))
		return
	}
	m.setU16(off+2, uint16(n))
}

// reader decodes big-endian fields; the first short read sets err and
// every later read returns zeros.
type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil || len(r.b) < n {
		r.err = errShort
		return make([]byte, n)
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) u8() uint8   { return r.take(1)[0] }
func (r *reader) u16() uint16 { return binary.BigEndian.Uint16(r.take(2)) }
func (r *reader) u32() uint32 { return binary.BigEndian.Uint32(r.take(4)) }
func (r *reader) u64() uint64 { return binary.BigEndian.Uint64(r.take(8)) }
func (r *reader) skip(n int)  { r.take(n) }
func (r *reader) left() int   { return len(r.b) }

// sub returns a reader over the next n bytes and skips them.
func (r *reader) sub(n int) *reader {
	b := r.take(n)
	if r.err != nil {
		return &reader{err: r.err}
	}
	return &reader{b: b}
}

// header is a decoded OpenFlow message header.
type header struct {
	version, typ uint8
	length       uint16
	xid          uint32
}

func parseHeader(b []byte) header {
	return header{version: b[0], typ: b[1], length: binary.BigEndian.Uint16(b[2:]), xid: binary.BigEndian.Uint32(b[4:])}
}
