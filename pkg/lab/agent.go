package lab

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
)

// The node agents run as sdn-node processes (nodes.go); the lab watches
// them through the probes server each one runs on a loopback port.

// freeLoopbackAddr returns a 127.0.0.1 address with a port free right now.
func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free loopback port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// AgentReady reports whether the node agent answers /readyz with 200: it
// has synced br0 and is connected to OVSDB.
func (n *Node) AgentReady(ctx context.Context) bool {
	resp, err := n.agentGet(ctx, "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// AgentFlows returns the number of flows the node agent keeps on br0 (its
// ovs_sdn_ovs_flows gauge).
func (n *Node) AgentFlows(ctx context.Context) (int, error) {
	v, err := n.AgentMetric(ctx, "ovs_sdn_ovs_flows")
	return int(v), err
}

// AgentMetric returns the value of an unlabelled gauge or counter of the
// node agent's /metrics.
func (n *Node) AgentMetric(ctx context.Context, name string) (float64, error) {
	resp, err := n.agentGet(ctx, "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return scrape(resp.Body, name)
}

func (n *Node) agentGet(ctx context.Context, path string) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.MetricsAddr+path, nil)
	if err != nil {
		return nil, err
	}
	client := http.DefaultClient
	if n.Real != nil {
		client = n.nodeHTTPClient()
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("node %s agent %s: %w", n.Name, path, err)
	}
	return resp, nil
}

// scrape finds "name value" in a Prometheus text exposition.
func scrape(r io.Reader, name string) (float64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("metric %s not found", name)
}

// tail returns the last max bytes of the file at path, or why not.
func tail(path string, max int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

// nodeHTTPClient is an HTTP client whose connections are made inside the node's network
// namespace: a real node's agent (host network) serves on the node IP, reachable from there.
func (n *Node) nodeHTTPClient() *http.Client {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := ns.WithNetNSPath(n.Net.NetNS.Path, func(ns.NetNS) (err error) {
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	return &http.Client{Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
}
