package l2

import (
	"slices"
	"time"
)

// adopt makes this node follow r, a newer record than its own: it is not
// settled under it yet. The voters r names become known, unless this node
// forgot them on purpose (their Node was deleted): a node that writes the
// next record must not drop a voter only because memberlist has not told
// it of that node yet.
func (l *liveness) adopt(r MemberRecord) {
	l.rec = r.clone()
	l.settledAt = time.Time{}
	for _, n := range append(slices.Clone(r.Voters), r.NextVoters...) {
		if n != l.self && !l.known[n] && !l.forgotten[n] {
			l.add(n)
		}
	}
	for _, p := range l.nodes {
		for rev := range p.grants {
			if !l.counts(rev) {
				delete(p.grants, rev)
			}
		}
	}
}

// needRecord makes this node silent and without a lease until it has read
// the record (setRecord): a restarted node must not echo under a revision
// older than the current one, or a node two revisions behind could count
// it.
func (l *liveness) needRecord(now time.Time) {
	l.recKnown = false
	l.recompute(now)
}

// silent reports whether this node sends no heartbeats: it does not know
// the current record yet.
func (l *liveness) silent() bool { return !l.recKnown }

// setRecord records a read of the record from the API server at now (r.Rev
// 0: there is none). A legacy node ignores it.
func (l *liveness) setRecord(now time.Time, r MemberRecord) {
	if l.legacy {
		return
	}
	if r.Rev > l.rec.Rev {
		l.adopt(r)
	}
	l.recKnown = true
	l.recompute(now)
}

// recordView is what NextRecord needs from this node at now.
func (l *liveness) recordView(now time.Time, gone []string) RecordView {
	v := RecordView{Current: l.rec, Known: l.knownNodes(), Gone: gone, Alive: l.alive(now), SettledFor: -1, AllRead3: true, AllRead4: true, WritesFirst: l.mayWriteFirst(now)}
	if l.scale {
		v.MaxVoters = MaxVoters
	}
	_, v.Quorate = l.lease(now)
	if !l.settledAt.IsZero() {
		v.SettledFor = now.Sub(l.settledAt)
	}
	// Every node heard of within dead, quorate or not: a speaker of the
	// previous release that lost its lease is still running, and a record
	// it cannot read would keep it out for good.
	for _, p := range l.nodes {
		if l.heardOf(p, now) && !p.reads3 {
			v.AllRead3 = false
		}
		if l.heardOf(p, now) && !p.reads4 {
			v.AllRead4 = false
		}
	}
	return v
}
