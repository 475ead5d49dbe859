package pipeline

import (
	"cmp"
	"strconv"
	"strings"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// OwnerKind is the kind of object that owns flows on br0. Each kind has one
// cookie category, one key prefix and one display word (ownerKinds); the
// agent's flow store, the cookies on br0 and sdnctl's grouping read them
// from here, so a new kind is one entry in ownerKinds and one constructor.
type OwnerKind uint8

// Owner kinds. The zero value is not a kind.
const (
	// KindPipeline owns the static base flows (BaseFlows).
	KindPipeline OwnerKind = iota + 1
	// KindIsolation owns the isolation mode's static flows
	// (Isolation.StaticFlows).
	KindIsolation
	// KindVersion owns the table-253 note, written after everything else.
	KindVersion
	// KindPod owns the five flows of one local pod.
	KindPod
	// KindNode owns the flows of one remote node (HostSubnet).
	KindNode
	// KindTenant owns the multitenant isolation rule of one VNID in use.
	KindTenant
	// KindPolicyNamespace owns the compiled NetworkPolicy flows of one
	// namespace (everything that matches its VNID register).
	KindPolicyNamespace
	// KindPolicyMatch owns one shared conjunctive match flow (a peer or
	// port clause used by conjunctions of any namespace).
	KindPolicyMatch
	// KindPolicyAllowAll owns the allow-all flows of an agent that runs
	// networkpolicy mode without a Kubernetes client.
	KindPolicyAllowAll
	// KindMulticastRemote owns the table-111 replication flow.
	KindMulticastRemote
	// KindServiceProxy owns the static flows of the ovs proxy.
	KindServiceProxy
	// KindService owns the flows and groups of one Service.
	KindService
	// KindEgressIP owns the flows and group of one VNID's egress IPs.
	KindEgressIP
	// KindEgressIPHost owns the flows of the egress IPs the node holds.
	KindEgressIPHost
	// KindMulticastVNID owns the table-110/120 flows of one
	// multicast-enabled VNID.
	KindMulticastVNID
)

// ownerKind describes one kind. Keys are "<prefix><id>" (or the prefix alone
// for singletons); the cookie hashes the key, or a fixed cookie key when set.
type ownerKind struct {
	prefix    string
	category  ovs.CookieCategory
	word      string // display: "pod proj1/client1"
	cookieKey string // singleton cookie key for every owner of the kind
	rank      int    // full-sync order: lower first; the version is last
}

var ownerKinds = map[OwnerKind]ownerKind{
	KindPipeline:        {prefix: "pipeline", category: ovs.CookiePipeline, word: "pipeline"},
	KindIsolation:       {prefix: "isolation", category: ovs.CookiePipeline, word: "isolation"},
	KindVersion:         {prefix: "version", category: ovs.CookiePipeline, word: "version", rank: 1},
	KindPod:             {prefix: "pod/", category: ovs.CookiePod, word: "pod"},
	KindNode:            {prefix: "node/", category: ovs.CookieNode, word: "node"},
	KindTenant:          {prefix: "vnid/", category: ovs.CookieNamespace, word: "vnid"},
	KindPolicyNamespace: {prefix: "policy-ns/", category: ovs.CookiePolicy, word: "namespace"},
	KindPolicyMatch:     {prefix: "policy-match/", category: ovs.CookiePolicy, word: "shared match", cookieKey: PolicyMatchCookieKey},
	KindPolicyAllowAll:  {prefix: "policy-allow-all", category: ovs.CookiePolicy, word: "allow-all"},
	KindMulticastRemote: {prefix: "multicast/remote", category: ovs.CookieMulticast, word: "remote nodes"},
	KindServiceProxy:    {prefix: "service-proxy", category: ovs.CookiePipeline, word: "service proxy"},
	KindService:         {prefix: "service/", category: ovs.CookieService, word: "service"},
	KindEgressIP:        {prefix: "egress-ip/", category: ovs.CookieEgress, word: "egress IPs of vnid"},
	KindEgressIPHost:    {prefix: "egress-ip-host", category: ovs.CookieEgress, word: "egress IPs held"},
	KindMulticastVNID:   {prefix: "multicast/vnid/", category: ovs.CookieMulticast, word: "multicast vnid"},
}

// PolicyMatchCookieKey is the cookie key shared by every KindPolicyMatch
// owner: all shared match flows carry ovs.CookieFor(CookiePolicy, it).
const PolicyMatchCookieKey = "policy-match"

// Category returns the cookie category of the kind's flows.
func (k OwnerKind) Category() ovs.CookieCategory { return ownerKinds[k].category }

// String is the kind's display word ("pod", "node", …).
func (k OwnerKind) String() string {
	if w := ownerKinds[k].word; w != "" {
		return w
	}
	return "kind" + strconv.Itoa(int(k))
}

// Owner names one owner of flows: its kind and its key in the agent's flow
// store ("pod/proj1/client1"). It is a value; String identifies it (two
// NodeOwners of one name but different UIDs are the same owner with
// different cookies). The zero Owner owns nothing. Build owners with the constructors below only: they fix the
// key syntax and the cookie rule of each kind.
type Owner struct {
	kind OwnerKind
	key  string
	// cookieKey, when set, is hashed into the cookie instead of key
	// (remote nodes: the HostSubnet UID).
	cookieKey string
}

// Singleton owners.
var (
	OwnerPipeline        = Owner{kind: KindPipeline, key: "pipeline"}
	OwnerIsolation       = Owner{kind: KindIsolation, key: "isolation"}
	OwnerVersion         = Owner{kind: KindVersion, key: "version"}
	OwnerPolicyAllowAll  = Owner{kind: KindPolicyAllowAll, key: "policy-allow-all"}
	OwnerMulticastRemote = Owner{kind: KindMulticastRemote, key: "multicast/remote"}
)

// PodOwner is the owner "pod/<ns>/<name>" of a local pod's flows.
func PodOwner(namespace, name string) Owner {
	return Owner{kind: KindPod, key: "pod/" + namespace + "/" + name}
}

// NodeOwner is the owner "node/<name>" of a remote node's flows. The cookie
// hashes the HostSubnet UID when uid is set, as OpenShift SDN did (origin
// PR #19080): when a node is deleted and re-created under the same name, the
// old object's flows can be deleted by cookie without touching the new
// one's. Owners of one name have the same String (store key) whatever the
// UID; compare owners by String, not with ==.
func NodeOwner(name, uid string) Owner {
	return Owner{kind: KindNode, key: "node/" + name, cookieKey: uid}
}

// TenantOwner is the owner "vnid/<id>" of a multitenant VNID's isolation
// rule.
func TenantOwner(vnid uint32) Owner {
	return Owner{kind: KindTenant, key: "vnid/" + strconv.FormatUint(uint64(vnid), 10)}
}

// MulticastVNIDOwner is the owner "multicast/vnid/<id>" of the multicast
// flows of one enabled VNID (MulticastVNIDFlows).
func MulticastVNIDOwner(vnid uint32) Owner {
	return Owner{kind: KindMulticastVNID, key: "multicast/vnid/" + strconv.FormatUint(uint64(vnid), 10)}
}

// PolicyNamespaceOwner is the owner "policy-ns/<ns>" of a namespace's
// compiled NetworkPolicy flows.
func PolicyNamespaceOwner(namespace string) Owner {
	return Owner{kind: KindPolicyNamespace, key: "policy-ns/" + namespace}
}

// ServiceOwner is the owner "service/<ns>/<name>" of one Service's flows and
// groups (all its ports).
func ServiceOwner(namespace, name string) Owner {
	return Owner{kind: KindService, key: "service/" + namespace + "/" + name}
}

// PolicyMatchOwner is the owner "policy-match/<flow key>" of one shared
// conjunctive match flow; its cookie is PolicyMatchCookieKey's.
func PolicyMatchOwner(flowKey string) Owner {
	return Owner{kind: KindPolicyMatch, key: "policy-match/" + flowKey}
}

// Kind returns the owner's kind.
func (o Owner) Kind() OwnerKind { return o.kind }

// String is the owner's key in the flow store ("pod/proj1/client1").
func (o Owner) String() string { return o.key }

// ID is the key without the kind's prefix ("proj1/client1" of a pod,
// "node-b" of a node, "10" of a tenant VNID).
func (o Owner) ID() string { return strings.TrimPrefix(o.key, ownerKinds[o.kind].prefix) }

// Display is "<kind word> <id>", or the word alone for singletons
// ("pod proj1/client1", "pipeline").
func (o Owner) Display() string {
	if id := o.ID(); id != "" {
		return o.kind.String() + " " + id
	}
	return o.kind.String()
}

// Cookie returns the cookie every flow of the owner carries.
func (o Owner) Cookie() uint64 { return ovs.CookieFor(o.kind.Category(), o.cookieSource()) }

// CookieMatch selects the owner's flows on a bridge (any round).
func (o Owner) CookieMatch() ovs.CookieMatch {
	return ovs.CookieMatch{Cookie: o.Cookie(), Mask: ovs.OwnerMask}
}

func (o Owner) cookieSource() string {
	if k := ownerKinds[o.kind].cookieKey; k != "" {
		return k
	}
	if o.cookieKey != "" {
		return o.cookieKey
	}
	return o.key
}

// Stamp sets the owner's cookie on every flow and returns flows.
func (o Owner) Stamp(flows []ovs.Flow) []ovs.Flow { return withCookie(o.Cookie(), flows) }

// CompareOwners orders owners for a full sync: by kind rank (the version
// owner last, so a bridge holding the note holds everything else), then by
// key.
func CompareOwners(a, b Owner) int {
	return cmp.Or(cmp.Compare(ownerKinds[a.kind].rank, ownerKinds[b.kind].rank), strings.Compare(a.key, b.key))
}

// Category is a cookie category as operators see it: sdnctl's --owner
// values and the order of its blocks.
type Category struct {
	Cookie ovs.CookieCategory
	Name   string
}

// Categories lists every cookie category the agent writes, in display
// order, then "unowned" (category 0: flows added by hand). It is the one
// list of them; a new category is one entry here.
var Categories = []Category{
	{ovs.CookiePipeline, "pipeline"},
	{ovs.CookiePod, "pod"},
	{ovs.CookieNode, "node"},
	{ovs.CookieNamespace, "namespace"},
	{ovs.CookiePolicy, "policy"},
	{ovs.CookieMulticast, "multicast"},
	{ovs.CookieEgress, "egress"},
	{ovs.CookieService, "service"},
	{ovs.CookieLearned, "learned"},
	{0, "unowned"},
}

// CategoryName is the name of c in Categories, or "category N".
func CategoryName(c ovs.CookieCategory) string {
	for _, k := range Categories {
		if k.Cookie == c {
			return k.Name
		}
	}
	return "category " + strconv.Itoa(int(c))
}

// CategoryRank orders categories for display: Categories order, unknown
// ones before "unowned".
func CategoryRank(c ovs.CookieCategory) int {
	for i, k := range Categories {
		if k.Cookie == c {
			if c == 0 {
				return 1 << 9
			}
			return i
		}
	}
	return 1<<8 + int(c)
}
