package lab

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
)

// TestUpDown brings the control-plane lab up and down and checks that it
// allocated what it should and left nothing behind.
func TestUpDown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and kube-apiserver")
	}
	dir := filepath.Join(t.TempDir(), "lab")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l, err := Up(ctx, Config{Nodes: 2, PluginName: networkv1.MultiTenantPluginName, StateDir: dir, Demo: true})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = l.Close()
		}
	})
	hs, err := l.Network.NetworkV1().HostSubnets().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(hs.Items) != 2 || hs.Items[0].Subnet == hs.Items[1].Subnet {
		t.Fatalf("want 2 HostSubnets with distinct subnets, got %+v", hs.Items)
	}
	p1, err := l.Network.NetworkV1().NetNamespaces().Get(ctx, "proj1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := l.Network.NetworkV1().NetNamespaces().Get(ctx, "proj2", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p1.NetID == p2.NetID || p1.NetID < 10 {
		t.Errorf("proj1 netid %d, proj2 netid %d: want distinct allocated VNIDs", p1.NetID, p2.NetID)
	}
	if _, ok := runningPID(dir); !ok {
		t.Errorf("no live pidfile in %s while the lab is up", dir)
	}
	apiserverLog := filepath.Join(dir, "control-plane")
	closed = true
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("state dir %s still exists after Close (err=%v)", dir, err)
	}
	out, _ := exec.Command("pgrep", "-f", apiserverLog).Output()
	if len(out) > 0 {
		t.Errorf("processes of the lab still running after Close: %s", out)
	}
	if err := Down(dir, time.Second); err != nil {
		t.Errorf("Down of a stopped lab: %v", err)
	}
}
