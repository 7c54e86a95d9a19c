package l2

import (
	"slices"
	"time"
)

// recompute updates the lease after an event at now.
func (l *liveness) recompute(now time.Time) {
	var until time.Time
	l.updateWaitSince(now)
	if l.active() {
		until = l.leaseUntilFor(now, l.counts, true)
		if l.settledAt.IsZero() && l.leaseUntilFor(now, l.exact, false).After(now) {
			l.settledAt = now
		}
	}
	if !now.Before(l.leaseUntil) && until.After(now) {
		l.gen++
		l.regained = true
		l.quorateFrom = now.Add(l.t.holdDown)
		if l.gen == 1 && len(l.known) == 1 && !l.needContact {
			// Alone by configuration: nobody to wait for.
			l.quorateFrom = now
		}
	}
	l.leaseUntil = until
}

// active reports whether this node may hold a lease at all: it has not
// left, has met a peer if it was given some, knows the record, and does
// not wait for the first one (first_record.go).
func (l *liveness) active() bool {
	return !l.left && (!l.needContact || l.contacted) && l.recKnown && (!l.waitFirst() || l.broken == brokenFirstWait)
}

// counts says whether an echo given under revision rev counts towards this
// node's lease: under the revision it follows or the one before (so that
// a lease continues across a change), never older ones.
func (l *liveness) counts(rev uint64) bool {
	return rev == l.rec.Rev || rev+1 == l.rec.Rev
}

// exact says whether an echo counts towards being settled: given under
// this node's revision exactly.
func (l *liveness) exact(rev uint64) bool { return rev == l.rec.Rev }

// leaseUntilFor is until when this node holds a lease counting the echoes
// whose revision ok accepts, and with tie the tie-breaker: a strict
// majority (or, with the tie-breaker, exactly half) of every voter set of
// its record, its own vote included where it is a voter.
func (l *liveness) leaseUntilFor(now time.Time, ok func(uint64) bool, tie bool) time.Time {
	far := now.Add(100 * 365 * 24 * time.Hour)
	until := far
	list, _ := l.membership()
	for _, set := range l.rec.voterSets(list) {
		if u := l.setLease(set, far, ok, tie); u.Before(until) {
			until = u
		}
	}
	return until
}

// setLease is until when this node holds a lease from voter set set.
func (l *liveness) setLease(set []string, far time.Time, ok func(uint64) bool, tie bool) time.Time {
	grants := l.grantsFrom(set, ok)
	majority, half := l.needs(set)
	var until time.Time
	switch {
	case majority == 0:
		until = far
	case len(grants) >= majority:
		until = grants[majority-1]
	}
	if !tie || half < 0 || l.tieUntil.IsZero() {
		return until
	}
	// Exactly half with the tie-breaker: two halves cannot both hold it,
	// and any strict majority intersects this half.
	var t time.Time
	switch {
	case half == 0:
		t = l.tieUntil
	case len(grants) >= half:
		t = minTime(l.tieUntil, grants[half-1])
	}
	if t.After(until) {
		until = t
	}
	return until
}

// needs returns how many echoes of the other voters of set this node needs
// for a strict majority, and for exactly half (-1 when set is odd or
// empty: no tie-breaker).
func (l *liveness) needs(set []string) (majority, half int) {
	own := 0
	if slices.Contains(set, l.self) {
		own = 1
	}
	majority, half = len(set)/2+1-own, -1
	if len(set) > 0 && len(set)%2 == 0 {
		half = len(set)/2 - own
	}
	return majority, half
}

// grantsFrom returns the echoes of the voters of set other than this node
// whose revision ok accepts, newest first.
func (l *liveness) grantsFrom(set []string, ok func(uint64) bool) []time.Time {
	var grants []time.Time
	if l.broken == brokenAnyEcho {
		set, _ = l.membership()
	}
	for _, name := range set {
		if p := l.nodes[name]; name != l.self && p != nil {
			if g := p.grant(ok); !g.IsZero() {
				grants = append(grants, g)
			}
		}
	}
	slices.SortFunc(grants, func(a, b time.Time) int { return b.Compare(a) })
	return grants
}

// grant is the latest until which p's echoes of a revision ok accepts keep
// this node's lease.
func (p *peerState) grant(ok func(uint64) bool) time.Time {
	var g time.Time
	for rev, until := range p.grants {
		if ok(rev) && until.After(g) {
			g = until
		}
	}
	return g
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// setTie records that this node holds the tie-breaker until until (zero:
// not at all).
func (l *liveness) setTie(now, until time.Time) {
	l.tieUntil = until
	l.recompute(now)
}

// tieAsk is how old the newest heartbeat that a majority echoed may be
// before a node asks for the tie-breaker: two heartbeats in a row missing,
// with a margin for the phases of the echoing nodes' heartbeats.
const tieAsk = 2*HeartbeatInterval + 50*time.Millisecond

// wantsTie reports whether the tie-breaker would keep or give this node
// its lease: in an even voter set, fewer than a majority of the others
// echoed a heartbeat it sent less than tieAsk ago, but at least half of
// the set still grant it a lease. A node starts asking for it lease minus
// tieAsk before its majority lapses, so that its lease continues without a
// gap.
func (l *liveness) wantsTie(now time.Time) bool {
	if !l.active() {
		return false
	}
	list, _ := l.membership()
	for _, set := range l.rec.voterSets(list) {
		majority, half := l.needs(set)
		if half < 0 {
			continue
		}
		strong, valid := 0, 0
		for _, g := range l.grantsFrom(set, l.counts) {
			if g.After(now) {
				valid++
			}
			if g.After(now.Add(l.t.lease - tieAsk)) {
				strong++
			}
		}
		if strong < majority && valid >= half {
			return true
		}
	}
	return false
}

// takeRegained reports, once, that the lease was regained: the caller
// sends a heartbeat at once, so that the others know before the hold-down
// ends.
func (l *liveness) takeRegained() bool {
	r := l.regained
	l.regained = false
	return r
}

// lease returns the lease's generation and whether this node is quorate
// at now. A generation ends when the lease lapses: what was decided under
// it must not be acted on under the next.
func (l *liveness) lease(now time.Time) (uint64, bool) {
	return l.gen, now.Before(l.leaseUntil) && !now.Before(l.quorateFrom)
}
