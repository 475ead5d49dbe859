package ovs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"time"
)

// Runner executes ovs-ofctl. It is the seam that lets OfctlBridge reach a
// bridge in another network namespace or through another binary.
type Runner interface {
	// RunOfctl runs `ovs-ofctl args…` with stdin and returns its stdout. A
	// non-zero exit is an error that includes stderr.
	RunOfctl(ctx context.Context, stdin []byte, args ...string) ([]byte, error)
}

// ExecRunner runs ovs-ofctl as a child process: Prefix… Path args…, e.g.
// Prefix ["ip", "netns", "exec", "ns1"]. The zero value runs "ovs-ofctl"
// from PATH.
type ExecRunner struct {
	Path   string   // default "ovs-ofctl"
	Prefix []string // optional wrapper command
}

// RunOfctl implements Runner.
func (r ExecRunner) RunOfctl(ctx context.Context, stdin []byte, args ...string) ([]byte, error) {
	path := r.Path
	if path == "" {
		path = "ovs-ofctl"
	}
	argv := append(append(append([]string{}, r.Prefix...), path), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(stdin), &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// Retry is the retry policy for one ovs-ofctl operation: Attempts tries,
// sleeping Initial, Initial*Factor, … in between.
type Retry struct {
	Attempts int
	Initial  time.Duration
	Factor   float64
}

// DefaultRetry tries 4 times over about 40 ms, enough to ride over a
// vswitchd that is briefly busy, short enough not to stall a sync.
var DefaultRetry = Retry{Attempts: 4, Initial: 10 * time.Millisecond, Factor: 1.25}

// OfctlBridge implements Bridge with `ovs-ofctl -O OpenFlow13`.
type OfctlBridge struct {
	// Name is the ovs-ofctl target: a bridge name ("br0") or a management
	// socket ("unix:/run/openvswitch/br0.mgmt").
	Name string
	// Runner executes ovs-ofctl; nil means ExecRunner{}.
	Runner Runner
	// Retry is the retry policy; the zero value means DefaultRetry.
	Retry Retry
	// OnOperation, if set, is called after every attempt with the operation
	// ("bundle", "replace" — the bundle of a full sync —, "dump-flows",
	// "dump-groups"), its duration and its error, for metrics. It must not
	// block.
	OnOperation func(op string, d time.Duration, err error)
}

var _ Bridge = (*OfctlBridge)(nil)

// Bundle implements Bridge with `ovs-ofctl bundle <br> -`, one line per
// change, in the order Bundle documents.
func (b *OfctlBridge) Bundle(ctx context.Context, changes []Change) error {
	ordered, err := orderChanges(changes)
	if err != nil {
		return fmt.Errorf("bundle on %s: %w", b.Name, err)
	}
	return b.bundle(ctx, "bundle", ordered)
}

// bundle sends changes, already ordered, as one bundle; op names it for
// OnOperation. A bundle of flow adds only (the full sync of an empty
// bridge) goes through `--bundle add-flows`, which is as atomic and about
// 10% faster than `bundle` for tens of thousands of flows.
func (b *OfctlBridge) bundle(ctx context.Context, op string, changes []Change) error {
	if len(changes) == 0 {
		return nil
	}
	addOnly := !slices.ContainsFunc(changes, func(c Change) bool { return c.Op != OpAdd })
	var in bytes.Buffer
	in.Grow(len(changes) * 160)
	for _, c := range changes {
		if addOnly {
			in.WriteString(c.Flow.String())
		} else {
			in.WriteString(c.String())
		}
		in.WriteByte('\n')
	}
	args := []string{"bundle", b.Name, "-"}
	if addOnly {
		args = []string{"--bundle", "add-flows", b.Name, "-"}
	}
	if _, err := b.run(ctx, op, in.Bytes(), args...); err != nil {
		return fmt.Errorf("bundle of %d changes on %s: %w", len(changes), b.Name, err)
	}
	return nil
}

// ReplaceFlows implements Bridge: dump-flows, a diff in Go against flows
// (learned flows skipped, groups untouched), then one `ovs-ofctl bundle` of
// only the differences — nothing at all when the bridge is already right.
// The diff is ours rather than `ovs-ofctl replace-flows` so that learned
// flows survive and groups can change in the same bundle (ReplaceAll). The
// bundle text goes through the Runner's stdin, not a temporary file: a full
// sync of a big node writes megabytes, and a file would not be visible to a
// Runner that reaches ovs-ofctl in another mount namespace.
func (b *OfctlBridge) ReplaceFlows(ctx context.Context, flows []Flow) error {
	if err := b.replace(ctx, nil, true, flows); err != nil {
		return fmt.Errorf("replace-flows of %d flows on %s: %w", len(flows), b.Name, err)
	}
	return nil
}

// ReplaceAll implements Bridge like ReplaceFlows, with dump-groups too and
// the group changes in the same bundle.
func (b *OfctlBridge) ReplaceAll(ctx context.Context, groups []GroupEntry, flows []Flow) error {
	if err := b.replace(ctx, groups, false, flows); err != nil {
		return fmt.Errorf("replace of %d groups and %d flows on %s: %w", len(groups), len(flows), b.Name, err)
	}
	return nil
}

func (b *OfctlBridge) replace(ctx context.Context, groups []GroupEntry, keepGroups bool, flows []Flow) error {
	var cur syncState
	if !keepGroups {
		out, err := b.run(ctx, "dump-groups", nil, "dump-groups", b.Name)
		if err != nil {
			return fmt.Errorf("dump-groups: %w", err)
		}
		if cur.groups, err = parseSyncGroups(string(out)); err != nil {
			return err
		}
	}
	out, err := b.run(ctx, "dump-flows", nil, "dump-flows", b.Name)
	if err != nil {
		return fmt.Errorf("dump-flows: %w", err)
	}
	cur.flows = parseSyncDump(string(out))
	changes, err := planReplace(cur, groups, keepGroups, flows)
	if err != nil {
		return err
	}
	return b.bundle(ctx, "replace", changes)
}

// DumpFlows implements Bridge with `ovs-ofctl dump-flows`.
func (b *OfctlBridge) DumpFlows(ctx context.Context, filter Filter) ([]DumpedFlow, error) {
	args := []string{"dump-flows", b.Name}
	if s := filter.String(); s != "" {
		args = append(args, s)
	}
	out, err := b.run(ctx, "dump-flows", nil, args...)
	if err != nil {
		return nil, fmt.Errorf("dump-flows %s %s: %w", b.Name, filter, err)
	}
	flows, err := ParseDump(string(out))
	if err != nil {
		return nil, fmt.Errorf("dump-flows %s %s: %w", b.Name, filter, err)
	}
	return flows, nil
}

// DumpGroups implements Bridge with `ovs-ofctl dump-groups`.
func (b *OfctlBridge) DumpGroups(ctx context.Context) ([]GroupEntry, error) {
	out, err := b.run(ctx, "dump-groups", nil, "dump-groups", b.Name)
	if err != nil {
		return nil, fmt.Errorf("dump-groups %s: %w", b.Name, err)
	}
	groups, err := ParseGroupDump(string(out))
	if err != nil {
		return nil, fmt.Errorf("dump-groups %s: %w", b.Name, err)
	}
	return groups, nil
}

// run executes one ovs-ofctl command with retries.
func (b *OfctlBridge) run(ctx context.Context, op string, stdin []byte, args ...string) ([]byte, error) {
	runner := b.Runner
	if runner == nil {
		runner = ExecRunner{}
	}
	policy := b.Retry
	if policy.Attempts <= 0 {
		policy = DefaultRetry
	}
	args = append([]string{"-O", "OpenFlow13"}, args...)
	delay := policy.Initial
	var err error
	for attempt := 0; attempt < policy.Attempts; attempt++ {
		if attempt > 0 {
			if werr := sleepCtx(ctx, delay); werr != nil {
				return nil, errors.Join(err, werr)
			}
			delay = time.Duration(float64(delay) * policy.Factor)
		}
		start := time.Now()
		var out []byte
		out, err = runner.RunOfctl(ctx, stdin, args...)
		if b.OnOperation != nil {
			b.OnOperation(op, time.Since(start), err)
		}
		if err == nil {
			return out, nil
		}
	}
	return nil, err
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
