package ovs

import "fmt"

// Backward resubmits. The pipeline only moves forward (goto_table, and
// resubmit and ct(table=) to the same or a later table), with one declared
// exception: MulticastToLocal hands each receiver of a multicast datagram to
// PolicyIngress with resubmit, so that multicast meets the same ingress
// decision as unicast (isolation, NetworkPolicy) and the verdict of one
// receiver does not stop delivery to the next. A backward resubmit is safe
// only into a terminal table: every flow there ends in output or drop and
// never continues (no goto_table, resubmit or ct(table=)), so the resubmit
// returns at once and cannot loop. ValidatePipeline checks that property of
// every target listed here.
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

// checkBackResubmitTargets reports every flow of a backward-resubmit target
// table that continues processing (see backResubmits).
func checkBackResubmitTargets(flows []Flow) []error {
	targets := map[uint8]bool{}
	for k := range backResubmits {
		targets[k[1]] = true
	}
	var errs []error
	for _, f := range flows {
		if !targets[f.Table.ID] {
			continue
		}
		for _, a := range f.Actions {
			if continues(a) {
				errs = append(errs, fmt.Errorf("flow %q: %s in table %s, which later tables resubmit to, must not continue (loop)", f, a, f.Table.Named()))
			}
		}
	}
	return errs
}

// continues reports whether a sends the packet on to another table.
func continues(a Action) bool {
	switch a := a.(type) {
	case GotoTable, Resubmit:
		return true
	case ConnTrack:
		return a.Recirc
	}
	return false
}
