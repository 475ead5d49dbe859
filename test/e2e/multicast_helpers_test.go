package e2e

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/ovs-sdn/ovs-sdn/pkg/lab"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/kubelet"
	"github.com/ovs-sdn/ovs-sdn/pkg/sdnctl"
)

// mcGroup is the group every multicast pod of the suites joins.
var mcGroup = netip.MustParseAddrPort("239.1.2.3:5405")

// Multicast delivery is checked with real datagrams: each round, a sender
// sends mcBurst datagrams tagged with the round, mcGap apart, and after
// mcSettle every pod's listener is asked which it received. A receiver is
// reached when it got at least one (UDP, and the userspace datapath may
// drop a first packet while it resolves a tunnel neighbour); a pod is not
// reached when it got none.
const (
	mcBurst  = 5
	mcGap    = 20 * time.Millisecond
	mcSettle = 300 * time.Millisecond
)

// mcCluster is a lab whose multicast pods all listen to mcGroup.
type mcCluster struct {
	l         *lab.Lab
	ips       map[types.NamespacedName]netip.Addr
	listeners map[types.NamespacedName]*kubelet.MulticastListener
	round     atomic.Int64
}

func newMCCluster(l *lab.Lab) *mcCluster {
	return &mcCluster{l: l, ips: map[types.NamespacedName]netip.Addr{}, listeners: map[types.NamespacedName]*kubelet.MulticastListener{}}
}

// mcPod is a pod of the suite: namespace, name, node and labels.
type mcPod struct {
	ns, name, node string
	labels         map[string]string
}

func (p mcPod) key() types.NamespacedName { return key(p.ns, p.name) }

// addPods creates the pods (and their namespaces), waits until they run and
// joins each to mcGroup; listeners are closed at test end.
func (c *mcCluster) addPods(t *testing.T, pods ...mcPod) []types.NamespacedName {
	t.Helper()
	keys, err := c.addPodsE(context.Background(), pods...)
	t.Cleanup(func() {
		for _, k := range keys {
			c.closeListener(k)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// addPodsE is addPods for callers without a *testing.T; they close the
// listeners (closeListener). It returns the keys joined so far with an error.
func (c *mcCluster) addPodsE(ctx context.Context, pods ...mcPod) ([]types.NamespacedName, error) {
	var keys []types.NamespacedName
	for _, p := range pods {
		if err := c.l.EnsureNamespaces(ctx, nil, p.ns); err != nil {
			return nil, err
		}
		if err := c.l.CreatePod(ctx, lab.PodSpec{Namespace: p.ns, Name: p.name, Node: p.node, Labels: p.labels}); err != nil {
			return nil, err
		}
		keys = append(keys, p.key())
	}
	ips, err := c.l.WaitPodsRunning(ctx, 2*time.Minute, keys...)
	if err != nil {
		return nil, err
	}
	var joined []types.NamespacedName
	for _, k := range keys {
		ml, err := c.l.Kubelets.JoinMulticast(k, mcGroup)
		if err != nil {
			return joined, err
		}
		c.ips[k], c.listeners[k] = ips[k], ml
		joined = append(joined, k)
	}
	return joined, nil
}

// closeListener stops k's listener, if it has one.
func (c *mcCluster) closeListener(k types.NamespacedName) {
	if ml := c.listeners[k]; ml != nil {
		ml.Close()
		delete(c.listeners, k)
	}
}

// deletePod deletes a pod and waits until it is gone; its listener stops.
func (c *mcCluster) deletePod(t *testing.T, k types.NamespacedName) {
	t.Helper()
	ctx := context.Background()
	if err := c.l.Kube.CoreV1().Pods(k.Namespace).Delete(ctx, k.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := c.l.Kube.CoreV1().Pods(k.Namespace).Get(ctx, k.Name, metav1.GetOptions{})
		return err != nil, nil
	})
	if err != nil {
		t.Fatalf("pod %s not gone: %v", k, err)
	}
	c.closeListener(k)
}

// send runs one round from `from` and returns the pods that received it.
func (c *mcCluster) send(t *testing.T, from types.NamespacedName) []types.NamespacedName {
	t.Helper()
	tag := fmt.Sprintf("%s r%d ", from, c.round.Add(1))
	for i := range mcBurst {
		if err := c.l.Kubelets.SendMulticast(context.Background(), from, mcGroup, fmt.Sprintf("%s#%d", tag, i)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(mcGap)
	}
	time.Sleep(mcSettle)
	var got []types.NamespacedName
	for _, k := range slices.SortedFunc(maps.Keys(c.listeners), compareKeys) {
		ds := c.listeners[k].Received(tag)
		if len(ds) > 0 {
			got = append(got, k)
			if ds[0].From.Addr() != c.ips[from] {
				t.Errorf("%s got %s's datagram from %s, want the sender's address %s", k, from, ds[0].From, c.ips[from])
			}
		}
	}
	return got
}

func compareKeys(a, b types.NamespacedName) int { return strings.Compare(a.String(), b.String()) }

// expect sends rounds from `from` until exactly want receive one, or within
// passes (a realization that is still on its way), and reports a mismatch.
func (c *mcCluster) expect(t *testing.T, what string, from types.NamespacedName, want []types.NamespacedName, within time.Duration) {
	t.Helper()
	want = slices.SortedFunc(slices.Values(want), compareKeys)
	deadline := time.Now().Add(within)
	for {
		got := c.send(t, from)
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: %s's datagrams reached %v, want exactly %v", what, from, got, want)
			return
		}
	}
}

// setMulticast enables or disables multicast for namespaces the way an
// operator does (sdnctl pod-network enable-/disable-multicast), checking
// every node's bridge, and returns how long the command took.
func setMulticast(t *testing.T, l *lab.Lab, enable bool, namespaces ...string) time.Duration {
	t.Helper()
	start := time.Now()
	if err := sdnctl.SetMulticast(context.Background(), &sdnctl.Clients{Kube: l.Kube, Network: l.Network}, enable, namespaces, rundirs(l), io.Discard); err != nil {
		t.Fatalf("sdnctl pod-network enable/disable-multicast (%v) %v: %v", enable, namespaces, err)
	}
	return time.Since(start)
}

// rundirs maps every lab node to its OVS run directory.
func rundirs(l *lab.Lab) map[string]string {
	out := map[string]string{}
	for _, n := range l.Nodes() {
		out[n.Name] = n.Net.RunDir
	}
	return out
}

// except returns keys without the ones listed.
func except(keys []types.NamespacedName, drop ...types.NamespacedName) []types.NamespacedName {
	return slices.DeleteFunc(slices.Clone(keys), func(k types.NamespacedName) bool { return slices.Contains(drop, k) })
}
