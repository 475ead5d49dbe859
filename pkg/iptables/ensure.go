package iptables

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	goipt "github.com/coreos/go-iptables/iptables"
	"k8s.io/klog/v2"
)

// Interface is the part of go-iptables' *IPTables the node uses. It is the seam for the
// map-backed fake in tests; *goipt.IPTables satisfies it.
type Interface interface {
	ChainExists(table, chain string) (bool, error)
	NewChain(table, chain string) error
	ClearChain(table, chain string) error
	ClearAndDeleteChain(table, chain string) error
	List(table, chain string) ([]string, error)
	Exists(table, chain string, rulespec ...string) (bool, error)
	Insert(table, chain string, pos int, rulespec ...string) error
	Append(table, chain string, rulespec ...string) error
	DeleteIfExists(table, chain string, rulespec ...string) error
}

// New returns the real IPv4 iptables, waiting for the xtables lock like kube-proxy does.
func New() (Interface, error) {
	ipt, err := goipt.NewWithProtocol(goipt.ProtocolIPv4)
	if err != nil {
		return nil, fmt.Errorf("iptables: %w", err)
	}
	return ipt, nil
}

// Ensure converges the kernel to chains. It is idempotent and only writes what differs: a
// chain whose rules already equal the desired ones is not touched, so a periodic Ensure does
// not disturb traffic. A chain with unexpected rules is flushed and refilled (as OpenShift
// SDN does); jumps into our chains are prepended to their parents when missing. It is not
// atomic across chains; every error names the table and chain, and Ensure continues with the
// other chains so one bad chain does not block the rest.
func Ensure(ipt Interface, chains []Chain) error {
	var errs []error
	// Create every chain before filling any: rules jump between our chains.
	for _, c := range chains {
		if err := createChain(ipt, c); err != nil {
			errs = append(errs, fmt.Errorf("iptables %s/%s: %w", c.Table, c.Name, err))
		}
	}
	for _, c := range chains {
		if err := ensureChain(ipt, c); err != nil {
			errs = append(errs, fmt.Errorf("iptables %s/%s: %w", c.Table, c.Name, err))
		}
	}
	for _, c := range chains {
		for _, j := range c.Jumps {
			if err := ensureJump(ipt, c, j); err != nil {
				errs = append(errs, fmt.Errorf("iptables %s/%s jump to %s: %w", c.Table, j.Parent, c.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Remove deletes the jumps and chains (idempotent; missing chains are not an error).
func Remove(ipt Interface, chains []Chain) error {
	var errs []error
	for _, c := range chains {
		for _, j := range c.Jumps {
			if err := ipt.DeleteIfExists(c.Table, j.Parent, jumpSpec(c, j)...); err != nil {
				errs = append(errs, fmt.Errorf("iptables %s/%s: %w", c.Table, j.Parent, err))
			}
		}
	}
	for _, c := range chains {
		exists, err := ipt.ChainExists(c.Table, c.Name)
		if err == nil && exists {
			err = ipt.ClearAndDeleteChain(c.Table, c.Name)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("iptables %s/%s: %w", c.Table, c.Name, err))
		}
	}
	return errors.Join(errs...)
}

func createChain(ipt Interface, c Chain) error {
	exists, err := ipt.ChainExists(c.Table, c.Name)
	if err != nil || exists {
		return err
	}
	return ipt.NewChain(c.Table, c.Name)
}

func ensureChain(ipt Interface, c Chain) error {
	if ok, err := chainMatches(ipt, c); err != nil || ok {
		return err
	}
	if err := ipt.ClearChain(c.Table, c.Name); err != nil {
		return err
	}
	for _, r := range c.Rules {
		if err := ipt.Append(c.Table, c.Name, r...); err != nil {
			return fmt.Errorf("appending %q: %w", strings.Join(r, " "), err)
		}
	}
	return nil
}

// chainMatches reports whether the chain holds exactly the desired rules: the same count and
// every desired rule present (iptables itself canonicalizes the text, so rules are compared
// through Exists rather than as strings).
func chainMatches(ipt Interface, c Chain) (bool, error) {
	lines, err := ipt.List(c.Table, c.Name)
	if err != nil {
		return false, err
	}
	n := 0
	for _, l := range lines {
		if strings.HasPrefix(l, "-A ") {
			n++
		}
	}
	if n != len(c.Rules) {
		return false, nil
	}
	for _, r := range c.Rules {
		if ok, err := ipt.Exists(c.Table, c.Name, r...); err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

func ensureJump(ipt Interface, c Chain, j Jump) error {
	spec := jumpSpec(c, j)
	ok, err := ipt.Exists(c.Table, j.Parent, spec...)
	if err != nil || ok {
		return err
	}
	return ipt.Insert(c.Table, j.Parent, 1, spec...)
}

func jumpSpec(c Chain, j Jump) []string {
	return append(append([]string{}, j.Args...), "-j", c.Name)
}

// CanaryMissing reports whether any canary chain is gone (someone flushed our tables).
func CanaryMissing(ipt Interface) (bool, error) {
	for _, t := range CanaryTables {
		ok, err := ipt.ChainExists(t, ChainCanary)
		if err != nil {
			return false, fmt.Errorf("iptables %s/%s: %w", t, ChainCanary, err)
		}
		if !ok {
			return true, nil
		}
	}
	return false, nil
}

// Monitor re-ensures chains whenever a canary chain disappears, checking every period until
// ctx is done. resynced, if not nil, is called after every re-ensure (for metrics and tests).
func Monitor(ctx context.Context, ipt Interface, chains []Chain, period time.Duration, resynced func(error)) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		missing, err := CanaryMissing(ipt)
		if err != nil {
			klog.ErrorS(err, "Checking iptables canary chains")
			continue
		}
		if !missing {
			continue
		}
		klog.InfoS("iptables canary chain missing; re-ensuring SDN chains")
		err = Ensure(ipt, chains)
		if err != nil {
			klog.ErrorS(err, "Re-ensuring iptables chains")
		}
		if resynced != nil {
			resynced(err)
		}
	}
}
