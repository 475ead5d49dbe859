package node

// The agent learns about local pods from two places: the pod ports of br0
// in OVSDB (listed by the pods feature after every port change, the source
// that survives restarts) and the CNI server's PodAdded/PodDeleted calls,
// which must return only once the pod's flows are in (or out of) effect.
// The two disagree for a moment: the agent's OVSDB view shows a new port
// some time after the server's transaction, and still shows a deleted pod's
// port after PodDeleted (the server removes the port after the flows).
// localPods merges them into the one port list the pods feature renders:
//
//   - a port PodAdded recorded is rendered even while the OVSDB view does not
//     show it yet, so a stale listing never removes a just-added pod; once
//     the view has shown the port, the view decides (the port is gone when it
//     disappears from it);
//   - a port PodDeleted removed is never rendered again, even while the view
//     still lists it;
//   - one port per pod: when a pod has two ports (a new sandbox added before
//     the old one's DEL), the one PodAdded recorded last wins, else the
//     higher ofport.
//
// Both paths render through the agent's render pass (one lock), so they
// render the same state, and a port change the CNI request already rendered
// changes nothing when the loop renders it again (unchanged pods are
// skipped).

import (
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/ovs-sdn/ovs-sdn/pkg/cni"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/ovsdb"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// podRecordTTL is how long a PodAdded record whose port the OVSDB view
// never showed, and a PodDeleted tombstone whose port the view no longer
// shows, are kept. Both normally resolve within milliseconds; the TTL only
// bounds records of ports that vanished out of band, and keeps a tombstone
// long enough that a view lagging behind the deletion cannot bring the pod
// back.
const podRecordTTL = time.Minute

// localPods merges the OVSDB view of br0's ports with the CNI server's
// calls (see the file comment). Safe for concurrent use; the zero value is
// ready to use.
type localPods struct {
	mu      sync.Mutex
	listed  []SwitchPort          // the OVSDB view at the last listing
	added   map[string]*addedPort // port name → PodAdded record
	deleted map[string]time.Time  // port name → when PodDeleted ran
	now     func() time.Time      // time.Now; tests
	seq     uint64                // PodAdded order
	order   map[string]uint64     // port name → seq of its PodAdded
}

type addedPort struct {
	port SwitchPort
	at   time.Time
	seen bool // the OVSDB view has shown the port with an ofport
}

func (l *localPods) clock() time.Time {
	if l.now != nil {
		return l.now()
	}
	return time.Now()
}

// setListed records a fresh OVSDB view.
func (l *localPods) setListed(listed []SwitchPort) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.listed = listed
}

// add records the port PodAdded was given.
func (l *localPods) add(p SwitchPort) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.added == nil {
		l.added, l.order = map[string]*addedPort{}, map[string]uint64{}
	}
	l.seq++
	l.added[p.Name] = &addedPort{port: p, at: l.clock()}
	l.order[p.Name] = l.seq
	delete(l.deleted, p.Name)
}

// forget drops the record of port name (a PodAdded that failed).
func (l *localPods) forget(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.forgetLocked(name)
}

func (l *localPods) forgetLocked(name string) {
	delete(l.added, name)
	delete(l.order, name)
}

// remove tombstones the pod's port (every port of the pod when p has no
// PortName).
func (l *localPods) remove(p cni.PodPort) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.deleted == nil {
		l.deleted = map[string]time.Time{}
	}
	names := []string{p.PortName}
	if p.PortName == "" {
		names = l.portsOfLocked(p.Namespace, p.Name)
	}
	for _, n := range names {
		l.deleted[n] = l.clock()
		l.forgetLocked(n)
	}
}

func (l *localPods) portsOfLocked(ns, name string) []string {
	var out []string
	isPod := func(sp SwitchPort) bool {
		return sp.ExternalIDs[ovsdb.ExternalIDPodNamespace] == ns && sp.ExternalIDs[ovsdb.ExternalIDPodName] == name
	}
	for _, sp := range l.listed {
		if isPod(sp) {
			out = append(out, sp.Name)
		}
	}
	for n, ap := range l.added {
		if isPod(ap.port) {
			out = append(out, n)
		}
	}
	return out
}

// merged returns the ports to render: the OVSDB view without tombstoned
// ports, plus recorded ports the view has not shown yet, one port per pod.
// It also expires records and tombstones.
func (l *localPods) merged() []SwitchPort {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock()
	listed := map[string]SwitchPort{}
	for _, sp := range l.listed {
		if _, ok := podFromPort(sp); ok {
			listed[sp.Name] = sp
		}
	}
	for n, at := range l.deleted {
		if _, ok := listed[n]; !ok && now.Sub(at) > podRecordTTL {
			delete(l.deleted, n)
		}
	}
	var out []SwitchPort
	for n, ap := range l.added {
		_, inView := listed[n]
		switch {
		case inView:
			ap.seen = true
		case ap.seen || now.Sub(ap.at) > podRecordTTL:
			l.forgetLocked(n) // gone from the view after it was there, or never showed up
		default:
			out = append(out, ap.port)
		}
	}
	for n, sp := range listed {
		if _, gone := l.deleted[n]; !gone {
			out = append(out, sp)
		}
	}
	return l.onePerPodLocked(out)
}

// onePerPodLocked keeps one port per pod: the latest PodAdded, else the
// highest ofport.
func (l *localPods) onePerPodLocked(ports []SwitchPort) []SwitchPort {
	best := map[string]SwitchPort{}
	for _, sp := range ports {
		pod, _ := podFromPort(sp)
		owner := pipeline.PodOwner(pod.Namespace, pod.Name).String()
		cur, ok := best[owner]
		if !ok || l.newer(sp, cur) {
			best[owner] = sp
		}
	}
	out := make([]SwitchPort, 0, len(best))
	for _, sp := range best {
		out = append(out, sp)
	}
	slices.SortFunc(out, func(x, y SwitchPort) int { return cmp.Compare(x.Name, y.Name) })
	return out
}

func (l *localPods) newer(a, b SwitchPort) bool {
	if sa, sb := l.order[a.Name], l.order[b.Name]; sa != sb {
		return sa > sb
	}
	if a.OFPort != b.OFPort {
		return a.OFPort > b.OFPort
	}
	return a.Name > b.Name
}
