package cni

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/klog/v2"

	"github.com/ovs-sdn/ovs-sdn/pkg/cni/shim"
	"github.com/ovs-sdn/ovs-sdn/pkg/ipam"
)

// Defaults of ServerConfig.
const (
	DefaultStateDir = "/var/lib/cni/networks"
	DefaultBridge   = "br0"
)

// ServerConfig configures the agent's CNI server. PodNetwork and one of
// OVSDB / OVSDBEndpoint are required.
type ServerConfig struct {
	// SocketPath is the unix socket to serve (DefaultSocketPath). Its
	// directory is created 0700 (and fixed to 0700 if it exists with other
	// permissions); the socket is 0600.
	SocketPath string
	// StateDir holds the IP leases in <StateDir>/ovs-sdn/ (DefaultStateDir).
	// It must survive agent restarts (a host path, not the container's).
	StateDir string
	// OVSDB is the switch to add pod ports to. If nil, the server dials
	// OVSDBEndpoint itself and re-dials after a disconnect.
	OVSDB Switch
	// OVSDBEndpoint is "unix:/path/db.sock"; used when OVSDB is nil.
	OVSDBEndpoint string
	// Bridge is the bridge of the pod ports (DefaultBridge).
	Bridge string
	// HostNetNS is the path of the network namespace where the host ends of
	// the veths go — the one ovs-vswitchd runs in. "" means the server's own.
	HostNetNS string
	// PodNetwork is the node agent.
	PodNetwork PodNetwork
	// Registry receives the pod operation metrics (nil: not registered).
	Registry prometheus.Registerer
}

// Server is the node agent's CNI server: it does the work of ADD, DEL,
// CHECK, GC and STATUS for the sdn-cni shim. Requests for different
// containers run concurrently; requests for the same container ID are
// serialized.
type Server struct {
	cfg    ServerConfig
	sw     Switch
	leases *ipam.Store
	hostNS ns.NetNS
	m      *metrics
	locks  keyedMutex

	mu       sync.Mutex
	listener net.Listener
}

// NewServer validates cfg, opens the lease store and the host netns.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.PodNetwork == nil || (cfg.OVSDB == nil && cfg.OVSDBEndpoint == "") {
		return nil, errors.New("cni server: PodNetwork and OVSDB (or OVSDBEndpoint) are required")
	}
	setDefault(&cfg.SocketPath, DefaultSocketPath)
	setDefault(&cfg.StateDir, DefaultStateDir)
	setDefault(&cfg.Bridge, DefaultBridge)
	m, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, fmt.Errorf("cni server metrics: %w", err)
	}
	s := &Server{cfg: cfg, sw: cfg.OVSDB, m: m, locks: keyedMutex{m: map[string]*keyedEntry{}}}
	if s.sw == nil {
		s.sw = &redialSwitch{endpoint: cfg.OVSDBEndpoint}
	}
	if s.hostNS, err = openHostNS(cfg.HostNetNS); err != nil {
		return nil, err
	}
	if s.leases, err = ipam.Open(cfg.StateDir, NetworkName); err != nil {
		_ = s.hostNS.Close()
		return nil, err
	}
	return s, nil
}

func openHostNS(path string) (ns.NetNS, error) {
	if path == "" {
		h, err := ns.GetCurrentNS()
		if err != nil {
			return nil, fmt.Errorf("cni server: current netns: %w", err)
		}
		return h, nil
	}
	h, err := ns.GetNS(path)
	if err != nil {
		return nil, fmt.Errorf("cni server: host netns %s: %w", path, err)
	}
	return h, nil
}

func setDefault(p *string, v string) {
	if *p == "" {
		*p = v
	}
}

// Leases returns the lease store (tests, debugging).
func (s *Server) Leases() *ipam.Store { return s.leases }

// Listen creates the socket directory (0700) and the socket (0600),
// replacing a stale socket file. Serve calls it if it was not called; call
// it first when the caller must know the socket exists before Serve runs.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listener != nil {
		return nil
	}
	dir := filepath.Dir(s.cfg.SocketPath)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("cni server: socket directory: %w", err)
	}
	// MkdirAll keeps an existing directory's mode: enforce root-only.
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("cni server: socket directory: %w", err)
	}
	if err := os.Remove(s.cfg.SocketPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cni server: remove stale socket: %w", err)
	}
	l, err := net.Listen("unix", s.cfg.SocketPath)
	if err != nil {
		return fmt.Errorf("cni server: %w", err)
	}
	if err := os.Chmod(s.cfg.SocketPath, 0o600); err != nil {
		_ = l.Close()
		return fmt.Errorf("cni server: socket mode: %w", err)
	}
	s.listener = l
	return nil
}

// Serve answers requests until ctx is done, then stops listening, waits
// for requests in flight, removes the socket and returns nil.
func (s *Server) Serve(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	hs := &http.Server{Handler: http.HandlerFunc(s.handle), ReadHeaderTimeout: 10 * time.Second}
	hs.SetKeepAlivesEnabled(false)
	done := make(chan error, 1)
	go func() { done <- hs.Serve(s.listener) }()
	select {
	case err := <-done:
		return fmt.Errorf("cni server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shim.Timeout)
	defer cancel()
	err := hs.Shutdown(sctx)
	_ = os.Remove(s.cfg.SocketPath)
	if c, ok := s.sw.(*redialSwitch); ok {
		c.close()
	}
	return err
}

// Close releases the listener (if Serve never ran), the lease store and
// the host netns handle. Call it after Serve returned.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.listener != nil {
		_ = s.listener.Close() // already closed if Serve ran
	}
	s.mu.Unlock()
	_ = s.hostNS.Close()
	return s.leases.Close()
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != shim.RequestPath {
		http.Error(w, "ovs-sdn CNI server: POST "+shim.RequestPath+" only", http.StatusNotFound)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, shim.MaxRequestBytes+1))
	if err == nil && len(body) > shim.MaxRequestBytes {
		err = fmt.Errorf("request larger than %d bytes", shim.MaxRequestBytes)
	}
	if err != nil {
		writeError(w, types.NewError(types.ErrIOFailure, "ovs-sdn: reading the plugin's request", err.Error()))
		return
	}
	req, err := decodeRequest(body)
	if err != nil {
		writeError(w, err)
		return
	}
	out, err := s.do(r.Context(), req)
	if err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
}

// do runs one validated request and returns the shim's stdout.
func (s *Server) do(ctx context.Context, req *request) ([]byte, error) {
	start := time.Now()
	out, err := s.dispatch(ctx, req)
	s.m.observe(req.Command, start, err)
	if err != nil {
		klog.ErrorS(err, "CNI request failed", "command", req.Command, "container", req.ContainerID,
			"pod", req.pod.Namespace+"/"+req.pod.Name, "duration", time.Since(start))
	} else {
		klog.V(2).InfoS("CNI request done", "command", req.Command, "container", req.ContainerID,
			"pod", req.pod.Namespace+"/"+req.pod.Name, "duration", time.Since(start))
	}
	return out, err
}

func (s *Server) dispatch(ctx context.Context, req *request) ([]byte, error) {
	switch req.Command {
	case shim.CmdStatus:
		return nil, s.status()
	case shim.CmdGC:
		return nil, s.gc(ctx, req)
	}
	unlock := s.locks.lock(req.ContainerID)
	defer unlock()
	switch req.Command {
	case shim.CmdAdd:
		return s.add(ctx, req)
	case shim.CmdDel:
		return nil, s.del(ctx, req)
	default:
		return nil, s.check(ctx, req)
	}
}

// status answers STATUS: ready once the agent is synced.
func (s *Server) status() error {
	if _, ok := s.cfg.PodNetwork.NodeConfig(); !ok {
		return types.NewError(ErrStatusNotAvailable, "ovs-sdn node agent is not ready yet",
			"it is still syncing with the API server and OVS; pods can be added once it is")
	}
	return nil
}

func writeError(w http.ResponseWriter, err error) {
	var cerr *types.Error
	if !errors.As(err, &cerr) {
		cerr = types.NewError(types.ErrInternal, err.Error(), "")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusInternalServerError)
	_ = json.NewEncoder(w).Encode(cerr)
}

// keyedMutex serializes work per key (container ID) and lets different keys
// run in parallel.
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*keyedEntry
}

type keyedEntry struct {
	mu   sync.Mutex
	refs int
}

// lock locks key and returns its unlock.
func (k *keyedMutex) lock(key string) func() {
	k.mu.Lock()
	e := k.m[key]
	if e == nil {
		e = &keyedEntry{}
		k.m[key] = e
	}
	e.refs++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}

// tryLock locks key if nobody holds or waits for it.
func (k *keyedMutex) tryLock(key string) (func(), bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m[key] != nil {
		return nil, false
	}
	e := &keyedEntry{refs: 1}
	e.mu.Lock() // uncontended: nobody else can see e yet
	k.m[key] = e
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}, true
}
