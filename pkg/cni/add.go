package cni

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"k8s.io/klog/v2"

	"github.com/ovs-sdn/ovs-sdn/pkg/ipam"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/ovsdb"
)

// rollbackTimeout bounds the undo of a failed ADD (and DEL's cleanup when
// the request's context is already done).
const rollbackTimeout = 30 * time.Second

// undoStack collects the inverse of every step an ADD took; on failure it
// runs them last-first, with a context of its own.
type undoStack []func(ctx context.Context) error

func (u *undoStack) push(f func(ctx context.Context) error) { *u = append(*u, f) }

func (u undoStack) run(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	var errs []error
	for i := len(u) - 1; i >= 0; i-- {
		errs = append(errs, u[i](ctx))
	}
	return errors.Join(errs...)
}

// add attaches the pod: lease, veth, OVS port, flows. Idempotent: an
// attachment that exists is re-ensured and gives the same result. On
// failure everything this call created is undone (a pre-existing
// attachment is left for DEL).
func (s *Server) add(ctx context.Context, req *request) (out []byte, err error) {
	nc, ok := s.cfg.PodNetwork.NodeConfig()
	if !ok {
		return nil, types.NewError(types.ErrTryAgainLater, "ovs-sdn node agent is not ready yet; try again later",
			"it is still syncing with the API server and OVS")
	}
	vnid, err := s.cfg.PodNetwork.VNID(ctx, req.pod.Namespace)
	if err != nil {
		return nil, types.NewError(types.ErrTryAgainLater,
			fmt.Sprintf("ovs-sdn: no VNID for namespace %q yet; try again later", req.pod.Namespace),
			fmt.Sprintf("%v (is sdn-controller running and has it created the NetNamespace?)", err))
	}
	var undo undoStack
	defer func() {
		if err != nil && len(undo) > 0 {
			if uerr := undo.run(ctx); uerr != nil {
				klog.ErrorS(uerr, "Rollback of failed CNI ADD incomplete", "container", req.ContainerID)
				err = fmt.Errorf("%w (rollback incomplete: %v)", err, uerr)
			}
		}
	}()
	port, err := s.attach(ctx, req, nc, vnid, &undo)
	if err != nil {
		return nil, addError(err, nc)
	}
	return s.result(req, nc, port)
}

// attach runs the steps of ADD, pushing the undo of each step it took.
func (s *Server) attach(ctx context.Context, req *request, nc NodeConfig, vnid uint32, undo *undoStack) (PodPort, error) {
	t := time.Now()
	addr, existed, err := s.leases.Allocate(req.ContainerID, req.IfName, nc.Subnet, nc.gateway())
	s.m.step("add", "ipam", &t)
	if err != nil {
		return PodPort{}, err
	}
	if !existed {
		undo.push(func(context.Context) error { return s.leases.Release(req.ContainerID, req.IfName) })
	}
	p := PodPort{Namespace: req.pod.Namespace, Name: req.pod.Name, SandboxID: req.ContainerID,
		IP: addr.Addr(), MAC: PodMAC(addr.Addr()), PortName: HostVethName(req.ContainerID, req.IfName), VNID: vnid}
	created, err := ensureVeth(s.hostNS, podLink{netns: req.Netns, ifName: req.IfName, hostVeth: p.PortName, addr: addr, nc: nc})
	s.m.step("add", "veth", &t)
	if created {
		undo.push(func(context.Context) error { return deleteVeth(s.hostNS, p.PortName) })
	}
	if err != nil {
		return PodPort{}, err
	}
	ofport, err := s.sw.AddPort(ctx, s.cfg.Bridge, p.PortName, portExternalIDs(p))
	s.m.step("add", "ovs_port", &t)
	if created {
		undo.push(func(ctx context.Context) error { return s.sw.DeletePort(ctx, s.cfg.Bridge, p.PortName) })
	}
	if err != nil {
		return PodPort{}, fmt.Errorf("add OVS port %s to %s: %w", p.PortName, s.cfg.Bridge, err)
	}
	p.OFPort = uint32(ofport)
	// PodAdded is all-or-nothing: nothing to undo when it fails.
	err = s.cfg.PodNetwork.PodAdded(ctx, p)
	s.m.step("add", "flows", &t)
	if err != nil {
		return PodPort{}, fmt.Errorf("install flows of pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	return p, nil
}

// portExternalIDs are the Interface external_ids of a pod port; the agent
// rebuilds its local pods from them.
func portExternalIDs(p PodPort) map[string]string {
	return map[string]string{
		ovsdb.ExternalIDSandbox:      p.SandboxID,
		ovsdb.ExternalIDIP:           p.IP.String(),
		ovsdb.ExternalIDPodNamespace: p.Namespace,
		ovsdb.ExternalIDPodName:      p.Name,
	}
}

// addError turns an ADD failure into a CNI error a person can act on.
func addError(err error, nc NodeConfig) error {
	var cerr *types.Error
	var nserr *netnsError
	switch {
	case errors.As(err, &cerr):
		return cerr
	case errors.Is(err, ipam.ErrExhausted):
		return types.NewError(ErrSubnetFull,
			fmt.Sprintf("ovs-sdn: no free IP address left in node subnet %s", nc.Subnet),
			fmt.Sprintf("%v; delete unused pods on this node (a CNI GC releases leases of containers that no longer exist)", err))
	case errors.As(err, &nserr):
		return types.NewError(types.ErrInvalidNetNS, "ovs-sdn: cannot open the pod's network namespace "+nserr.path, nserr.err.Error())
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, ovsdb.ErrDisconnected):
		return types.NewError(types.ErrTryAgainLater, "ovs-sdn: OVS did not answer in time; try again later", err.Error())
	}
	return types.NewError(types.ErrInternal, "ovs-sdn: pod network setup failed", err.Error())
}

// result renders the ADD result in the request's cniVersion.
func (s *Server) result(req *request, nc NodeConfig, p PodPort) ([]byte, error) {
	addr := netip.PrefixFrom(p.IP, nc.Subnet.Bits())
	res := &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{
			{Name: p.PortName, Mac: hostMAC(s, p.PortName)},
			{Name: req.IfName, Mac: p.MAC.String(), Sandbox: req.Netns},
		},
		IPs: []*current.IPConfig{{Interface: current.Int(1), Address: *ipNet(addr), Gateway: nc.gateway().AsSlice()}},
	}
	for _, r := range podRoutes(0, nc) {
		res.Routes = append(res.Routes, &types.Route{Dst: *r.Dst, GW: r.Gw})
	}
	conv, err := res.GetAsVersion(req.conf.CNIVersion)
	if err != nil {
		return nil, types.NewError(types.ErrIncompatibleCNIVersion, "ovs-sdn: cannot express the result in cniVersion "+req.conf.CNIVersion, err.Error())
	}
	return json.Marshal(conv)
}

// hostMAC reads the host veth's MAC for the result ("" if unreadable: the
// field is informational).
func hostMAC(s *Server, name string) string {
	var mac string
	_ = s.hostNS.Do(func(ns.NetNS) error {
		if l, err := netlinksafe.LinkByName(name); err == nil {
			mac = l.Attrs().HardwareAddr.String()
		}
		return nil
	})
	return mac
}
