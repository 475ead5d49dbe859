package cni

import (
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the pod-operation metrics of the CNI server, mirroring
// openshift_sdn_pod_operations_{latency,errors} (reference §8.6) in
// seconds. The operation label is the lower-case CNI command.
type metrics struct {
	latency *prometheus.HistogramVec
	errors  *prometheus.CounterVec
	// steps is the time of each step of an ADD or DEL (ipam, veth,
	// ovs_port, flows), to tell where the latency of a slow one goes.
	steps *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ovs_sdn_pod_operations_latency_seconds",
			Help:    "Latency of CNI pod operations (add, del, check, gc, status) in the node agent.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15), // 1 ms .. 16 s
		}, []string{"operation"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ovs_sdn_pod_operations_errors_total",
			Help: "CNI pod operations that failed, by operation.",
		}, []string{"operation"}),
		steps: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ovs_sdn_pod_operation_step_seconds",
			Help:    "Duration of each step of a CNI ADD or DEL in the node agent: ipam, veth, ovs_port (OVSDB, until ovs-vswitchd applied it), flows (the agent's render and sync).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16), // 0.5 ms .. 16 s
		}, []string{"operation", "step"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.latency, m.errors, m.steps} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) observe(cmd string, start time.Time, err error) {
	op := strings.ToLower(cmd)
	m.latency.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil {
		m.errors.WithLabelValues(op).Inc()
	}
}

// step records the duration of one step of operation op ("add", "del")
// since *start and moves *start to now.
func (m *metrics) step(op, name string, start *time.Time) {
	now := time.Now()
	m.steps.WithLabelValues(op, name).Observe(now.Sub(*start).Seconds())
	*start = now
}
