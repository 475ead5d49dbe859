package controller

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Allocation-error kinds, the label values of allocation_errors_total.
const (
	kindHostSubnet   = "hostsubnet"
	kindNetNamespace = "netnamespace"
)

// gaugeSource supplies the values of the gauges that are read from the
// running controller; nil while this replica is not leading.
type gaugeSource interface {
	subnetsAllocated() int
	subnetsFree() int
	vnidsAllocated() int
	multicastNamespaces() int
	hostSubnetConflicts() int
	invalidNetworkPolicies() int
	invalidEgressNetworkPolicies() int
	egressIPsAssigned() int
	egressIPsActive() int
	egressNodesUnreachable() int
}

// metrics are the ovs_sdn_controller_* series, mirroring openshift_sdn /
// sdn_controller names. Gauges read from the current gaugeSource on scrape.
type metrics struct {
	isLeader         prometheus.Gauge
	allocationErrors *prometheus.CounterVec
	egressFailovers  prometheus.Counter

	mu     sync.Mutex
	source gaugeSource
}

func newMetrics() *metrics {
	return &metrics{
		isLeader: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "ovs_sdn", Subsystem: "controller", Name: "is_leader",
			Help: "1 when this replica holds the sdn-controller Lease, else 0.",
		}),
		allocationErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ovs_sdn", Subsystem: "controller", Name: "allocation_errors_total",
			Help: "Failed node-subnet (kind=hostsubnet) or VNID (kind=netnamespace) allocations.",
		}, []string{"kind"}),
		egressFailovers: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "ovs_sdn", Subsystem: "controller", Name: "egress_ip_failovers_total",
			Help: "Automatically assigned egress IPs moved off an unreachable node to another node.",
		}),
	}
}

// register adds every series to reg; a nil reg registers nothing.
func (m *metrics) register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	collectors := []prometheus.Collector{
		m.isLeader, m.allocationErrors, m.egressFailovers,
		m.gaugeFunc("hostsubnets_allocated", "Node subnets currently allocated.", gaugeSource.subnetsAllocated),
		m.gaugeFunc("hostsubnets_free", "Node subnets still free in the cluster networks.", gaugeSource.subnetsFree),
		m.gaugeFunc("vnids_allocated", "VNIDs (>= 10) currently allocated.", gaugeSource.vnidsAllocated),
		m.gaugeFunc("num_multicast_enabled_namespaces", "NetNamespaces with multicast enabled.", gaugeSource.multicastNamespaces),
		m.gaugeFunc("networkpolicies_invalid", "NetworkPolicies the compiler rejects (in part): they allow nothing in the rejected direction.", gaugeSource.invalidNetworkPolicies),
		m.gaugeFunc("egress_network_policies_invalid", "EgressNetworkPolicies not enforced as written: their VNID drops all egress (shared VNID, several policies, an invalid rule) or they are ignored (VNID 0, subnet mode).", gaugeSource.invalidEgressNetworkPolicies),
		m.gaugeFunc("egress_ips_assigned", "Requested egress IPs that some HostSubnet lists.", gaugeSource.egressIPsAssigned),
		m.gaugeFunc("egress_ips_active", "Egress IPs in use: requested by one namespace, on one reachable node, without conflict.", gaugeSource.egressIPsActive),
		m.gaugeFunc("egress_nodes_unreachable", "Egress nodes that fail the health check.", gaugeSource.egressNodesUnreachable),
		m.gaugeFunc("hostsubnet_conflicts", "HostSubnets that conflict with an older one (overlapping subnet or same hostIP) and are ignored by every node.", gaugeSource.hostSubnetConflicts),
	}
	var errs []error
	for _, c := range collectors {
		errs = append(errs, reg.Register(c))
	}
	return errors.Join(errs...)
}

func (m *metrics) gaugeFunc(name, help string, read func(gaugeSource) int) prometheus.GaugeFunc {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "ovs_sdn", Subsystem: "controller", Name: name, Help: help,
	}, func() float64 {
		m.mu.Lock()
		src := m.source
		m.mu.Unlock()
		if src == nil {
			return 0
		}
		return float64(read(src))
	})
}

func (m *metrics) setSource(src gaugeSource) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.source = src
}

func (m *metrics) allocationFailed(kind string) { m.allocationErrors.WithLabelValues(kind).Inc() }
