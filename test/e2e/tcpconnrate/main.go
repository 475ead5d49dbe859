// Command tcpconnrate measures new TCP connections per second, as
// netperf's TCP_CRR does: connect, receive one byte, see the server close,
// close. The e2e Services benchmark (test/e2e/services_bench_test.go) runs
// it inside pod network namespaces (nsenter --net=…), once through a
// ClusterIP and once to the pod IP directly.
//
//	tcpconnrate serve -listen :9000
//	tcpconnrate dial -addr 10.128.0.5:9000 -duration 2s -concurrency 1
//
// The server writes one byte and waits for the client to close, as an
// HTTP/1.0 client closes after the response: the TIME_WAIT state stays on
// the client, whose ephemeral ports a run of tens of thousands of
// connections would exhaust in seconds unless TIME_WAIT ports can be reused
// (the benchmark sets net.ipv4.tcp_tw_reuse=1 and a wide
// ip_local_port_range in the client's namespace). dial prints one JSON
// object (dialResult) on stdout.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: tcpconnrate serve|dial [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "dial":
		err = dial(os.Args[2:])
	default:
		err = fmt.Errorf("unknown mode %q (serve or dial)", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tcpconnrate:", err)
		os.Exit(1)
	}
}

// serve accepts connections until killed; each gets one byte, then the
// server waits for the client's close.
func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	listen := fs.String("listen", ":9000", "TCP address to listen on")
	_ = fs.Parse(args)
	ln, err := net.Listen("tcp4", *listen)
	if err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			continue // e.g. ECONNABORTED: the next one
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write([]byte{'x'}); err == nil {
				_, _ = io.Copy(io.Discard, c) // until the client closes
			}
		}()
	}
}

// dialResult is what dial prints.
type dialResult struct {
	Connections int     `json:"connections"` // completed: connected, got the byte, closed
	Errors      int     `json:"errors"`
	FirstError  string  `json:"first_error,omitempty"`
	Seconds     float64 `json:"seconds"`
	PerSecond   float64 `json:"per_second"`
	P50us       float64 `json:"p50_us"` // one connection, connect to close
	P99us       float64 `json:"p99_us"`
}

// dial runs concurrency loops of connect/read/close for duration.
func dial(args []string) error {
	fs := flag.NewFlagSet("dial", flag.ExitOnError)
	addr := fs.String("addr", "", "server address ip:port")
	duration := fs.Duration("duration", 2*time.Second, "how long to make connections")
	concurrency := fs.Int("concurrency", 1, "connections in flight at a time")
	_ = fs.Parse(args)
	if *addr == "" || *concurrency < 1 {
		return errors.New("dial needs -addr and -concurrency ≥ 1")
	}
	var mu sync.Mutex
	var res dialResult
	var lat []time.Duration
	start := time.Now()
	deadline := start.Add(*duration)
	var wg sync.WaitGroup
	for range *concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			var errs int
			var first error
			for time.Now().Before(deadline) {
				t0 := time.Now()
				if err := once(*addr); err != nil {
					errs++
					if first == nil {
						first = err
					}
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			defer mu.Unlock()
			lat = append(lat, mine...)
			res.Errors += errs
			if first != nil && res.FirstError == "" {
				res.FirstError = first.Error()
			}
		}()
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	res.Connections = len(lat)
	res.PerSecond = float64(res.Connections) / res.Seconds
	res.P50us, res.P99us = quantileUS(lat, 0.50), quantileUS(lat, 0.99)
	return json.NewEncoder(os.Stdout).Encode(res)
}

// once makes one connection: connect, read the server's byte, close.
func once(addr string) error {
	c, err := net.DialTimeout("tcp4", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	var b [1]byte
	_, err = io.ReadFull(c, b[:])
	return err
}

func quantileUS(ds []time.Duration, q float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return float64(s[max(i, 0)]) / float64(time.Microsecond)
}
