package dnsresolver

import "github.com/prometheus/client_golang/prometheus"

// metrics of the resolver, ovs_sdn_egress_dns_* (SPEC §8).
type metrics struct {
	queries    prometheus.Counter
	failures   prometheus.Counter
	tracked    prometheus.Gauge
	unresolved prometheus.Gauge
}

// newMetrics creates the metrics and registers them on reg (nil: not registered).
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		queries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ovs_sdn_egress_dns_queries_total",
			Help: "DNS queries sent for egress-firewall names (one per message to one server, CNAME follow-ups included)."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ovs_sdn_egress_dns_failures_total",
			Help: "Resolutions of egress-firewall names that failed on every server (the name kept its last good addresses)."}),
		tracked: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ovs_sdn_egress_dns_names_tracked",
			Help: "DNS names named by enforced EgressNetworkPolicy rules."}),
		unresolved: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ovs_sdn_egress_dns_names_unresolved",
			Help: "Tracked DNS names that currently have no address (not resolved yet, failing, or without an A record)."}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.queries, m.failures, m.tracked, m.unresolved} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) observe(r result) {
	m.queries.Add(float64(r.ans.Queries))
	if r.err != nil {
		m.failures.Inc()
	}
}
