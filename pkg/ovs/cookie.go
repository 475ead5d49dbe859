package ovs

import (
	"fmt"
	"hash/fnv"
)

// Cookies encode who owns a flow, so that a restarted agent can delete
// stale flows by owner and sdnctl can list "the flows of pod X":
//
//	bits 63..56  category (Pipeline, Pod, Node, …)
//	bits 55..48  reserved, zero (ignored by OwnerMask, so that a later
//	             layout may use them without renaming owners)
//	bits 47..0   object ID: FNV-64a of the owner key, truncated to 48 bits
//
// Owner keys are stable strings (pkg/pipeline's owners: "pod/<ns>/<name>",
// the HostSubnet UID, "vnid/<id>", "policy-ns/<ns>", …). A 48-bit hash makes
// a collision between two owners of one category negligible (~n²/2^49).
type CookieCategory uint8

// Cookie categories. Zero is reserved for flows nobody owns (cookie=0x0,
// e.g. added by hand), so that deleting by category never touches them.
const (
	CookiePipeline  CookieCategory = iota + 1 // static base flows
	CookiePod                                 // per local pod
	CookieNode                                // per remote HostSubnet
	CookieNamespace                           // per VNID (isolation rules)
	CookiePolicy                              // per NetworkPolicy
	CookieMulticast                           // per multicast-enabled VNID
	CookieEgress                              // egress firewall / egress IP
	CookieService                             // per Service (ovs proxy)
)

// CookieLearned is the category of flows that OVS itself installs through
// learn actions (session affinity, reflexive flows); the learn's cookie
// (CookieFor(CookieLearned, owner)) becomes theirs. Such flows are never part
// of the desired state: ReplaceFlows and ReplaceAll leave every flow of this
// category alone, so a periodic full sync does not wipe session affinity,
// and reject desired flows of it. The value lies outside the iota sequence
// above so that categories added later never collide with it.
const CookieLearned CookieCategory = 0x80

const (
	categoryShift = 56
	objectBits    = 48
	objectMask    = 1<<objectBits - 1
	// CategoryMask selects the category bits of a cookie.
	CategoryMask uint64 = 0xff << categoryShift
	// OwnerMask selects category and object ID, ignoring the reserved bits.
	OwnerMask = CategoryMask | objectMask
)

// CookieFor returns the cookie of the owner key in category c. It is a pure
// function of its arguments.
func CookieFor(c CookieCategory, key string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(key))
	return uint64(c)<<categoryShift | h.Sum64()&objectMask
}

// lastCategory is the highest category of the iota sequence above.
const lastCategory = CookieService

// Known reports whether c is a category ovs-sdn's agent uses (or OVS's
// learned flows of it): a flow of another category — 0 above all, a flow
// added by hand — was put on the bridge by someone else.
func (c CookieCategory) Known() bool {
	return (c >= CookiePipeline && c <= lastCategory) || c == CookieLearned
}

// CookieCategoryOf returns the category bits of cookie.
func CookieCategoryOf(cookie uint64) CookieCategory { return CookieCategory(cookie >> categoryShift) }

// CookieMatch selects flows whose cookie equals Cookie under Mask, as in
// `del-flows br0 cookie=0x…/0x…`. The zero value matches every flow.
type CookieMatch struct {
	Cookie, Mask uint64
}

// String renders "cookie=0x<c>/0x<mask>", or "" for the zero value.
func (m CookieMatch) String() string {
	if m.Mask == 0 {
		return ""
	}
	return fmt.Sprintf("cookie=%#x/%#x", m.Cookie&m.Mask, m.Mask)
}

// Matches reports whether cookie is selected.
func (m CookieMatch) Matches(cookie uint64) bool { return cookie&m.Mask == m.Cookie&m.Mask }

// MatchCategory selects every flow of category c.
func MatchCategory(c CookieCategory) CookieMatch {
	return CookieMatch{Cookie: uint64(c) << categoryShift, Mask: CategoryMask}
}

// MatchOwner selects every flow of one owner (whatever the reserved bits).
func MatchOwner(c CookieCategory, key string) CookieMatch {
	return CookieMatch{Cookie: CookieFor(c, key), Mask: OwnerMask}
}
