package sdnctl

import (
	"context"
	"errors"
	"fmt"
	"io"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
)

// podNetworkApplier requests one change for a set of projects and checks its outcome.
//
// It works in three phases so N projects take one wait, not N: annotate every NetNamespace;
// poll until the controller has removed every annotation (the controller removes it both
// when it applies a change and when it refuses one); then compare each NETID with what the
// change asked for, which tells an applied change from a refused one.
type podNetworkApplier struct {
	clients *Clients
	change  podNetworkChange
	backoff wait.Backoff
	out     io.Writer
}

func (a *podNetworkApplier) apply(ctx context.Context, projects []string) error {
	var errs []error
	var pending []string
	for _, p := range projects {
		if err := a.skip(p); err != nil {
			errs = append(errs, err)
			continue
		}
		if p == a.change.to {
			continue // joining a project to itself is a no-op, as in oc
		}
		if err := a.annotate(ctx, p); err != nil {
			errs = append(errs, a.change.failed(p, err))
			continue
		}
		pending = append(pending, p)
	}
	settled, waitErrs := a.wait(ctx, pending)
	errs = append(errs, waitErrs...)
	for _, p := range pending {
		netns, ok := settled[p]
		if !ok {
			continue
		}
		if err := a.verify(ctx, netns); err != nil {
			errs = append(errs, a.change.failed(p, err))
			continue
		}
		fmt.Fprintln(a.out, a.change.done(p, netns.NetID))
	}
	return utilerrors.NewAggregate(errs)
}

// skip refuses what oc refuses client-side: the default project keeps the global VNID 0.
func (a *podNetworkApplier) skip(project string) error {
	if a.change.verb == "isolate" && project == metav1.NamespaceDefault {
		return fmt.Errorf("network isolation for project %q is forbidden", project)
	}
	return nil
}

// annotate sets the change-network annotation on the project's NetNamespace, retrying when
// another writer (usually the controller) updated it in between.
func (a *podNetworkApplier) annotate(ctx context.Context, project string) error {
	client := a.clients.Network.NetworkV1().NetNamespaces()
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		netns, err := client.Get(ctx, project, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if netns.Annotations == nil {
			netns.Annotations = map[string]string{}
		}
		netns.Annotations[networkv1.ChangePodNetworkAnnotation] = a.change.annotation()
		_, err = client.Update(ctx, netns, metav1.UpdateOptions{})
		return err
	})
}

// wait polls the pending NetNamespaces with the backoff until none carries the annotation.
// It returns the settled objects by name and an error for each project that did not settle.
func (a *podNetworkApplier) wait(ctx context.Context, pending []string) (map[string]*networkv1.NetNamespace, []error) {
	settled := map[string]*networkv1.NetNamespace{}
	failed := map[string]error{}
	client := a.clients.Network.NetworkV1().NetNamespaces()
	poll := func(ctx context.Context) (bool, error) {
		for _, p := range pending {
			if settled[p] != nil || failed[p] != nil {
				continue
			}
			netns, err := client.Get(ctx, p, metav1.GetOptions{})
			switch {
			case err != nil:
				failed[p] = err
			case netns.Annotations[networkv1.ChangePodNetworkAnnotation] == "":
				settled[p] = netns
			}
		}
		return len(settled)+len(failed) == len(pending), nil
	}
	err := wait.ExponentialBackoffWithContext(ctx, a.backoff, poll)
	var errs []error
	for _, p := range pending {
		switch {
		case failed[p] != nil:
			errs = append(errs, a.change.failed(p, failed[p]))
		case settled[p] == nil:
			errs = append(errs, a.change.failed(p, a.timeoutError(ctx, p, err)))
		}
	}
	return settled, errs
}

func (a *podNetworkApplier) timeoutError(ctx context.Context, project string, waitErr error) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if waitErr != nil && !wait.Interrupted(waitErr) {
		return waitErr
	}
	return fmt.Errorf("timed out waiting for the network plugin to apply %q to project %q; is the sdn-controller running?",
		a.change.annotation(), project)
}

// verify checks that the controller applied the change rather than refused it: global gives
// NETID 0, join gives the target's NETID, isolate gives a NETID no other project uses.
func (a *podNetworkApplier) verify(ctx context.Context, netns *networkv1.NetNamespace) error {
	client := a.clients.Network.NetworkV1().NetNamespaces()
	refused := func(why string, args ...interface{}) error {
		return fmt.Errorf("the network plugin removed the %q request without applying it: %s",
			a.change.annotation(), fmt.Sprintf(why, args...))
	}
	switch a.change.verb {
	case "global":
		if netns.NetID != 0 {
			return refused("netid is %d, not 0", netns.NetID)
		}
	case "join":
		target, err := client.Get(ctx, a.change.to, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("reading NetNamespace %q: %w", a.change.to, err)
		}
		if netns.NetID != target.NetID {
			return refused("netid is %d, %q has %d", netns.NetID, a.change.to, target.NetID)
		}
	case "isolate":
		return a.verifyUnique(ctx, netns, refused)
	default:
		return errors.New("unknown pod network change " + a.change.verb)
	}
	return nil
}

func (a *podNetworkApplier) verifyUnique(ctx context.Context, netns *networkv1.NetNamespace, refused func(string, ...interface{}) error) error {
	if netns.NetID == 0 {
		return refused("netid is still 0 (global)")
	}
	list, err := a.clients.Network.NetworkV1().NetNamespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing NetNamespaces: %w", err)
	}
	for _, other := range list.Items {
		if other.Name != netns.Name && other.NetID == netns.NetID {
			return refused("netid %d is still shared with %q", netns.NetID, other.Name)
		}
	}
	return nil
}
