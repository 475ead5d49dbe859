package e2e

import (
	"net/netip"
	"testing"
)

// TestMentionsPod: the leak check finds a pod address in every form the
// flows carry it, and not inside a longer address or value.
func TestMentionsPod(t *testing.T) {
	ip := netip.MustParseAddr("10.128.0.5") // reg3 value 0xa800005
	for line, want := range map[string]bool{
		"table=20, priority=100,ip,in_port=3,nw_src=10.128.0.5 actions=goto_table:27":                 true,
		"table=70, priority=100,ip,nw_dst=10.128.0.5 actions=load:0xa->NXM_NX_REG1[]":                 true,
		"table=80, priority=100,ip,reg1=0xa,reg3=0xa800005 actions=output:NXM_NX_REG2[]":              true,
		"table=120, priority=100,reg0=0xa actions=load:0xa800005->NXM_NX_REG3[],resubmit(,80)":        true,
		"table=80, priority=100,ip,reg1=0xa,reg3=0xa8000050 actions=output:NXM_NX_REG2[]":             false,
		"table=70, priority=100,ip,nw_dst=10.128.0.55 actions=goto_table:80":                          false,
		"table=120, priority=100,reg0=0xa actions=load:0xa8000051->NXM_NX_REG3[],resubmit(,80)":       false,
		"table=90, priority=100,ip,nw_dst=10.128.2.0/23 actions=set_field:10.0.0.2->tun_dst,output:1": false,
	} {
		if got := mentionsPod(line, ip); got != want {
			t.Errorf("mentionsPod(%q) = %v, want %v", line, got, want)
		}
	}
}
