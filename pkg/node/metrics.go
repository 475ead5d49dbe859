package node

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// metrics mirror openshift_sdn_* under ovs_sdn_* (SPEC §8).
type metrics struct {
	flows         prometheus.Gauge
	ovsOps        *prometheus.CounterVec
	syncDuration  *prometheus.HistogramVec
	vnidNotFound  prometheus.Counter
	pendingOwners prometheus.Gauge
	realization   *prometheus.HistogramVec
	// NetworkPolicy (networkpolicy mode; feature_policy.go).
	policyRealization prometheus.Histogram
	policyFlows       prometheus.Gauge
	// Services (--proxy-mode=ovs; feature_services.go).
	services, servicePorts, serviceEndpoints prometheus.Gauge
	// Egress IPs (VNID modes; feature_egressip.go).
	egressIPsHosted, egressVNIDsDropped prometheus.Gauge
	// Multicast (modes with VNIDs; feature_multicast.go).
	multicastVNIDs prometheus.Gauge
}

// newMetrics creates the agent's metrics and registers them on reg (nil:
// not registered, e.g. in tests).
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		flows: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ovs_sdn_ovs_flows", Help: "Number of flows the agent keeps on br0."}),
		ovsOps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ovs_sdn_ovs_operations_total", Help: "OpenFlow operations on br0 (bundle, replace-flows, dump-flows) by result."},
			[]string{"result"}),
		syncDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ovs_sdn_sync_duration_seconds", Help: "Duration of flow syncs (render and apply), by kind (incremental, full).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15)}, []string{"kind"}),
		vnidNotFound: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ovs_sdn_vnid_not_found_errors_total", Help: "Local pods whose namespace had no known VNID when their flows were rendered."}),
		pendingOwners: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ovs_sdn_pending_flow_owners", Help: "Flow owners changed but not yet applied to br0 (non-zero after a failed sync)."}),
		realization: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ovs_sdn_realization_seconds",
			Help:    "Time from an event a feature of the agent watches to the bundle that realizes it on br0, by feature.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}, []string{"feature"}),
		policyRealization: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ovs_sdn_networkpolicy_realization_seconds",
			Help:    "Time from a Pod, Namespace, NetworkPolicy or NetNamespace event to the bundle that realizes it on br0.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}),
		policyFlows: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ovs_sdn_networkpolicy_flows", Help: "Number of compiled NetworkPolicy flows (tables 27 and 80) the agent keeps on br0."}),
		services: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ovs_sdn_services", Help: "Number of Services with at least one port programmed in br0 (proxy mode ovs)."}),
		servicePorts: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ovs_sdn_service_ports", Help: "Number of Service ports programmed in br0 (proxy mode ovs)."}),
		serviceEndpoints: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ovs_sdn_service_endpoints", Help: "Number of (Service port, endpoint) pairs programmed in br0 (proxy mode ovs)."}),
		egressIPsHosted: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ovs_sdn_egress_ips_hosted", Help: "Number of active egress IPs this node holds (SNATs to and answers ARP for)."}),
		egressVNIDsDropped: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ovs_sdn_egress_namespaces_dropped", Help: "Number of VNIDs requesting egress IPs none of which is active: their traffic leaving the cluster is dropped."}),
		multicastVNIDs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ovs_sdn_multicast_enabled_vnids", Help: "VNIDs with multicast enabled (every NetNamespace holding the VNID has the annotation), as last rendered."}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.flows, m.ovsOps, m.syncDuration, m.vnidNotFound, m.pendingOwners,
		m.realization, m.policyRealization, m.policyFlows, m.services, m.servicePorts, m.serviceEndpoints, m.egressIPsHosted, m.egressVNIDsDropped,
		m.multicastVNIDs} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) observeOp(err error) {
	if err != nil {
		m.ovsOps.WithLabelValues("failure").Inc()
	} else {
		m.ovsOps.WithLabelValues("success").Inc()
	}
}

// meteredBridge counts every operation on the wrapped bridge.
type meteredBridge struct {
	ovs.Bridge
	m *metrics
}

func (b meteredBridge) Bundle(ctx context.Context, changes []ovs.Change) error {
	if len(changes) == 0 {
		return nil
	}
	err := b.Bridge.Bundle(ctx, changes)
	b.m.observeOp(err)
	return err
}

func (b meteredBridge) ReplaceFlows(ctx context.Context, flows []ovs.Flow) error {
	err := b.Bridge.ReplaceFlows(ctx, flows)
	b.m.observeOp(err)
	return err
}

func (b meteredBridge) ReplaceAll(ctx context.Context, groups []ovs.GroupEntry, flows []ovs.Flow) error {
	err := b.Bridge.ReplaceAll(ctx, groups, flows)
	b.m.observeOp(err)
	return err
}

func (b meteredBridge) DumpGroups(ctx context.Context) ([]ovs.GroupEntry, error) {
	out, err := b.Bridge.DumpGroups(ctx)
	b.m.observeOp(err)
	return out, err
}

func (b meteredBridge) DumpFlows(ctx context.Context, f ovs.Filter) ([]ovs.DumpedFlow, error) {
	out, err := b.Bridge.DumpFlows(ctx, f)
	b.m.observeOp(err)
	return out, err
}

func (m *metrics) timeSync(kind string, start time.Time) {
	m.syncDuration.WithLabelValues(kind).Observe(time.Since(start).Seconds())
}
