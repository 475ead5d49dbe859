package ovsdb

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ovn-org/libovsdb/client"
	"github.com/ovn-org/libovsdb/model"
	"github.com/ovn-org/libovsdb/ovsdb"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/ovsdb/vswitchd"
)

// Interface external_ids keys of pod ports. The agent finds the pods of an
// existing bridge by them after a restart (reference §4.3 step 6:
// external_ids:sandbox != "").
const (
	// ExternalIDSandbox is the pod sandbox (CNI container) ID; always set on
	// pod ports.
	ExternalIDSandbox = "sandbox"
	// ExternalIDIP is the pod's IPv4 address, e.g. "10.128.0.5".
	ExternalIDIP = "ip"
	// ExternalIDPodNamespace is the pod's namespace.
	ExternalIDPodNamespace = "k8s_pod_namespace"
	// ExternalIDPodName is the pod's name.
	ExternalIDPodName = "k8s_pod_name"
	// ExternalIDPodUID is the pod's UID; optional.
	ExternalIDPodUID = "k8s_pod_uid"
)

// Interface types this package creates.
const (
	TypeVXLAN    = "vxlan"
	TypeInternal = "internal"
	TypeSystem   = "" // a netdev that already exists, e.g. a pod's host veth
)

// PortInfo is a port of a bridge as seen in the cache, described by its
// interface (the one named like the port).
type PortInfo struct {
	Name string
	// OFPort is the OpenFlow port number; 0 while ovs-vswitchd has not
	// assigned one yet, -1 when it could not attach the interface.
	OFPort      int
	Type        string
	Options     map[string]string
	ExternalIDs map[string]string
	MACInUse    string
	// Error is the interface's error column ("" when fine).
	Error string
}

// EnsureVXLANPort creates, or fixes in place, the port and interface name of
// type vxlan with options remote_ip=flow, key=flow, dst_port=dstPort and
// ofport_request=ofport. Idempotent (nothing is sent when it matches); one
// transaction; returns once ovs-vswitchd has applied it. A port of that name
// on another bridge is an error.
func (c *Client) EnsureVXLANPort(ctx context.Context, bridge, name string, dstPort uint16, ofport int) error {
	_, err := c.ensurePort(ctx, portSpec{
		bridge: bridge, name: name, ifType: TypeVXLAN,
		options: map[string]string{
			"remote_ip": "flow",
			"key":       "flow",
			"dst_port":  strconv.Itoa(int(dstPort)),
		},
		ofportRequest: &ofport,
	})
	return err
}

// EnsureInternalPort creates, or fixes in place, the internal port name
// (tun0) with ofport_request=ofport and mtu_request=mtu. Idempotent; one
// transaction; returns once ovs-vswitchd has applied it (the netdev exists).
// A port of that name on another bridge is an error.
func (c *Client) EnsureInternalPort(ctx context.Context, bridge, name string, ofport int, mtu int) error {
	_, err := c.ensurePort(ctx, portSpec{
		bridge: bridge, name: name, ifType: TypeInternal,
		options:       map[string]string{},
		ofportRequest: &ofport,
		mtuRequest:    &mtu,
	})
	return err
}

// AddPort adds the existing netdev name (e.g. a pod's host veth) to bridge
// as a system port whose Interface carries externalIDs (keys ExternalID*),
// and returns the ofport ovs-vswitchd assigned to it.
//
// Idempotent: an existing port of that name on bridge is kept; its
// external_ids are replaced by externalIDs when they differ. All-or-nothing:
// when ovs-vswitchd cannot attach the interface (ofport -1) the error
// carries Interface.error, and a port this call created is removed again. A
// port of that name on another bridge is an error. Safe to call
// concurrently for different ports.
func (c *Client) AddPort(ctx context.Context, bridge, name string, externalIDs map[string]string) (int, error) {
	if externalIDs == nil {
		externalIDs = map[string]string{}
	}
	created, err := c.ensurePort(ctx, portSpec{
		bridge: bridge, name: name, ifType: TypeSystem,
		options:     map[string]string{},
		externalIDs: externalIDs,
	})
	if err != nil {
		return 0, err
	}
	var ofport int
	err = c.waitFor(ctx, "ofport of "+name, func() (bool, error) {
		iface, err := c.iface(ctx, name)
		if err != nil {
			return false, err
		}
		if iface.Ofport == nil || *iface.Ofport == 0 {
			return false, nil
		}
		ofport = *iface.Ofport
		if ofport < 0 {
			return false, fmt.Errorf("ovsdb: ovs-vswitchd could not add port %s: %s", name, deref(iface.Error))
		}
		return true, nil
	})
	if err != nil && created {
		// Best effort with a fresh context: ctx may be what failed.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
		defer cancel()
		if derr := c.DeletePort(dctx, bridge, name); derr != nil {
			err = errors.Join(err, fmt.Errorf("rollback: %w", derr))
		}
	}
	if err != nil {
		return 0, err
	}
	return ofport, nil
}

// DeletePort removes port name from bridge (its interface goes with it).
// Idempotent: a port missing from bridge is not an error.
func (c *Client) DeletePort(ctx context.Context, bridge, name string) error {
	return c.write(ctx, "delete port "+name, func() ([]ovsdb.Operation, error) {
		br, err := c.bridge(ctx, bridge)
		if isNotFound(err) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		port, err := c.port(ctx, name)
		if isNotFound(err) || (err == nil && !slices.Contains(br.Ports, port.UUID)) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		brRow := vswitchd.Bridge{UUID: br.UUID}
		return c.cli.Where(&brRow).Mutate(&brRow, mutation(&brRow.Ports, ovsdb.MutateOperationDelete, port.UUID))
	})
}

// Ports lists the ports of bridge, sorted by OFPort then name, from the
// cache. A missing bridge is an error wrapping ErrNotFound.
func (c *Client) Ports(ctx context.Context, bridge string) ([]PortInfo, error) {
	if err := c.alive(); err != nil {
		return nil, err
	}
	br, err := c.bridge(ctx, bridge)
	if err != nil {
		return nil, err
	}
	var out []PortInfo
	for _, puuid := range br.Ports {
		port := vswitchd.Port{UUID: puuid}
		if err := c.cli.Get(ctx, &port); err != nil {
			continue // not in the cache yet
		}
		iface, err := c.iface(ctx, port.Name)
		if err != nil || !slices.Contains(port.Interfaces, iface.UUID) {
			// A bond or a renamed interface: describe the port only.
			out = append(out, PortInfo{Name: port.Name})
			continue
		}
		out = append(out, portInfo(iface))
	}
	slices.SortFunc(out, func(a, b PortInfo) int {
		if a.OFPort != b.OFPort {
			return a.OFPort - b.OFPort
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out, nil
}

// InterfaceMAC returns the mac_in_use of interface name (tun0's MAC, for the
// flows). It waits, bounded by ctx, while ovs-vswitchd has not reported it
// yet; a missing interface is an error wrapping ErrNotFound.
func (c *Client) InterfaceMAC(ctx context.Context, name string) (string, error) {
	var mac string
	err := c.waitFor(ctx, "mac_in_use of "+name, func() (bool, error) {
		iface, err := c.iface(ctx, name)
		if err != nil {
			return false, err
		}
		mac = deref(iface.MACInUse)
		return mac != "", nil
	})
	return mac, err
}

// rollbackTimeout bounds the removal of a port AddPort could not attach.
const rollbackTimeout = 10 * time.Second

// portSpec is the wanted state of a port with one interface of the same
// name. options are compared and set exactly; externalIDs likewise unless
// nil (then left alone); nil ofportRequest/mtuRequest leave those columns
// alone.
type portSpec struct {
	bridge, name, ifType string
	options              map[string]string
	externalIDs          map[string]string
	ofportRequest        *int
	mtuRequest           *int
}

// ensurePort converges the port to s in one transaction and reports
// whether it created the port.
func (c *Client) ensurePort(ctx context.Context, s portSpec) (created bool, err error) {
	if s.name == "" {
		return false, fmt.Errorf("ovsdb: port name is empty")
	}
	err = c.write(ctx, "ensure port "+s.name, func() ([]ovsdb.Operation, error) {
		created = false
		br, err := c.bridge(ctx, s.bridge)
		if err != nil {
			return nil, err
		}
		port, err := c.port(ctx, s.name)
		if err != nil && !isNotFound(err) {
			return nil, err
		}
		if err == nil {
			return c.fixPort(ctx, br, port, s)
		}
		if _, err := c.iface(ctx, s.name); err == nil {
			return nil, fmt.Errorf("ovsdb: interface %s exists on another port", s.name)
		}
		iface := vswitchd.Interface{
			UUID: c.namedUUID("iface"), Name: s.name, Type: s.ifType,
			Options: s.options, ExternalIDs: s.externalIDs,
			OfportRequest: s.ofportRequest, MTURequest: s.mtuRequest,
		}
		newPort := vswitchd.Port{UUID: c.namedUUID("port"), Name: s.name, Interfaces: []string{iface.UUID}}
		ops, err := c.cli.Create(&iface, &newPort)
		if err != nil {
			return nil, err
		}
		brRow := vswitchd.Bridge{UUID: br.UUID}
		mut, err := c.cli.Where(&brRow).Mutate(&brRow, mutation(&brRow.Ports, ovsdb.MutateOperationInsert, newPort.UUID))
		if err != nil {
			return nil, err
		}
		created = true
		return append(ops, mut...), nil
	})
	return created, err
}

// fixPort returns the update of an existing port's interface to s (nil when
// it already matches).
func (c *Client) fixPort(ctx context.Context, br vswitchd.Bridge, port vswitchd.Port, s portSpec) ([]ovsdb.Operation, error) {
	if !slices.Contains(br.Ports, port.UUID) {
		owner := "no bridge"
		var bridges []vswitchd.Bridge
		if err := c.cli.WhereCache(func(b *vswitchd.Bridge) bool { return slices.Contains(b.Ports, port.UUID) }).List(ctx, &bridges); err == nil && len(bridges) > 0 {
			owner = "bridge " + bridges[0].Name
		}
		return nil, fmt.Errorf("ovsdb: port %s exists on %s, not on %s", s.name, owner, s.bridge)
	}
	iface, err := c.iface(ctx, s.name)
	if err != nil || len(port.Interfaces) != 1 || port.Interfaces[0] != iface.UUID {
		return nil, fmt.Errorf("ovsdb: port %s does not have exactly one interface named %s", s.name, s.name)
	}
	want := vswitchd.Interface{
		UUID: iface.UUID, Type: s.ifType, Options: s.options, ExternalIDs: s.externalIDs,
		OfportRequest: s.ofportRequest, MTURequest: s.mtuRequest,
	}
	var fields []any
	if iface.Type != s.ifType {
		fields = append(fields, &want.Type)
	}
	if !maps.Equal(iface.Options, s.options) {
		fields = append(fields, &want.Options)
	}
	if s.externalIDs != nil && !maps.Equal(iface.ExternalIDs, s.externalIDs) {
		fields = append(fields, &want.ExternalIDs)
	}
	if s.ofportRequest != nil && !equalPtr(iface.OfportRequest, s.ofportRequest) {
		fields = append(fields, &want.OfportRequest)
	}
	if s.mtuRequest != nil && !equalPtr(iface.MTURequest, s.mtuRequest) {
		fields = append(fields, &want.MTURequest)
	}
	if len(fields) == 0 {
		return nil, nil
	}
	return c.cli.Where(&want).Update(&want, fields...)
}

func (c *Client) port(ctx context.Context, name string) (vswitchd.Port, error) {
	p := vswitchd.Port{Name: name}
	err := c.byName(ctx, &p, "port", name)
	return p, err
}

func (c *Client) iface(ctx context.Context, name string) (vswitchd.Interface, error) {
	if err := c.alive(); err != nil {
		return vswitchd.Interface{}, err
	}
	i := vswitchd.Interface{Name: name}
	err := c.byName(ctx, &i, "interface", name)
	return i, err
}

// byName fills m, a model with its name set, from the cache through the
// schema's name index (Bridge, Port and Interface names are unique): one
// row looked up and copied, where a predicate would copy the whole table.
// Called for every cache update by writers waiting for an ofport, so it
// must stay cheap with hundreds of ports.
func (c *Client) byName(ctx context.Context, m model.Model, kind, name string) error {
	err := c.cli.Get(ctx, m)
	if errors.Is(err, client.ErrNotFound) {
		return fmt.Errorf("ovsdb: %s %q: %w", kind, name, ErrNotFound)
	}
	return err
}

func portInfo(iface vswitchd.Interface) PortInfo {
	return PortInfo{
		Name:        iface.Name,
		OFPort:      deref(iface.Ofport),
		Type:        iface.Type,
		Options:     maps.Clone(iface.Options),
		ExternalIDs: maps.Clone(iface.ExternalIDs),
		MACInUse:    deref(iface.MACInUse),
		Error:       deref(iface.Error),
	}
}

func mutation(field any, mutator ovsdb.Mutator, uuid string) model.Mutation {
	return model.Mutation{Field: field, Mutator: mutator, Value: []string{uuid}}
}

func isNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

func ptr[T any](v T) *T { return &v }

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func equalPtr[T comparable](a, b *T) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}
