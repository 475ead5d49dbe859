package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ovs-sdn/ovs-sdn/pkg/lab"
	"github.com/ovs-sdn/ovs-sdn/pkg/manifests"
)

// streamPort is where the upgrade test's long-lived TCP streams are served.
const streamPort = 9009

// stream is an established TCP connection between two pods that exchanges a line every
// 200 ms and remembers the first failure.
type stream struct {
	name string
	conn net.Conn
	mu   sync.Mutex
	sent int
	err  error
	stop chan struct{}
	done chan struct{}
}

// openStream listens in to's network namespace, connects from from's and starts pinging.
func openStream(t *testing.T, l *lab.Lab, from, to types.NamespacedName, toIP netip.Addr) *stream {
	t.Helper()
	var ln net.Listener
	must(t, inPodNetNS(l, to, func() (err error) { ln, err = net.Listen("tcp4", fmt.Sprintf(":%d", streamPort)); return err }))
	go func() {
		c, err := ln.Accept()
		ln.Close()
		if err == nil {
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					fmt.Fprintln(c, sc.Text())
				}
			}()
		}
	}()
	s := &stream{name: from.String() + "→" + to.String(), stop: make(chan struct{}), done: make(chan struct{})}
	must(t, inPodNetNS(l, from, func() (err error) {
		s.conn, err = net.DialTimeout("tcp4", netip.AddrPortFrom(toIP, streamPort).String(), 5*time.Second)
		return err
	}))
	go s.run()
	return s
}

func inPodNetNS(l *lab.Lab, pod types.NamespacedName, fn func() error) error {
	for _, n := range l.Nodes() {
		if p := n.PodNetNS(pod); p != "" {
			return ns.WithNetNSPath(p, func(ns.NetNS) error { return fn() })
		}
	}
	return fmt.Errorf("pod %s runs on no node", pod)
}

func (s *stream) run() {
	defer close(s.done)
	r := bufio.NewReader(s.conn)
	for i := 0; ; i++ {
		select {
		case <-s.stop:
			return
		case <-time.After(200 * time.Millisecond):
		}
		_ = s.conn.SetDeadline(time.Now().Add(10 * time.Second))
		msg := fmt.Sprintf("ping %d", i)
		_, err := fmt.Fprintln(s.conn, msg)
		var got string
		if err == nil {
			got, err = r.ReadString('\n')
		}
		s.mu.Lock()
		if err == nil && strings.TrimSpace(got) != msg {
			err = fmt.Errorf("echo %q for %q", got, msg)
		}
		if err != nil {
			s.err = fmt.Errorf("after %d round trips: %w", s.sent, err)
			s.mu.Unlock()
			return
		}
		s.sent++
		s.mu.Unlock()
	}
}

// close stops the stream and returns its round trips and first error.
func (s *stream) close() (int, error) {
	close(s.stop)
	<-s.done
	s.conn.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent, s.err
}

// testUpgrade changes logLevel in the lab's ovs-sdn configuration, renders and applies it
// again: the DaemonSet must replace its agents one node at a time, each new agent running
// with the new level, while TCP streams between pods on the three nodes keep flowing.
func testUpgrade(t *testing.T, l *lab.Lab) {
	ctx := context.Background()
	keys, ips := podPerNode(t, l, "e2e-upgrade", "u")
	var streams []*stream
	for i := range keys {
		to := keys[(i+1)%len(keys)]
		streams = append(streams, openStream(t, l, keys[i], to, ips[to]))
	}
	cfg := l.ManifestsConfig()
	level := *cfg.LogLevel + 2
	cfg.LogLevel = &level
	begin := time.Now()
	must(t, l.ApplyManifests(ctx, &cfg))
	order, maxDown := watchRollout(t, l, cfg.Namespace, fmt.Sprintf("--v=%d", level))
	t.Logf("DaemonSet rolled in %v, node order %v, at most %d node(s) without a ready agent at once",
		time.Since(begin).Round(time.Millisecond), order, maxDown)
	must(t, l.WaitOVSSDN(ctx, 3*time.Minute))
	if len(order) != len(l.Nodes()) || maxDown > 1 {
		t.Errorf("rollout order %v, up to %d nodes without a ready agent: want every node, one at a time", order, maxDown)
	}
	time.Sleep(time.Second) // a few more round trips on the new agents
	for _, s := range streams {
		n, err := s.close()
		if err != nil || n < 10 {
			t.Errorf("stream %s broke during the upgrade: %d round trips, %v", s.name, n, err)
		} else {
			t.Logf("stream %s: %d round trips across the upgrade", s.name, n)
		}
	}
}

// watchRollout polls the agent pods until every node runs a ready agent whose args hold
// want, and returns the order in which nodes got one and the most nodes that were without
// a ready agent at the same time.
func watchRollout(t *testing.T, l *lab.Lab, namespace, want string) (order []string, maxDown int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		pods, err := l.Kube.CoreV1().Pods(namespace).List(context.Background(), metav1.ListOptions{
			LabelSelector: "app.kubernetes.io/name=" + manifests.NodeName})
		must(t, err)
		ready, upgraded := map[string]bool{}, map[string]bool{}
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil && podReady(&p) {
				ready[p.Spec.NodeName] = true
				if slices.Contains(p.Spec.Containers[0].Args, want) {
					upgraded[p.Spec.NodeName] = true
				}
			}
		}
		maxDown = max(maxDown, len(l.Nodes())-len(ready))
		for _, n := range l.Nodes() {
			if upgraded[n.Name] && !slices.Contains(order, n.Name) {
				order = append(order, n.Name)
			}
		}
		if len(order) == len(l.Nodes()) {
			return order, maxDown
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("rollout to %s not done after 5 minutes (nodes upgraded: %v)", want, order)
	return nil, 0
}
