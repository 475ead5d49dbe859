package openflow

import (
	"errors"
	"fmt"
)

// ErrDisconnected is wrapped by the errors of operations that lost the
// connection to ovs-vswitchd (it exited or restarted, or the bridge was
// deleted). The next operation connects again.
var ErrDisconnected = errors.New("openflow: connection to ovs-vswitchd lost")

// ErrUnsupported is wrapped by the errors of flows, groups and actions the
// codec cannot encode or decode: the transport refuses them loudly, naming
// the change, rather than send something else. The node agent then falls
// back to ovs-ofctl for the bridge (pkg/node, fallbackBridge).
var ErrUnsupported = errors.New("openflow: not supported by this codec")

// OFPError is an OFPT_ERROR message OVS sent in reply to a request.
type OFPError struct {
	Type, Code uint16
	// Experimenter is set for experimenter errors (Type 0xffff), whose
	// code is Code.
	Experimenter uint32
}

// Error names the error as ovs-ofctl does where the name is known
// ("OFPBAC_BAD_OUT_GROUP"), else by its numbers.
func (e *OFPError) Error() string {
	if n, ok := errorNames[[2]uint16{e.Type, e.Code}]; ok && e.Type != 0xffff {
		return n
	}
	if e.Type == 0xffff {
		if n, ok := experimenterErrorNames[e.Code]; ok && e.Experimenter == onfExperimenter {
			return n
		}
		return fmt.Sprintf("experimenter %#x error code %d", e.Experimenter, e.Code)
	}
	return fmt.Sprintf("OpenFlow error type %d code %d", e.Type, e.Code)
}

func decodeError(body []byte) *OFPError {
	r := &reader{b: body}
	e := &OFPError{Type: r.u16(), Code: r.u16()}
	if e.Type == 0xffff {
		e.Experimenter = r.u32()
	}
	return e
}

// errorNames are the OpenFlow 1.3 errors a flow or group mod can meet.
var errorNames = map[[2]uint16]string{
	{0, 0}: "OFPHFC_INCOMPATIBLE", {0, 1}: "OFPHFC_EPERM",
	{1, 0}: "OFPBRC_BAD_VERSION", {1, 1}: "OFPBRC_BAD_TYPE", {1, 2}: "OFPBRC_BAD_MULTIPART",
	{1, 3}: "OFPBRC_BAD_EXPERIMENTER", {1, 4}: "OFPBRC_BAD_EXP_TYPE", {1, 5}: "OFPBRC_EPERM",
	{1, 6}: "OFPBRC_BAD_LEN", {1, 9}: "OFPBRC_BAD_TABLE_ID", {1, 11}: "OFPBRC_BAD_PORT",
	{2, 0}: "OFPBAC_BAD_TYPE", {2, 1}: "OFPBAC_BAD_LEN", {2, 2}: "OFPBAC_BAD_EXPERIMENTER",
	{2, 3}: "OFPBAC_BAD_EXP_TYPE", {2, 4}: "OFPBAC_BAD_OUT_PORT", {2, 5}: "OFPBAC_BAD_ARGUMENT",
	{2, 6}: "OFPBAC_EPERM", {2, 7}: "OFPBAC_TOO_MANY", {2, 9}: "OFPBAC_BAD_OUT_GROUP",
	{2, 10}: "OFPBAC_MATCH_INCONSISTENT", {2, 11}: "OFPBAC_UNSUPPORTED_ORDER", {2, 13}: "OFPBAC_BAD_SET_TYPE",
	{2, 14}: "OFPBAC_BAD_SET_LEN", {2, 15}: "OFPBAC_BAD_SET_ARGUMENT",
	{3, 0}: "OFPBIC_UNKNOWN_INST", {3, 1}: "OFPBIC_UNSUP_INST", {3, 2}: "OFPBIC_BAD_TABLE_ID",
	{3, 6}: "OFPBIC_BAD_LEN",
	{4, 0}: "OFPBMC_BAD_TYPE", {4, 1}: "OFPBMC_BAD_LEN", {4, 3}: "OFPBMC_BAD_DL_ADDR_MASK",
	{4, 4}: "OFPBMC_BAD_NW_ADDR_MASK", {4, 5}: "OFPBMC_BAD_WILDCARDS", {4, 6}: "OFPBMC_BAD_FIELD",
	{4, 7}: "OFPBMC_BAD_VALUE", {4, 8}: "OFPBMC_BAD_MASK", {4, 9}: "OFPBMC_BAD_PREREQ",
	{4, 10}: "OFPBMC_DUP_FIELD",
	{5, 0}:  "OFPFMFC_UNKNOWN", {5, 1}: "OFPFMFC_TABLE_FULL", {5, 2}: "OFPFMFC_BAD_TABLE_ID",
	{5, 3}: "OFPFMFC_OVERLAP", {5, 4}: "OFPFMFC_EPERM", {5, 5}: "OFPFMFC_BAD_TIMEOUT",
	{5, 6}: "OFPFMFC_BAD_COMMAND", {5, 7}: "OFPFMFC_BAD_FLAGS",
	{6, 0}: "OFPGMFC_GROUP_EXISTS", {6, 1}: "OFPGMFC_INVALID_GROUP", {6, 2}: "OFPGMFC_WEIGHT_UNSUPPORTED",
	{6, 3}: "OFPGMFC_OUT_OF_GROUPS", {6, 4}: "OFPGMFC_OUT_OF_BUCKETS", {6, 5}: "OFPGMFC_CHAINING_UNSUPPORTED",
	{6, 7}: "OFPGMFC_LOOP", {6, 8}: "OFPGMFC_UNKNOWN_GROUP", {6, 9}: "OFPGMFC_CHAINED_GROUP",
	{6, 10}: "OFPGMFC_BAD_TYPE", {6, 11}: "OFPGMFC_BAD_COMMAND", {6, 12}: "OFPGMFC_BAD_BUCKET",
}

// experimenterErrorNames are the ONF bundle errors (extension 230) of
// OpenFlow 1.3.
var experimenterErrorNames = map[uint16]string{
	2300: "OFPBFC_UNKNOWN", 2301: "OFPBFC_EPERM", 2302: "OFPBFC_BAD_ID", 2303: "OFPBFC_BUNDLE_EXIST",
	2304: "OFPBFC_BUNDLE_CLOSED", 2305: "OFPBFC_OUT_OF_BUNDLES", 2306: "OFPBFC_BAD_TYPE",
	2307: "OFPBFC_BAD_FLAGS", 2308: "OFPBFC_MSG_BAD_LEN", 2309: "OFPBFC_MSG_BAD_XID",
	2310: "OFPBFC_MSG_UNSUP", 2311: "OFPBFC_MSG_CONFLICT", 2312: "OFPBFC_MSG_TOO_MANY",
	2313: "OFPBFC_MSG_FAILED", 2314: "OFPBFC_TIMEOUT", 2315: "OFPBFC_BUNDLE_IN_PROCESS",
}
