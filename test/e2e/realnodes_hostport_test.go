package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/ovs-sdn/ovs-sdn/pkg/lab"
)

// hostPort is the port Kubernetes' own HostPort conformance spec uses.
const hostPort = 54323

// hostPortCase is one pod of testHostPorts: its hostIP and protocol.
type hostPortCase struct {
	pod    string
	hostIP string
	proto  corev1.Protocol
	remote bool // also reached from another node
}

// testHostPorts mirrors Kubernetes' conformance spec "[sig-network] HostPort validates that
// there is no conflict between pods with same hostPort but different hostIP and protocol":
// three agnhost netexec pods on node1 share hostPort 54323 — hostIP 127.0.0.1/TCP, the
// node's IP/TCP, the node's IP/UDP — and each is reached from node1's network namespace
// (where a hostNetwork pod runs) at its own hostIP and protocol. The node-IP ones are also
// reached from node2's namespace. The containerd runtime hands the hostPorts to the
// conflist's portmap, whose DNAT rules live in node1's iptables; once the pods are deleted,
// no rule of theirs is left there.
func testHostPorts(t *testing.T, l *lab.Lab) {
	n1, n2 := l.Nodes()[0], l.Nodes()[1]
	const namespace = "e2e-hostport"
	// hostIP must be the node's own address, as in the upstream spec: an empty one means
	// 0.0.0.0, which the kubelet refuses next to 127.0.0.1 on the same port.
	nodeIP := n1.IP.String()
	cases := []hostPortCase{{"pod1", "127.0.0.1", corev1.ProtocolTCP, false},
		{"pod2", nodeIP, corev1.ProtocolTCP, true}, {"pod3", nodeIP, corev1.ProtocolUDP, true}}
	podIPs := map[string]string{}
	for _, c := range cases {
		createPod(t, l, hostPortPod(namespace, n1, c))
	}
	for _, c := range cases {
		podIPs[c.pod] = runningPod(t, l, namespace, c.pod).Status.PodIP
	}
	defer func() {
		for _, c := range cases {
			deletePodAndWait(t, l, namespace, c.pod)
		}
	}()
	if dnat := hostPortDNATs(t, n1); len(dnat) != len(cases) {
		t.Errorf("node %s: DNAT rules for hostPort %d: %q, want one per pod (%v)", n1.Name, hostPort, dnat, podIPs)
	}
	for _, c := range cases {
		checkHostPort(t, n1, c.hostIP, c)
		if c.remote {
			checkHostPort(t, n2, c.hostIP, c)
		}
	}
	for _, c := range cases {
		deletePodAndWait(t, l, namespace, c.pod)
	}
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return len(hostPortRules(t, n1, podIPs)) == 0, nil
	})
	if err != nil {
		t.Errorf("node %s after the hostPort pods were deleted still has: %q", n1.Name, hostPortRules(t, n1, podIPs))
	}
}

// hostPortPod is an agnhost netexec pod answering /hostname over HTTP and UDP on 8080,
// published on hostPort 54323 with c's hostIP and protocol.
func hostPortPod(ns string, n *lab.Node, c hostPortCase) *corev1.Pod {
	p := agnhostPod(ns, c.pod, n.Name, "netexec", "--http-port=8080", "--udp-port=8080")
	p.Spec.Containers[0].Ports = []corev1.ContainerPort{{HostPort: hostPort, ContainerPort: 8080, Protocol: c.proto, HostIP: c.hostIP}}
	return p
}

// checkHostPort asks ip:54323 for the host name from n's network namespace (HTTP GET
// /hostname over TCP, the datagram "hostname" over UDP), until it is c's pod that answers.
func checkHostPort(t *testing.T, n *lab.Node, ip string, c hostPortCase) {
	t.Helper()
	addr := net.JoinHostPort(ip, strconv.Itoa(hostPort))
	var got string
	var err error
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		err = ns.WithNetNSPath(n.Net.NetNS.Path, func(ns.NetNS) (askErr error) {
			got, askErr = askHostname(c.proto, addr)
			return askErr
		})
		if err == nil && got == c.pod {
			return
		}
	}
	t.Errorf("%s %s from %s's netns: answer %q, %v; want %s", c.proto, addr, n.Name, got, err, c.pod)
}

// askHostname opens its socket in the calling thread's network namespace.
func askHostname(proto corev1.Protocol, addr string) (string, error) {
	if proto == corev1.ProtocolUDP {
		conn, err := net.DialTimeout("udp4", addr, 2*time.Second)
		if err != nil {
			return "", err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := conn.Write([]byte("hostname")); err != nil {
			return "", err
		}
		buf := make([]byte, 256)
		k, err := conn.Read(buf)
		return strings.TrimSpace(string(buf[:k])), err
	}
	conn, err := net.DialTimeout("tcp4", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET /hostname HTTP/1.0\r\nHost: %s\r\n\r\n", addr); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(body)), err
}

// natRules is n's nat table (iptables -S).
func natRules(t *testing.T, n *lab.Node) []string {
	t.Helper()
	out, err := n.Net.NetNS.Exec(context.Background(), "iptables", "-w", "-t", "nat", "-S")
	if err != nil {
		t.Fatalf("iptables -t nat -S on %s: %v: %s", n.Name, err, out)
	}
	return strings.Split(strings.TrimSpace(out), "\n")
}

// hostPortDNATs are n's DNAT rules for port 54323.
func hostPortDNATs(t *testing.T, n *lab.Node) []string {
	t.Helper()
	var dnat []string
	for _, r := range natRules(t, n) {
		if strings.Contains(r, "--dport "+strconv.Itoa(hostPort)) && strings.Contains(r, "-j DNAT") {
			dnat = append(dnat, r)
		}
	}
	return dnat
}

// hostPortRules are n's nat rules and chains left by portmap for the pods: a per-pod chain
// (CNI-DN-…, CNI-SN-…), or a rule naming port 54323 or one of the pods' addresses.
func hostPortRules(t *testing.T, n *lab.Node, podIPs map[string]string) []string {
	t.Helper()
	var left []string
	for _, r := range natRules(t, n) {
		named := strings.Contains(r, "CNI-DN-") || strings.Contains(r, "CNI-SN-") || strings.Contains(r, strconv.Itoa(hostPort))
		for _, ip := range podIPs {
			named = named || mentions(r, ip)
		}
		if named {
			left = append(left, r)
		}
	}
	return left
}
