package relay

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The namespace tests need root; they run under the heavy-test lock like every netns test:
// flock /tmp/ovs-sdn-heavy.lock go test ./pkg/lab/relay/

var nsAddr = netip.MustParseAddr("198.18.0.1")

// testNetNS creates a network namespace holding nsAddr/24 on a bridge and removes it
// at the end of the test.
func testNetNS(t *testing.T) string { return testNetNSWith(t, "", nsAddr) }

// testNetNSWith is testNetNS with the address addr and tag in the namespace's name.
func testNetNSWith(t *testing.T, tag string, addr netip.Addr) string {
	t.Helper()
	if testing.Short() || os.Geteuid() != 0 {
		t.Skip("needs root and network namespaces; skipped with -short")
	}
	name := fmt.Sprintf("relaytest%s%d", tag, os.Getpid())
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
	run(t, "ip", "-n", name, "link", "add", "d0", "type", "bridge")
	run(t, "ip", "-n", name, "addr", "add", addr.String()+"/24", "dev", "d0")
	run(t, "ip", "-n", name, "link", "set", "d0", "up")
	return "/run/netns/" + name
}

func run(t *testing.T, argv ...string) {
	t.Helper()
	if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %v: %s", argv, err, out)
	}
}

// echoServer answers every line with "echo: <line>" until the connection ends.
func echoServer(t *testing.T, ln net.Listener) string {
	t.Helper()
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					fmt.Fprintf(c, "echo: %s\n", sc.Text())
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(t *testing.T, c net.Conn, line string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "%s\n", line)
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || got != "echo: "+line+"\n" {
		t.Fatalf("round trip of %q: %q, %v", line, got, err)
	}
}

// TestTCPRelaysIntoRootLoopback: a client inside the namespace reaches a server on the
// root namespace's loopback through the relay, and Close ends the relayed connection.
func TestTCPRelaysIntoRootLoopback(t *testing.T) {
	netns := testNetNS(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := echoServer(t, ln)
	r, err := ListenTCP(netns, netip.AddrPortFrom(nsAddr, 0), target)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var c net.Conn
	if err := inNetNS(netns, func() (err error) { c, err = net.Dial("tcp", r.Addr().String()); return err }); err != nil {
		t.Fatalf("dialling the relay at %s from its namespace: %v", r.Addr(), err)
	}
	defer c.Close()
	roundTrip(t, c, "hello")
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("relayed connection after Close: read %d, %v; want EOF", n, err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestConnectDialsInsideTheNamespace: CONNECT to an allowed address reaches a server that
// exists only inside the namespace of its route (underlay and pod network routes, as the
// lab uses them); other targets and methods are refused.
func TestConnectDialsInsideTheNamespace(t *testing.T) {
	netns := testNetNS(t)
	podAddr := netip.MustParseAddr("10.128.0.5")
	podNS := testNetNSWith(t, "p", podAddr)
	listen := func(ns string, addr netip.Addr) string {
		var ln net.Listener
		if err := inNetNS(ns, func() (err error) { ln, err = net.Listen("tcp", addr.String()+":0"); return err }); err != nil {
			t.Fatal(err)
		}
		return echoServer(t, ln)
	}
	target, podTarget := listen(netns, nsAddr), listen(podNS, podAddr)
	sock := filepath.Join(t.TempDir(), "connect.sock")
	p, err := ListenConnect(sock, []Route{
		{Prefix: netip.MustParsePrefix("198.18.0.0/24"), NetNS: netns},
		{Prefix: netip.MustParsePrefix("10.128.0.0/14"), NetNS: podNS},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if st, err := os.Stat(sock); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("socket %s: %v, mode %v; want 0600", sock, err, st.Mode())
	}
	for _, tg := range []string{target, podTarget} {
		c, status := connect(t, sock, "CONNECT "+tg+" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
		if status != 200 {
			t.Fatalf("CONNECT %s: status %d", tg, status)
		}
		roundTrip(t, c, "through the proxy")
		c.Close()
	}
	closedPort := netip.AddrPortFrom(nsAddr, 1)
	for req, want := range map[string]int{
		"CONNECT 10.0.0.1:80 HTTP/1.1\r\nHost: x\r\n\r\n":                 http.StatusForbidden,
		"CONNECT 10.132.0.1:80 HTTP/1.1\r\nHost: x\r\n\r\n":               http.StatusForbidden,
		"CONNECT 198.18.1.1:80 HTTP/1.1\r\nHost: x\r\n\r\n":               http.StatusForbidden,
		"GET http://" + target + "/ HTTP/1.1\r\nHost: x\r\n\r\n":          http.StatusMethodNotAllowed,
		"CONNECT " + closedPort.String() + " HTTP/1.1\r\nHost: x\r\n\r\n": http.StatusBadGateway,
		"CONNECT kubernetes.default:443 HTTP/1.1\r\nHost: x\r\n\r\n":      http.StatusForbidden,
	} {
		c, status := connect(t, sock, req)
		c.Close()
		if status != want {
			t.Errorf("%q: status %d, want %d", strings.TrimSpace(req), status, want)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left after Close: %v", err)
	}
}

func connect(t *testing.T, sock, req string) (net.Conn, int) {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	// Read the status line and headers byte by byte: the tunnel's data must stay unread.
	var head strings.Builder
	b := make([]byte, 1)
	for !strings.HasSuffix(head.String(), "\r\n\r\n") {
		if _, err := c.Read(b); err != nil {
			t.Fatalf("reading the reply to %q: %v (got %q)", req, err, head.String())
		}
		head.WriteByte(b[0])
	}
	var status int
	fmt.Sscanf(head.String(), "HTTP/1.1 %d", &status)
	_ = c.SetDeadline(time.Time{})
	return c, status
}

func TestEgressSelectorConfigNamesTheSocket(t *testing.T) {
	got := string(EgressSelectorConfig("/run/sdn-lab/egress.sock"))
	for _, want := range []string{"kind: EgressSelectorConfiguration", "- name: cluster", "proxyProtocol: HTTPConnect",
		"udsName: /run/sdn-lab/egress.sock"} {
		if !strings.Contains(got, want) {
			t.Errorf("config lacks %q:\n%s", want, got)
		}
	}
}
