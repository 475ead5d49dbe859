package ovs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Unixctl is one connection to an OVS daemon's control socket, speaking
// the protocol of ovs-appctl (JSON-RPC 1.0 over a unix socket: a request
// {"method", "params": [strings], "id"}, a reply {"result" | "error",
// "id"}). A caller that sends many commands (e.g. one tnl/neigh/set per
// remote node) uses one connection instead of one ovs-appctl process per
// command. Not safe for concurrent use; Close it.
type Unixctl struct {
	conn net.Conn
	dec  *json.Decoder
	id   int
}

// DialUnixctl connects to the control socket at path (e.g.
// VswitchdControlSocket's result).
func DialUnixctl(ctx context.Context, path string) (*Unixctl, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("unixctl %s: %w", path, err)
	}
	return &Unixctl{conn: conn, dec: json.NewDecoder(conn)}, nil
}

// VswitchdControlSocket returns the control socket of the ovs-vswitchd
// whose pidfile is in runDir: <runDir>/ovs-vswitchd.<pid>.ctl.
func VswitchdControlSocket(runDir string) (string, error) {
	pid, err := os.ReadFile(filepath.Join(runDir, "ovs-vswitchd.pid"))
	if err != nil {
		return "", fmt.Errorf("finding ovs-vswitchd: %w", err)
	}
	return filepath.Join(runDir, fmt.Sprintf("ovs-vswitchd.%s.ctl", strings.TrimSpace(string(pid)))), nil
}

type unixctlRequest struct {
	Method string   `json:"method"`
	Params []string `json:"params"`
	ID     int      `json:"id"`
}

type unixctlReply struct {
	Result *string         `json:"result"`
	Error  json.RawMessage `json:"error"`
	ID     int             `json:"id"`
}

// Call runs one command (e.g. "tnl/neigh/set", "br-phy", "192.0.2.1",
// "aa:bb:cc:dd:ee:ff") and returns its output. A command the daemon
// refuses is an error carrying the daemon's message. ctx's deadline (or 5
// s) bounds the exchange; after a failed exchange the connection is
// unusable.
func (u *Unixctl) Call(ctx context.Context, method string, args ...string) (string, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(5 * time.Second)
	}
	if err := u.conn.SetDeadline(deadline); err != nil {
		return "", err
	}
	u.id++
	if args == nil {
		args = []string{}
	}
	req, err := json.Marshal(unixctlRequest{Method: method, Params: args, ID: u.id})
	if err != nil {
		return "", err
	}
	if _, err := u.conn.Write(req); err != nil {
		return "", fmt.Errorf("unixctl %s: %w", method, err)
	}
	var rep unixctlReply
	if err := u.dec.Decode(&rep); err != nil {
		return "", fmt.Errorf("unixctl %s: reading the reply: %w", method, err)
	}
	if rep.ID != u.id {
		return "", fmt.Errorf("unixctl %s: reply id %d, want %d", method, rep.ID, u.id)
	}
	if len(rep.Error) > 0 && string(rep.Error) != "null" {
		var msg string
		if json.Unmarshal(rep.Error, &msg) != nil {
			msg = string(rep.Error)
		}
		return "", fmt.Errorf("%s %s: %s", method, strings.Join(args, " "), strings.TrimSpace(msg))
	}
	if rep.Result == nil {
		return "", errors.New("unixctl " + method + ": reply without result or error")
	}
	return *rep.Result, nil
}

// Close closes the connection.
func (u *Unixctl) Close() error { return u.conn.Close() }
