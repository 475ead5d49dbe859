// Package probes serves a daemon's /metrics, /healthz and /readyz on one HTTP listener.
package probes

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/klog/v2"
)

// Check reports nil when healthy (or ready); its error text is the probe's response body.
type Check func() error

// Serve listens on addr and serves /metrics from reg, /healthz from healthy and /readyz from
// ready (a failing check answers 503 with the error) until ctx ends, then shuts down within
// 5 s. It returns once listening, with the bound address (addr may use port 0); a listen
// error names the flag the address came from.
func Serve(ctx context.Context, addr string, reg *prometheus.Registry, healthy, ready Check) (net.Addr, error) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", handler(healthy))
	mux.HandleFunc("/readyz", handler(ready))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-bind-address: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.ErrorS(err, "Metrics server stopped", "address", addr)
		}
	}()
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()
	klog.InfoS("Serving metrics and probes", "address", ln.Addr().String())
	return ln.Addr(), nil
}

func handler(check Check) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		if check != nil {
			if err := check(); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		_, _ = w.Write([]byte("ok\n"))
	}
}
