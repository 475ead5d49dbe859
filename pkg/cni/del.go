package cni

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"k8s.io/klog/v2"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/ovsdb"
)

// del detaches the pod: flows, OVS port, veth, lease — in that order, so
// the address is released last, when nothing refers to it any more.
// Idempotent: whatever is already gone (netns, veth, port, lease) is
// skipped; DEL of a container never added succeeds. It needs no cluster
// state, so it works while the agent is not synced.
func (s *Server) del(ctx context.Context, req *request) error {
	p := s.knownPort(ctx, req.ContainerID, req.IfName)
	if p.Namespace == "" {
		p.Namespace, p.Name = req.pod.Namespace, req.pod.Name
	}
	if err := s.detach(ctx, p, req.ContainerID, req.IfName); err != nil {
		return types.NewError(types.ErrTryAgainLater, "ovs-sdn: pod network teardown incomplete; it will be retried", err.Error())
	}
	return nil
}

// knownPort gathers what is still known about an attachment: the OVS
// port's external_ids, else the lease.
func (s *Server) knownPort(ctx context.Context, containerID, ifName string) PodPort {
	p := PodPort{SandboxID: containerID, PortName: HostVethName(containerID, ifName)}
	if ports, err := s.sw.Ports(ctx, s.cfg.Bridge); err == nil {
		for _, pi := range ports {
			if pi.Name == p.PortName {
				fillFromPort(&p, pi)
			}
		}
	}
	if !p.IP.IsValid() {
		p.IP, _ = s.leases.Lookup(containerID, ifName)
	}
	if p.IP.IsValid() {
		p.MAC = PodMAC(p.IP)
	}
	return p
}

func fillFromPort(p *PodPort, pi ovsdb.PortInfo) {
	ids := pi.ExternalIDs
	p.Namespace, p.Name = ids[ovsdb.ExternalIDPodNamespace], ids[ovsdb.ExternalIDPodName]
	p.IP, _ = netip.ParseAddr(ids[ovsdb.ExternalIDIP])
	if pi.OFPort > 0 {
		p.OFPort = uint32(pi.OFPort)
	}
}

// detach removes everything of one attachment; each step tolerates missing
// state, and every step is tried even when an earlier one failed, except
// that the lease is kept when the port or the flows could not be removed
// (so the address is not reused while traffic may still reach it).
func (s *Server) detach(ctx context.Context, p PodPort, containerID, ifName string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	var errs []error
	t := time.Now()
	if p.Namespace != "" && p.Name != "" {
		if err := s.cfg.PodNetwork.PodDeleted(ctx, p); err != nil {
			errs = append(errs, fmt.Errorf("remove flows of pod %s/%s: %w", p.Namespace, p.Name, err))
		}
	}
	s.m.step("del", "flows", &t)
	if err := s.sw.DeletePort(ctx, s.cfg.Bridge, p.PortName); err != nil {
		errs = append(errs, fmt.Errorf("delete OVS port %s: %w", p.PortName, err))
	}
	s.m.step("del", "ovs_port", &t)
	if err := deleteVeth(s.hostNS, p.PortName); err != nil {
		errs = append(errs, err)
	}
	s.m.step("del", "veth", &t)
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	defer s.m.step("del", "ipam", &t)
	return s.leases.Release(containerID, ifName)
}

// gc answers GC: every lease and every pod port whose container is not in
// the request's cni.dev/valid-attachments is detached. Containers with a
// request in flight are skipped (their ADD or DEL decides).
func (s *Server) gc(ctx context.Context, req *request) error {
	valid := map[[2]string]bool{}
	validID := map[string]bool{}
	for _, a := range req.conf.ValidAttachments {
		valid[[2]string{a.ContainerID, a.IfName}] = true
		validID[a.ContainerID] = true
	}
	var errs []error
	leases, err := s.leases.Leases()
	if err != nil {
		return types.NewError(types.ErrIOFailure, "ovs-sdn: GC cannot list leases", err.Error())
	}
	seen := map[string]bool{}
	for _, l := range leases {
		if valid[[2]string{l.ContainerID, l.IfName}] {
			continue
		}
		seen[HostVethName(l.ContainerID, l.IfName)] = true
		errs = append(errs, s.gcOne(ctx, l.ContainerID, l.IfName, ""))
	}
	ports, err := s.sw.Ports(ctx, s.cfg.Bridge)
	if err != nil {
		errs = append(errs, fmt.Errorf("list ports of %s: %w", s.cfg.Bridge, err))
	}
	for _, pi := range ports {
		id := pi.ExternalIDs[ovsdb.ExternalIDSandbox]
		if id == "" || validID[id] || seen[pi.Name] {
			continue
		}
		errs = append(errs, s.gcOne(ctx, id, "", pi.Name)) // a port without a lease
	}
	if err := errors.Join(errs...); err != nil {
		return types.NewError(types.ErrTryAgainLater, "ovs-sdn: GC incomplete; it will be retried", err.Error())
	}
	return nil
}

// gcOne detaches one stale attachment known by its lease (ifName set) or
// by its port only (portName set).
func (s *Server) gcOne(ctx context.Context, containerID, ifName, portName string) error {
	unlock, ok := s.locks.tryLock(containerID)
	if !ok {
		return nil
	}
	defer unlock()
	p := s.knownPort(ctx, containerID, ifName)
	if portName != "" {
		p.PortName = portName
		if ports, err := s.sw.Ports(ctx, s.cfg.Bridge); err == nil {
			for _, pi := range ports {
				if pi.Name == portName {
					fillFromPort(&p, pi)
				}
			}
		}
	}
	klog.InfoS("CNI GC: releasing stale attachment", "container", containerID, "ifname", ifName,
		"port", p.PortName, "ip", p.IP, "pod", p.Namespace+"/"+p.Name)
	if ifName == "" {
		// Port only: nothing leased under this container ID to release
		// beyond what Release("", …) would match, so skip the lease step.
		return s.detachPortOnly(ctx, p)
	}
	return s.detach(ctx, p, containerID, ifName)
}

func (s *Server) detachPortOnly(ctx context.Context, p PodPort) error {
	var errs []error
	if p.Namespace != "" && p.Name != "" {
		errs = append(errs, s.cfg.PodNetwork.PodDeleted(ctx, p))
	}
	errs = append(errs, s.sw.DeletePort(ctx, s.cfg.Bridge, p.PortName), deleteVeth(s.hostNS, p.PortName))
	return errors.Join(errs...)
}
