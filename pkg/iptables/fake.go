package iptables

import (
	"fmt"
	"sort"
	"strings"
	"sync"
)

// Fake is a map-backed Interface for unit tests. Rules are compared as their joined text, so
// it does not canonicalize like iptables does; chains start with the built-in ones of each
// table. Writes counts every mutating call, so tests can assert that a converged Ensure
// writes nothing. Safe for concurrent use.
type Fake struct {
	mu     sync.Mutex
	chains map[string][]string // "table/chain" → rules
	Writes int
}

var builtinChains = map[string][]string{
	TableFilter: {"INPUT", "FORWARD", "OUTPUT"},
	TableNAT:    {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
	TableRaw:    {"PREROUTING", "OUTPUT"},
	TableMangle: {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"},
}

// NewFake returns a Fake holding only the built-in chains.
func NewFake() *Fake {
	f := &Fake{chains: map[string][]string{}}
	for t, cs := range builtinChains {
		for _, c := range cs {
			f.chains[t+"/"+c] = nil
		}
	}
	return f
}

func (f *Fake) rules(table, chain string) ([]string, error) {
	r, ok := f.chains[table+"/"+chain]
	if !ok {
		return nil, fmt.Errorf("chain %s/%s does not exist", table, chain)
	}
	return r, nil
}

// ChainExists implements Interface.
func (f *Fake) ChainExists(table, chain string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.chains[table+"/"+chain]
	return ok, nil
}

// NewChain implements Interface.
func (f *Fake) NewChain(table, chain string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.chains[table+"/"+chain]; ok {
		return fmt.Errorf("chain %s/%s already exists", table, chain)
	}
	f.Writes++
	f.chains[table+"/"+chain] = nil
	return nil
}

// ClearChain implements Interface (creating the chain if missing, like go-iptables).
func (f *Fake) ClearChain(table, chain string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Writes++
	f.chains[table+"/"+chain] = nil
	return nil
}

// ClearAndDeleteChain implements Interface.
func (f *Fake) ClearAndDeleteChain(table, chain string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Writes++
	delete(f.chains, table+"/"+chain)
	return nil
}

// DeleteChain removes a chain without bookkeeping; tests use it to simulate a flush.
func (f *Fake) DeleteChain(table, chain string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.chains, table+"/"+chain)
}

// List implements Interface in iptables -S form.
func (f *Fake) List(table, chain string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, err := f.rules(table, chain)
	if err != nil {
		return nil, err
	}
	out := []string{"-N " + chain}
	for _, x := range r {
		out = append(out, "-A "+chain+" "+x)
	}
	return out, nil
}

// Exists implements Interface.
func (f *Fake) Exists(table, chain string, rulespec ...string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, err := f.rules(table, chain)
	if err != nil {
		return false, err
	}
	want := strings.Join(rulespec, " ")
	for _, x := range r {
		if x == want {
			return true, nil
		}
	}
	return false, nil
}

// checkTarget rejects a jump to one of our chains that does not exist, as iptables does.
func (f *Fake) checkTarget(table string, rulespec []string) error {
	for i := 0; i+1 < len(rulespec); i++ {
		if rulespec[i] != "-j" || !strings.HasPrefix(rulespec[i+1], "SDN-") {
			continue
		}
		if _, ok := f.chains[table+"/"+rulespec[i+1]]; !ok {
			return fmt.Errorf("chain '%s' does not exist", rulespec[i+1])
		}
	}
	return nil
}

// Insert implements Interface (pos is 1-based).
func (f *Fake) Insert(table, chain string, pos int, rulespec ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, err := f.rules(table, chain)
	if err != nil {
		return err
	}
	if err := f.checkTarget(table, rulespec); err != nil {
		return err
	}
	if pos < 1 || pos > len(r)+1 {
		return fmt.Errorf("index %d out of range in %s/%s", pos, table, chain)
	}
	f.Writes++
	r = append(r[:pos-1], append([]string{strings.Join(rulespec, " ")}, r[pos-1:]...)...)
	f.chains[table+"/"+chain] = r
	return nil
}

// Append implements Interface.
func (f *Fake) Append(table, chain string, rulespec ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, err := f.rules(table, chain)
	if err != nil {
		return err
	}
	if err := f.checkTarget(table, rulespec); err != nil {
		return err
	}
	f.Writes++
	f.chains[table+"/"+chain] = append(r, strings.Join(rulespec, " "))
	return nil
}

// DeleteIfExists implements Interface.
func (f *Fake) DeleteIfExists(table, chain string, rulespec ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.chains[table+"/"+chain]
	if !ok {
		return nil
	}
	want := strings.Join(rulespec, " ")
	for i, x := range r {
		if x == want {
			f.Writes++
			f.chains[table+"/"+chain] = append(r[:i:i], r[i+1:]...)
			return nil
		}
	}
	return nil
}

// Dump renders every table as sorted "table/chain: rule" lines, for golden comparisons.
func (f *Fake) Dump() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	keys := make([]string, 0, len(f.chains))
	for k := range f.chains {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s\n", k)
		for _, r := range f.chains[k] {
			fmt.Fprintf(&b, "  %s\n", r)
		}
	}
	return b.String()
}
