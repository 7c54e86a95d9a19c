package speaker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/go-logr/logr"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/bgp"
	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/nodeport"
)

// unforwarded returns the addresses of rules whose forwarding is not in
// place after a sync that returned err, each with why. An address counts
// only when none of its rules is programmed: one invalid port of a Service
// leaves its other ports served, and the address announced. An error
// other than invalid or refused rules (the table could not be written at
// all) fails every address.
func unforwarded(rules []nodeport.Rule, err error) map[netip.Addr]string {
	out := map[netip.Addr]string{}
	if err == nil {
		return out
	}
	total := map[netip.Addr]int{}
	for _, r := range rules {
		total[r.Address]++
	}
	if !nodeport.IsRefused(err) && !nodeport.IsInvalidRule(err) {
		for a := range total {
			out[a] = err.Error()
		}
		return out
	}
	failed := map[netip.Addr]int{}
	why := map[netip.Addr]string{}
	var refused *nodeport.RefusedError
	if errors.As(err, &refused) {
		for _, r := range refused.Rules {
			failed[r.Address]++
			why[r.Address] = "the kernel refused its forwarding rules: " + refused.Err.Error()
		}
	}
	for _, inv := range invalidRules(err) {
		failed[inv.Rule.Address]++
		why[inv.Rule.Address] = fmt.Sprintf("invalid forwarding rule %s: %s", inv.Rule, inv.Reason)
	}
	for a, n := range failed {
		if n >= total[a] {
			out[a] = why[a]
		}
	}
	return out
}

// invalidRules returns every *nodeport.InvalidRuleError in err's tree.
// It walks the tree itself: errors.As finds only the first.
func invalidRules(err error) []*nodeport.InvalidRuleError {
	if inv, ok := err.(*nodeport.InvalidRuleError); ok { //nolint:errorlint // see above
		return []*nodeport.InvalidRuleError{inv}
	}
	var out []*nodeport.InvalidRuleError
	switch u := err.(type) { //nolint:errorlint // see above
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			out = append(out, invalidRules(e)...)
		}
	case interface{ Unwrap() error }:
		out = invalidRules(u.Unwrap())
	}
	return out
}

// withholding returns a copy of plan that announces none of the withheld
// addresses, over BGP or on layer 2. Its forwarding rules are the plan's:
// forwarding keeps being tried, and the address is announced again once it
// is in place.
func withholding(plan *Plan, withheld map[netip.Addr]string) *Plan {
	if len(withheld) == 0 {
		return plan
	}
	c := *plan
	c.Routes = make(map[string][]bgp.Advertisement, len(plan.Routes))
	for peer, advs := range plan.Routes {
		c.Routes[peer] = slices.DeleteFunc(slices.Clone(advs), func(a bgp.Advertisement) bool {
			_, ok := withheld[a.Prefix.Addr()]
			return ok && a.Prefix.IsSingleIP()
		})
	}
	c.L2Owned = slices.DeleteFunc(slices.Clone(plan.L2Owned), func(a netip.Addr) bool {
		_, ok := withheld[a]
		return ok
	})
	return &c
}

// maxForwardingEvents bounds the Events of one sync about forwarding
// failures and repairs: a node whose whole table fails would otherwise
// write one per Service.
const maxForwardingEvents = 50

// reportWithheld logs and reports, as Events on the Services holding them,
// the addresses newly withheld and those announced again.
func (s *Speaker) reportWithheld(ctx context.Context, snap Snapshot, prev, now map[netip.Addr]string) {
	if maps.Equal(prev, now) {
		return
	}
	log := logr.FromContextOrDiscard(ctx)
	holders := holdersOf(snap, now, prev)
	events := 0
	emit := func(a netip.Addr, warning bool, message string) {
		for _, svc := range holders[a] {
			if events++; events > maxForwardingEvents || s.fwdEvents == nil {
				continue
			}
			s.fwdEvents.forwarding(ctx, svc, warning, message)
		}
	}
	for _, a := range slices.SortedFunc(maps.Keys(now), netip.Addr.Compare) {
		if prev[a] == now[a] {
			continue
		}
		log.Info("Withdrawing an address whose forwarding failed", "address", a, "why", now[a])
		emit(a, true, fmt.Sprintf("node %s withdrew %s: its forwarding is not in place: %s", s.node, a, now[a]))
	}
	for _, a := range slices.SortedFunc(maps.Keys(prev), netip.Addr.Compare) {
		if _, ok := now[a]; ok {
			continue
		}
		log.Info("Forwarding repaired; announcing the address again", "address", a)
		emit(a, false, fmt.Sprintf("node %s announces %s again: its forwarding is in place", s.node, a))
	}
	if events > maxForwardingEvents {
		log.Info("Forwarding Events left out of this sync", "count", events-maxForwardingEvents)
	}
}

// holdersOf returns the Services ("namespace/name") holding each address
// of the sets.
func holdersOf(snap Snapshot, sets ...map[netip.Addr]string) map[netip.Addr][]string {
	out := map[netip.Addr][]string{}
	if len(sets) == 0 || (len(sets) == 1 && len(sets[0]) == 0) {
		return out
	}
	for _, svc := range snap.Services {
		for _, a := range config.CurrentAddresses(svc) {
			for _, set := range sets {
				if _, ok := set[a]; ok {
					out[a] = append(out[a], config.Key(svc))
					break
				}
			}
		}
	}
	return out
}

// cannotForward returns, by node, the addresses each BerthNodeStatus says
// its node withholds because its forwarding is not in place.
func cannotForward(sts []*v1alpha1.BerthNodeStatus) map[string]map[netip.Addr]bool {
	out := map[string]map[netip.Addr]bool{}
	for _, st := range sts {
		for _, w := range st.Status.Withheld {
			a, err := netip.ParseAddr(w.Address)
			if err != nil {
				continue
			}
			if out[st.Name] == nil {
				out[st.Name] = map[netip.Addr]bool{}
			}
			out[st.Name][a.Unmap()] = true
		}
	}
	return out
}

// withheldChanged reports whether a BerthNodeStatus update changed the
// withheld addresses, the only part of it the plan reads: the others
// change far more often, and must not make every speaker sync.
func withheldChanged(old, cur any) bool {
	o, ok1 := old.(*v1alpha1.BerthNodeStatus)
	c, ok2 := cur.(*v1alpha1.BerthNodeStatus)
	if !ok1 || !ok2 {
		return true
	}
	return !slices.Equal(withheldAddrs(&o.Status), withheldAddrs(&c.Status))
}

// withheldAddrs returns the addresses of st.Withheld, in order.
func withheldAddrs(st *v1alpha1.BerthNodeStatusStatus) []string {
	out := make([]string, 0, len(st.Withheld))
	for _, w := range st.Withheld {
		out = append(out, w.Address)
	}
	return out
}

// strandedL2 returns the layer-2 addresses this node withholds that no
// node answers for, because every eligible live node withholds them, with
// the Service of each.
func strandedL2(self string, p *Plan) map[netip.Addr]L2Address {
	out := map[netip.Addr]L2Address{}
	for _, e := range p.L2 {
		if e.Owner == "" && slices.Contains(e.Withheld, self) {
			out[e.Addr] = e
		}
	}
	return out
}

// reportStranded logs and reports, as Events on their Services, the
// layer-2 addresses that became stranded (strandedL2) since the last sync.
// Only the sync loop calls it.
func (s *Speaker) reportStranded(ctx context.Context, p *Plan) {
	now := strandedL2(s.node, p)
	for _, a := range slices.SortedFunc(maps.Keys(now), netip.Addr.Compare) {
		if _, ok := s.stranded[a]; ok {
			continue
		}
		e := now[a]
		logr.FromContextOrDiscard(ctx).Info("No node can forward a layer-2 address; nobody answers for it", "address", a, "withheldBy", e.Withheld)
		if s.fwdEvents != nil {
			s.fwdEvents.forwarding(ctx, e.Service, true, fmt.Sprintf("no node can forward %s: every eligible node withholds it (%s), so nobody answers for it on layer 2",
				a, strings.Join(e.Withheld, ", ")))
		}
	}
	s.stranded = now
}
