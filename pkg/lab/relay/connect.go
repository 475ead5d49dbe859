package relay

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"time"
)

// dialTimeout bounds one dial of the CONNECT proxy.
const dialTimeout = 10 * time.Second

// Connect is an HTTP CONNECT proxy on a unix socket dialling inside network namespaces.
type Connect struct {
	ln     net.Listener
	routes []Route
	conns  connSet
	done   chan struct{}
}

// A Route says where the proxy dials the addresses of Prefix from: the network namespace
// at NetNS (a path such as /run/netns/NAME; it need exist only when a dial happens).
type Route struct {
	Prefix netip.Prefix
	NetNS  string
}

// ListenConnect serves HTTP CONNECT on the unix socket at socket (mode 0600: only root may
// use it). A request "CONNECT host:port" whose host is an address inside the Prefix of one
// of routes is dialled from inside that route's network namespace (the first route that
// matches) and, once connected, answered 200 and relayed; anything else is answered 403
// (not allowed) or 502 (dial failed) and closed. Close stops it and removes the socket.
func ListenConnect(socket string, routes []Route) (*Connect, error) {
	_ = os.Remove(socket)
	ln, err := net.Listen("unix", socket)
	if err != nil {
		return nil, fmt.Errorf("relay: CONNECT proxy on %s: %w", socket, err)
	}
	if err := os.Chmod(socket, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	c := &Connect{ln: ln, routes: routes, done: make(chan struct{})}
	go c.serve()
	return c, nil
}

func (c *Connect) serve() {
	defer close(c.done)
	for {
		conn, err := c.ln.Accept()
		if err != nil {
			return
		}
		go c.handle(conn)
	}
}

// handle reads one CONNECT request, dials and relays. The API server speaks TLS only after
// the 200, so nothing is buffered beyond the request; what is, is forwarded anyway.
func (c *Connect) handle(conn net.Conn) {
	_ = conn.SetReadDeadline(time.Now().Add(dialTimeout))
	br := bufio.NewReader(conn)
	req, err := http.ReadRequest(br)
	if err != nil {
		conn.Close()
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	target, netns, status := c.check(req)
	if status != http.StatusOK {
		reply(conn, status)
		return
	}
	up, err := dial(netns, target)
	if err != nil {
		reply(conn, http.StatusBadGateway)
		return
	}
	if _, err := conn.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
		conn.Close()
		up.Close()
		return
	}
	if n := br.Buffered(); n > 0 {
		pending, _ := br.Peek(n)
		_, _ = up.Write(pending)
	}
	splice(&c.conns, conn, up)
}

// check returns the target of a CONNECT request, the namespace to dial it from and 200,
// or the status to refuse it with.
func (c *Connect) check(req *http.Request) (netip.AddrPort, string, int) {
	if req.Method != http.MethodConnect {
		return netip.AddrPort{}, "", http.StatusMethodNotAllowed
	}
	target, err := netip.ParseAddrPort(req.Host)
	if err != nil {
		return netip.AddrPort{}, "", http.StatusForbidden
	}
	i := slices.IndexFunc(c.routes, func(r Route) bool { return r.Prefix.Contains(target.Addr()) })
	if i < 0 {
		return netip.AddrPort{}, "", http.StatusForbidden
	}
	return target, c.routes[i].NetNS, http.StatusOK
}

func dial(netnsPath string, target netip.AddrPort) (net.Conn, error) {
	var conn net.Conn
	err := inNetNS(netnsPath, func() (err error) {
		ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
		defer cancel()
		conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", target.String())
		return err
	})
	return conn, err
}

func reply(conn net.Conn, status int) {
	fmt.Fprintf(conn, "HTTP/1.1 %d %s\r\nContent-Length: 0\r\n\r\n", status, http.StatusText(status))
	conn.Close()
}

// Close stops the proxy, closes every relayed connection and removes the socket. It is
// idempotent.
func (c *Connect) Close() error {
	err := c.ln.Close() // also unlinks the socket file
	<-c.done
	c.conns.closeAll()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// EgressSelectorConfig is the kube-apiserver --egress-selector-config-file content that
// sends "cluster" traffic (to kubelets, pods and services) through the CONNECT proxy on
// socket; control-plane and etcd traffic stays direct.
func EgressSelectorConfig(socket string) []byte {
	return []byte(`apiVersion: apiserver.k8s.io/v1beta1
kind: EgressSelectorConfiguration
egressSelections:
- name: cluster
  connection:
    proxyProtocol: HTTPConnect
    transport:
      uds:
        udsName: ` + socket + "\n")
}

// APIServerArgs are the kube-apiserver flags for a lab whose kubelets are reached through
// the CONNECT proxy: the egress selector configuration (EgressSelectorConfig, written to
// configFile) and node addresses by IP — a node's Hostname address resolves nowhere,
// and the proxy dials addresses only.
func APIServerArgs(configFile string) []string {
	return []string{"--egress-selector-config-file=" + configFile, "--kubelet-preferred-address-types=InternalIP"}
}
