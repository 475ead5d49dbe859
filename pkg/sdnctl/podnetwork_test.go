package sdnctl

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	kubefake "k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	networkfake "github.com/ovs-sdn/ovs-sdn/pkg/client/clientset/versioned/fake"
)

// fakeController stands in for the sdn-controller in unit tests: it is called on every
// NetNamespace update, before the fake stores the object, and may rewrite it.
type fakeController func(tracker clienttesting.ObjectTracker, netns *networkv1.NetNamespace)

// applyingController applies change requests as the real controller does in multitenant
// mode; isolate hands out 100, 101, ….
func applyingController() fakeController {
	next := uint32(100)
	return func(tracker clienttesting.ObjectTracker, netns *networkv1.NetNamespace) {
		req, ok := netns.Annotations[networkv1.ChangePodNetworkAnnotation]
		if !ok {
			return
		}
		delete(netns.Annotations, networkv1.ChangePodNetworkAnnotation)
		switch {
		case req == "global":
			netns.NetID = 0
		case req == "isolate":
			netns.NetID, next = next, next+1
		case strings.HasPrefix(req, "join:"):
			obj, err := tracker.Get(networkv1.SchemeGroupVersion.WithResource("netnamespaces"), "", strings.TrimPrefix(req, "join:"))
			if err == nil {
				netns.NetID = obj.(*networkv1.NetNamespace).NetID
			}
		}
	}
}

// refusingController removes every request without renumbering, as the controller does in
// networkpolicy mode or for a request it cannot serve.
func refusingController(_ clienttesting.ObjectTracker, netns *networkv1.NetNamespace) {
	delete(netns.Annotations, networkv1.ChangePodNetworkAnnotation)
}

// podNetworkFixture is a small cluster: projects default (0), p1 (11), p2 (11, joined to p1),
// p3 (12), p2 and p3 labelled team=x.
type podNetworkFixture struct {
	kube    *kubefake.Clientset
	network *networkfake.Clientset
}

func newPodNetworkFixture(t *testing.T, plugin string, ctrl fakeController) *podNetworkFixture {
	t.Helper()
	projects := []struct {
		name  string
		netid uint32
		team  string
	}{{"default", 0, ""}, {"p1", 11, ""}, {"p2", 11, "x"}, {"p3", 12, "x"}}
	var kubeObjs, netObjs []runtime.Object
	for _, p := range projects {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: p.name}}
		if p.team != "" {
			ns.Labels = map[string]string{"team": p.team}
		}
		kubeObjs = append(kubeObjs, ns)
		netObjs = append(netObjs, netNamespace(p.name, p.netid))
	}
	if plugin != "" {
		cn := fixtures()["clusternetworks"][0].(*networkv1.ClusterNetwork).DeepCopy()
		cn.PluginName = plugin
		netObjs = append(netObjs, cn)
	}
	f := &podNetworkFixture{kube: kubefake.NewSimpleClientset(kubeObjs...), network: networkfake.NewSimpleClientset(netObjs...)}
	if ctrl != nil {
		tracker := f.network.Tracker()
		f.network.PrependReactor("update", "netnamespaces", func(a clienttesting.Action) (bool, runtime.Object, error) {
			ctrl(tracker, a.(clienttesting.UpdateAction).GetObject().(*networkv1.NetNamespace))
			return false, nil, nil
		})
	}
	return f
}

func (f *podNetworkFixture) run(t *testing.T, args ...string) runResult {
	t.Helper()
	opts := Options{
		Clients:           &Clients{Kube: f.kube, Network: f.network},
		PodNetworkBackoff: wait.Backoff{Duration: time.Millisecond, Factor: 1, Steps: 3},
	}
	return runSdnctl(t, opts, append([]string{"pod-network"}, args...)...)
}

// netids returns every project's NETID and whether it still carries a request.
func (f *podNetworkFixture) netids(t *testing.T) map[string]string {
	t.Helper()
	list, err := f.network.Tracker().List(networkv1.SchemeGroupVersion.WithResource("netnamespaces"),
		networkv1.SchemeGroupVersion.WithKind("NetNamespace"), "")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, n := range list.(*networkv1.NetNamespaceList).Items {
		out[n.Name] = fmt.Sprint(n.NetID)
		if req, ok := n.Annotations[networkv1.ChangePodNetworkAnnotation]; ok {
			out[n.Name] += " pending " + req
		}
	}
	return out
}

// updates counts NetNamespace updates, to prove that refused commands changed nothing.
func (f *podNetworkFixture) updates() int {
	n := 0
	for _, a := range f.network.Actions() {
		if a.GetVerb() == "update" {
			n++
		}
	}
	return n
}

func TestPodNetwork(t *testing.T) {
	const mt, np = networkv1.MultiTenantPluginName, networkv1.NetworkPolicyPluginName
	initial := map[string]string{"default": "0", "p1": "11", "p2": "11", "p3": "12"}
	with := func(changes map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range initial {
			out[k] = v
		}
		for k, v := range changes {
			out[k] = v
		}
		return out
	}
	for _, tc := range []struct {
		name       string
		plugin     string
		controller fakeController
		args       []string
		want       runResult
		wantNetIDs map[string]string
	}{{
		name: "join", plugin: mt, controller: applyingController(),
		args: []string{"join-projects", "--to=p3", "p1", "p2", "p3"},
		want: runResult{stdout: "netnamespace.network.openshift.io/p1 joined p3 (netid 12)\n" +
			"netnamespace.network.openshift.io/p2 joined p3 (netid 12)\n"},
		wantNetIDs: with(map[string]string{"p1": "12", "p2": "12"}),
	}, {
		name: "isolate by selector", plugin: mt, controller: applyingController(),
		args: []string{"isolate-projects", "--selector", "team=x"},
		want: runResult{stdout: "netnamespace.network.openshift.io/p2 isolated (netid 100)\n" +
			"netnamespace.network.openshift.io/p3 isolated (netid 101)\n"},
		wantNetIDs: with(map[string]string{"p2": "100", "p3": "101"}),
	}, {
		name: "make global", plugin: mt, controller: applyingController(),
		args:       []string{"make-projects-global", "p3"},
		want:       runResult{stdout: "netnamespace.network.openshift.io/p3 made global (netid 0)\n"},
		wantNetIDs: with(map[string]string{"p3": "0"}),
	}, {
		name: "isolate default refused client-side, others applied", plugin: mt, controller: applyingController(),
		args: []string{"isolate-projects", "default", "p2"},
		want: runResult{stdout: "netnamespace.network.openshift.io/p2 isolated (netid 100)\n",
			stderr: "error: network isolation for project \"default\" is forbidden\n", code: ExitFailure},
		wantNetIDs: with(map[string]string{"p2": "100"}),
	}, {
		name: "refusal detected", plugin: mt, controller: refusingController,
		args: []string{"isolate-projects", "p2", "p3"},
		want: runResult{stdout: "netnamespace.network.openshift.io/p3 isolated (netid 12)\n",
			stderr: `error: network isolation for project "p2" failed, error: the network plugin removed the "isolate" request without applying it: netid 11 is still shared with "p1"` + "\n",
			code:   ExitFailure},
		wantNetIDs: initial,
	}, {
		name: "controller not running", plugin: mt,
		args: []string{"make-projects-global", "p1", "p2"},
		want: runResult{stderr: `removing network isolation for project "p1" failed, error: timed out waiting for the network plugin to apply "global" to project "p1"; is the sdn-controller running?` + "\n" +
			`removing network isolation for project "p2" failed, error: timed out waiting for the network plugin to apply "global" to project "p2"; is the sdn-controller running?` + "\n",
			code: ExitFailure},
		wantNetIDs: with(map[string]string{"p1": "11 pending global", "p2": "11 pending global"}),
	}, {
		name: "networkpolicy mode", plugin: np, controller: applyingController(),
		args:       []string{"isolate-projects", "p1"},
		want:       runResult{stderr: `error: using plugin: "redhat/openshift-ovs-networkpolicy", managing pod network is only supported for openshift multitenant network plugin` + "\n", code: ExitFailure},
		wantNetIDs: initial,
	}, {
		name: "no ClusterNetwork", controller: applyingController(),
		args:       []string{"isolate-projects", "p1"},
		want:       runResult{stderr: "error: managing pod network is only supported for openshift multitenant network plugin\n", code: ExitFailure},
		wantNetIDs: initial,
	}, {
		name: "projects not found", plugin: mt, controller: applyingController(),
		args:       []string{"join-projects", "--to=p1", "zz", "p2", "nope", "zz"},
		want:       runResult{stderr: "error: projects nope, zz not found\n", code: ExitFailure},
		wantNetIDs: initial,
	}, {
		name: "join target not found", plugin: mt, controller: applyingController(),
		args:       []string{"join-projects", "--to=nope", "p2"},
		want:       runResult{stderr: "error: projects nope not found\n", code: ExitFailure},
		wantNetIDs: initial,
	}, {
		name: "selector matches nothing", plugin: mt, controller: applyingController(),
		args:       []string{"make-projects-global", "--selector=team=none"},
		want:       runResult{stderr: "error: no projects found\n", code: ExitFailure},
		wantNetIDs: initial,
	}, {
		name: "usage errors together", plugin: np,
		args: []string{"join-projects", "--selector=team=x", "p1"},
		want: runResult{stderr: "either specify --selector=<project_selector> or projects but not both\n" +
			"must provide --to=<project_name>\n" +
			`using plugin: "redhat/openshift-ovs-networkpolicy", managing pod network is only supported for openshift multitenant network plugin` + "\n",
			code: ExitFailure},
		wantNetIDs: initial,
	}, {
		name: "nothing selected", plugin: mt,
		args:       []string{"isolate-projects"},
		want:       runResult{stderr: "error: must provide --selector=<project_selector> or projects\n", code: ExitFailure},
		wantNetIDs: initial,
	}, {
		name: "bad selector", plugin: mt,
		args:       []string{"isolate-projects", "--selector=a=(b"},
		want:       runResult{stderr: "error: --selector=<project_selector> must be a valid label selector\n", code: ExitFailure},
		wantNetIDs: initial,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			f := newPodNetworkFixture(t, tc.plugin, tc.controller)
			got := f.run(t, tc.args...)
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(runResult{})); diff != "" {
				t.Errorf("sdnctl pod-network %v (-want +got):\n%s", tc.args, diff)
			}
			if diff := cmp.Diff(tc.wantNetIDs, f.netids(t)); diff != "" {
				t.Errorf("NETIDs (-want +got):\n%s", diff)
			}
			if tc.want.code != ExitOK && tc.want.stdout == "" && !strings.Contains(tc.want.stderr, "timed out") && f.updates() != 0 {
				t.Errorf("a refused command updated %d NetNamespaces", f.updates())
			}
		})
	}
}

// TestPodNetworkRetriesConflicts checks that the annotation is written even when another
// writer (the controller, a node) updates the NetNamespace in between.
func TestPodNetworkRetriesConflicts(t *testing.T) {
	f := newPodNetworkFixture(t, networkv1.MultiTenantPluginName, applyingController())
	conflicts := 2
	f.network.PrependReactor("update", "netnamespaces", func(a clienttesting.Action) (bool, runtime.Object, error) {
		if conflicts == 0 {
			return false, nil, nil
		}
		conflicts--
		name := a.(clienttesting.UpdateAction).GetObject().(*networkv1.NetNamespace).Name
		return true, nil, apierrors.NewConflict(networkv1.Resource("netnamespaces"), name, errors.New("the object has been modified"))
	})
	got := f.run(t, "make-projects-global", "p1")
	if got.code != ExitOK || got.stdout != "netnamespace.network.openshift.io/p1 made global (netid 0)\n" {
		t.Errorf("got %+v", got)
	}
	if conflicts != 0 {
		t.Errorf("%d conflicts left unconsumed", conflicts)
	}
}
