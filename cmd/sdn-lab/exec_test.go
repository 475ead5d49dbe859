package main

import (
	"slices"
	"testing"

	"github.com/ovs-sdn/ovs-sdn/pkg/lab"
)

func TestSdnctlArgs(t *testing.T) {
	acc := lab.NodeAccess{Ofctl: "unix:/r/p/node1/br0.mgmt", DBSock: "unix:/r/p/node1/db.sock", OVSRunDirRoot: "/r/p"}
	for _, tc := range []struct {
		argv, want []string
	}{
		{[]string{"/x/sdnctl", "trace", "a/b", "c/d", "--port", "8080"},
			[]string{"/x/sdnctl", "trace", "a/b", "c/d", "--port", "8080", "--ovs-rundir-root", "/r/p"}},
		{[]string{"/x/sdnctl", "trace", "a/b", "c/d", "--ovs-rundir-root=/mine"},
			[]string{"/x/sdnctl", "trace", "a/b", "c/d", "--ovs-rundir-root=/mine"}},
		{[]string{"/x/sdnctl", "flows", "--table", "80"},
			[]string{"/x/sdnctl", "flows", "--table", "80", "--ofctl-target", "unix:/r/p/node1/br0.mgmt", "--ovsdb", "unix:/r/p/node1/db.sock"}},
		{[]string{"/x/sdnctl", "flows", "--ovsdb", "unix:/o"},
			[]string{"/x/sdnctl", "flows", "--ovsdb", "unix:/o", "--ofctl-target", "unix:/r/p/node1/br0.mgmt"}},
		{[]string{"/x/sdnctl", "get", "hostsubnets"}, []string{"/x/sdnctl", "get", "hostsubnets"}},
	} {
		if got := sdnctlArgs(tc.argv, acc); !slices.Equal(got, tc.want) {
			t.Errorf("sdnctlArgs(%q)\n got %q\nwant %q", tc.argv, got, tc.want)
		}
	}
}

func TestSplitStateDir(t *testing.T) {
	for _, tc := range []struct {
		args []string
		dir  string
		rest []string
	}{
		{[]string{"a/b", "c/d", "--port", "80"}, lab.DefaultStateDir, []string{"a/b", "c/d", "--port", "80"}},
		{[]string{"--state-dir", "/run/x", "a/b", "c/d"}, "/run/x", []string{"a/b", "c/d"}},
		{[]string{"a/b", "--state-dir=/run/y", "c/d", "--protocol", "udp"}, "/run/y", []string{"a/b", "c/d", "--protocol", "udp"}},
		{[]string{"a/b", "--", "--state-dir=/z"}, lab.DefaultStateDir, []string{"a/b", "--", "--state-dir=/z"}},
	} {
		dir, rest, err := splitStateDir(tc.args)
		if err != nil || dir != tc.dir || !slices.Equal(rest, tc.rest) {
			t.Errorf("splitStateDir(%q) = %q, %q, %v; want %q, %q", tc.args, dir, rest, err, tc.dir, tc.rest)
		}
	}
	if _, _, err := splitStateDir([]string{"a/b", "--state-dir"}); err == nil {
		t.Error("--state-dir without a value accepted")
	}
}
