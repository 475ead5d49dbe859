package node_test

// ofproto/trace of the integration nodes' bridges, to cross-check the
// in-process tracer (STYLE L10).

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/ovs-sdn/ovs-sdn/pkg/lab/netlab"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// odpToOFPort maps br0's datapath port numbers to OpenFlow ports, from
// `ovs-appctl dpif/show` ("    name ofport/odpport: (type)").
func (n *itNode) odpToOFPort(t *testing.T) map[string]uint32 {
	t.Helper()
	out, err := n.Appctl("dpif/show")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]uint32{}
	inBr0 := false
	for _, line := range strings.Split(out, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasSuffix(trimmed, ":") && !strings.Contains(trimmed, " ") {
			inBr0 = trimmed == netlab.PodBridge+":"
			continue
		}
		f := strings.Fields(trimmed)
		if !inBr0 || len(f) < 2 {
			continue
		}
		of, odp, ok := strings.Cut(strings.TrimSuffix(f[1], ":"), "/")
		if !ok {
			continue
		}
		ofn, err1 := strconv.ParseUint(of, 10, 32)
		if err1 == nil && odp != "" {
			m[odp] = uint32(ofn)
		}
	}
	if len(m) == 0 {
		t.Fatalf("no br0 ports in dpif/show:\n%s", out)
	}
	return m
}

var (
	dpActionsRE = regexp.MustCompile(`(?m)^Datapath actions: (.*)$`)
	setEthRE    = regexp.MustCompile(`set\(eth\([^)]*\)\),`)
	tableLineRE = regexp.MustCompile(`(?m)^\s*(\d+)\. `)
	tnlDstRE    = regexp.MustCompile(`tnl_push\(.*?ipv4\(src=[0-9.]+,dst=([0-9.]+)`)
	vniRE       = regexp.MustCompile(`vxlan\(flags=0x[0-9a-f]+,vni=(0x[0-9a-f]+)\)`)
)

// ofprotoTrace runs `ovs-appctl ofproto/trace br0 <p>` (conntrack resumes
// with the default trk|new, as the in-process tracer assumes) and renders
// the outcome as an ovs.Verdict string: Output(<OpenFlow port>), Tunnel(dst,
// vni) or Drop(<last table>). It also returns the raw trace.
func (n *itNode) ofprotoTrace(t *testing.T, p ovs.Packet, odp map[string]uint32) (string, string) {
	t.Helper()
	spec := []string{fmt.Sprintf("in_port=%d", p.InPort)}
	if p.TunSrc.IsValid() {
		spec = append(spec, "tun_src="+p.TunSrc.String(), "tun_dst="+n.IP.Addr().String(),
			fmt.Sprintf("tun_id=%#x", p.TunID))
	}
	if p.Proto == ovs.ProtoARP {
		spec = append(spec, "arp", "arp_op=1", "dl_dst=ff:ff:ff:ff:ff:ff", "dl_src="+p.SrcMAC.String(),
			"arp_sha="+p.SrcMAC.String(), "arp_spa="+p.Src.String(), "arp_tpa="+p.Dst.String())
	} else {
		spec = append(spec, p.Proto.String(), "nw_src="+p.Src.String(), "nw_dst="+p.Dst.String(), "nw_ttl=64")
		if p.Proto == ovs.ProtoTCP || p.Proto == ovs.ProtoUDP {
			spec = append(spec, fmt.Sprintf("%[1]s_src=40000,%[1]s_dst=%[2]d", p.Proto, p.TpDst))
		}
	}
	out, err := n.Appctl("ofproto/trace", netlab.PodBridge, strings.Join(spec, ","))
	if err != nil {
		t.Fatalf("ofproto/trace %s: %v", strings.Join(spec, ","), err)
	}
	acts := dpActionsRE.FindAllStringSubmatch(out, -1)
	if len(acts) == 0 {
		return "no datapath actions", out
	}
	last := strings.TrimSpace(acts[len(acts)-1][1])
	switch {
	case last == "drop":
		tables := tableLineRE.FindAllStringSubmatch(out, -1)
		if len(tables) == 0 {
			return "Drop(?)", out
		}
		id, _ := strconv.ParseUint(tables[len(tables)-1][1], 10, 8)
		tb, ok := ovs.TableByID(uint8(id))
		if !ok {
			tb = ovs.Table{ID: uint8(id)}
		}
		return "Drop(" + tb.Named() + ")", out
	case strings.Contains(last, "tnl_push("):
		dst, vni := tnlDstRE.FindStringSubmatch(last), vniRE.FindStringSubmatch(last)
		if dst == nil || vni == nil {
			return "Tunnel(?)", out
		}
		v, _ := strconv.ParseUint(vni[1], 0, 32)
		return fmt.Sprintf("Tunnel(%s, %#x)", dst[1], v), out
	}
	// Table 70 sets the pod's MAC (a no-op for most packets, but the trace's
	// synthetic packet has none): an Ethernet rewrite before the output
	// does not change the verdict.
	// Likewise a commit to conntrack before the output (IngressCommit, 81).
	port := strings.ReplaceAll(setEthRE.ReplaceAllString(last, ""), "ct(commit),", "")
	if of, ok := odp[port]; ok {
		return fmt.Sprintf("Output(%d)", of), out
	}
	return "datapath actions " + last, out
}
