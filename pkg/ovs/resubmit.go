package ovs

import "fmt"

// Backward resubmits. The pipeline only moves forward (goto_table, and
// resubmit and ct(table=) to the same or a later table), with one declared
// exception: MulticastToLocal hands each receiver of a multicast datagram to
// PolicyIngress with resubmit, so that multicast meets the same ingress
// decision as unicast (isolation, NetworkPolicy) and the verdict of one
// receiver does not stop delivery to the next. A backward resubmit is safe
// when nothing the target table leads to reaches the resubmitting table
// again (PolicyIngress goes on only to IngressCommit and its own reply
// lookups, below MulticastToLocal), so the resubmit returns and cannot
// loop. ValidatePipeline checks that property for every resubmit listed
// here.
var backResubmits = map[[2]uint8]bool{
	{TableMulticastToLocal.ID, TablePolicyIngress.ID}: true,
}

// backResubmitAllowed reports whether a flow of table from may resubmit to
// the earlier table to.
func backResubmitAllowed(from, to Table) bool { return backResubmits[[2]uint8{from.ID, to.ID}] }

// checkResubmit validates a resubmit action of a flow in table from.
func checkResubmit(from Table, a Resubmit) error {
	if backResubmitAllowed(from, a.Table) {
		return nil
	}
	return checkTarget(from, a.Table, a, true)
}

// checkBackResubmitTargets reports every backward resubmit (see
// backResubmits) whose source table can be reached again from its target
// through the flows' goto_table, resubmit and ct(table=) actions.
func checkBackResubmitTargets(flows []Flow) []error {
	next := map[uint8]map[uint8]bool{}
	for _, f := range flows {
		for _, a := range f.Actions {
			t, ok := continuation(a)
			if !ok || backResubmitAllowed(f.Table, t) {
				continue
			}
			if next[f.Table.ID] == nil {
				next[f.Table.ID] = map[uint8]bool{}
			}
			next[f.Table.ID][t.ID] = true
		}
	}
	var errs []error
	for k := range backResubmits {
		from, to := k[0], k[1]
		seen := map[uint8]bool{to: true}
		queue := []uint8{to}
		for len(queue) > 0 {
			t := queue[0]
			queue = queue[1:]
			for n := range next[t] {
				if n == from {
					errs = append(errs, fmt.Errorf("table %d resubmits back to table %d, from which table %d is reached again (loop)", from, to, from))
				}
				if !seen[n] {
					seen[n] = true
					queue = append(queue, n)
				}
			}
		}
	}
	return errs
}

// continuation is the table a sends the packet on to, if any.
func continuation(a Action) (Table, bool) {
	switch a := a.(type) {
	case GotoTable:
		return a.Table, true
	case Resubmit:
		return a.Table, true
	case ConnTrack:
		return a.Table, a.Recirc
	}
	return Table{}, false
}
