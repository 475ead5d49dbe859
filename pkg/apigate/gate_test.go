package apigate

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// flakyServer is an HTTP server on a fixed loopback address that a test
// can stop (connections refused) and start again, and whose /readyz it can
// switch between 200 "ok" and 500.
type flakyServer struct {
	t      *testing.T
	addr   string
	ready  atomic.Bool
	readyz atomic.Int32 // /readyz requests received
	mu     sync.Mutex
	srv    *http.Server
}

func newFlakyServer(t *testing.T) *flakyServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &flakyServer{t: t, addr: ln.Addr().String()}
	s.ready.Store(true)
	s.serve(ln)
	t.Cleanup(s.stop)
	return s
}

func (s *flakyServer) serve(ln net.Listener) {
	mux := http.NewServeMux()
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		s.readyz.Add(1)
		if !s.ready.Load() {
			http.Error(w, "[-]poststarthook/crd-informer-synced failed", http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("/data", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Method+" data") })
	srv := &http.Server{Handler: mux}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	go srv.Serve(ln)
}

// stop closes the listener and every connection: clients get "connection
// refused" until start.
func (s *flakyServer) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		s.srv.Close()
		s.srv = nil
	}
}

func (s *flakyServer) start() {
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		s.t.Fatal(err)
	}
	s.serve(ln)
}

func (s *flakyServer) url(path string) string { return "http://" + s.addr + path }

// probe is what ReadyzProbe does, over plain HTTP.
func (s *flakyServer) probe(ctx context.Context) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.url("/readyz"), nil)
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}

var testOpts = Options{FirstProbe: 20 * time.Millisecond, ProbePeriod: 100 * time.Millisecond}

func gatedClient(g *Gate) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	return &http.Client{Transport: g.Wrap(tr)}
}

type result struct {
	body string
	err  error
	at   time.Time
}

func get(ctx context.Context, c *http.Client, url string) <-chan result {
	ch := make(chan result, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := c.Do(req)
		if err != nil {
			ch <- result{err: err, at: time.Now()}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		ch <- result{body: string(b), err: err, at: time.Now()}
	}()
	return ch
}

// TestGateHoldsReadsUntilReady: a read that meets a dead server is held —
// not failed — while the server is down and while it answers /readyz with
// 500, and is answered once /readyz says ok; meanwhile the server gets only
// the probes, at most one per ProbePeriod after the first ones.
func TestGateHoldsReadsUntilReady(t *testing.T) {
	s := newFlakyServer(t)
	var changes []string
	var mu sync.Mutex
	opts := testOpts
	opts.OnChange = func(down bool, err error, closedFor time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		if down {
			changes = append(changes, "closed")
		} else {
			changes = append(changes, "opened")
		}
	}
	g := New(context.Background(), s.probe, opts)
	c := gatedClient(g)
	if r := <-get(context.Background(), c, s.url("/data")); r.err != nil || r.body != "GET data" {
		t.Fatalf("GET with the server up: %q, %v", r.body, r.err)
	}
	if g.Closed() {
		t.Fatal("gate closed while the server answers")
	}

	s.stop()
	res := get(context.Background(), c, s.url("/data"))
	select {
	case r := <-res:
		t.Fatalf("GET returned while the server is down: %q, %v", r.body, r.err)
	case <-time.After(500 * time.Millisecond):
	}
	if !g.Closed() {
		t.Fatal("gate open while the server is down")
	}
	s.ready.Store(false)
	s.start() // listening, not ready
	select {
	case r := <-res:
		t.Fatalf("GET returned while /readyz fails: %q, %v", r.body, r.err)
	case <-time.After(500 * time.Millisecond):
	}
	probesWhileDown := g.Probes()
	readyAt := time.Now()
	s.ready.Store(true)
	var r result
	select {
	case r = <-res:
	case <-time.After(10 * time.Second):
		t.Fatal("GET still held 10 s after the server became ready")
	}
	if r.err != nil || r.body != "GET data" || r.at.Before(readyAt) {
		t.Fatalf("held GET: %q, %v at %v (ready at %v)", r.body, r.err, r.at, readyAt)
	}
	t.Logf("held GET answered %v after /readyz turned ok; %d probes in the 1 s the server was down or not ready", r.at.Sub(readyAt), probesWhileDown)
	// 20, 40, 80, then 100 ms apart: at most ~12 in one second.
	if probesWhileDown > 14 {
		t.Errorf("%d probes in 1 s with ProbePeriod 100 ms", probesWhileDown)
	}
	if g.Closed() {
		t.Error("gate still closed after the server is ready")
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(changes, ",") != "closed,opened" {
		t.Errorf("OnChange calls: %v", changes)
	}
}

// TestGateWritesFailFast: a write is never held or re-sent; while the gate
// is closed it fails at once, as without the gate.
func TestGateWritesFailFast(t *testing.T) {
	s := newFlakyServer(t)
	g := New(context.Background(), s.probe, testOpts)
	c := gatedClient(g)
	s.stop()
	held := get(context.Background(), c, s.url("/data")) // closes the gate
	waitFor(t, "gate closed", g.Closed)
	start := time.Now()
	resp, err := c.Post(s.url("/data"), "text/plain", strings.NewReader("x"))
	if err == nil {
		resp.Body.Close()
		t.Fatal("POST to a stopped server succeeded")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("POST failed only after %v: held by the gate", d)
	}
	s.start()
	if r := <-held; r.err != nil {
		t.Errorf("held GET: %v", r.err)
	}
}

// TestGateHeldReadHonoursContext: a held read returns its context's error
// when the context ends, and every held read fails when the gate's own
// context ends.
func TestGateHeldReadHonoursContext(t *testing.T) {
	s := newFlakyServer(t)
	gctx, stopGate := context.WithCancel(context.Background())
	g := New(gctx, s.probe, testOpts)
	c := gatedClient(g)
	s.stop()
	ctx, cancel := context.WithCancel(context.Background())
	res := get(ctx, c, s.url("/data"))
	waitFor(t, "gate closed", g.Closed)
	cancel()
	if r := <-res; !errors.Is(r.err, context.Canceled) {
		t.Errorf("held GET after its context was cancelled: %v", r.err)
	}
	res = get(context.Background(), c, s.url("/data"))
	time.Sleep(100 * time.Millisecond)
	stopGate()
	select {
	case r := <-res:
		if r.err == nil {
			t.Error("held GET succeeded after the gate stopped, with the server down")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("held GET not released when the gate's context ended")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5 s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
