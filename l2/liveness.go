package l2

import (
	"slices"
	"strings"
	"time"
)

// Timing of the liveness protocol; see liveness and doc.go for the
// argument. The speaker uses the defaults.
const (
	// HeartbeatInterval is how often every node sends every other node a
	// heartbeat.
	HeartbeatInterval = 100 * time.Millisecond
	// QuorumLease is how long a heartbeat keeps its sender quorate once a
	// peer echoed it: a node answers only while a majority (itself
	// included) echoed one of its heartbeats sent less than QuorumLease
	// ago. It tolerates about three lost or late heartbeats in a row.
	QuorumLease = 400 * time.Millisecond
	// DeadAfter is how long a node must have been silent, to this node and
	// to every node that reports to it, before this node takes its
	// addresses over. It exceeds twice QuorumLease, with a margin for
	// delivery: by then a silent owner has lost its lease, so it no
	// longer answers, whatever its view, and an owner that kept its lease
	// through a short cut held it a lease earlier too, from nodes that told
	// this node of it (see liveness; TestLivenessFlap).
	DeadAfter = 900 * time.Millisecond
	// RegainHoldDown is how long a node that regains its lease (at start,
	// or when a partition heals) stays silent, so that the nodes that
	// took its addresses over learn that it is back and let go first. It
	// exceeds twice QuorumLease with the same margin, so that the
	// heartbeats that gave a serving node its lease a lease ago already
	// said it held it (see liveness; TestLivenessChangeSides).
	RegainHoldDown = 900 * time.Millisecond
)

// timing is the liveness protocol's configuration.
type timing struct {
	lease, dead, holdDown time.Duration
}

func defaultTiming() timing {
	return timing{lease: QuorumLease, dead: DeadAfter, holdDown: RegainHoldDown}
}

// liveness is one node's pure view of the others, fed with the heartbeats
// it receives and asked at explicit times; Members wraps it with a lock and
// the clock. It decides two things:
//
//   - whether this node holds the lease (is quorate): a strict majority of
//     the known nodes, itself included, echoed a heartbeat of this node
//     sent less than lease ago. Echoes carry this node's own clock, so the
//     lease needs no synchronised clocks and ends at a precise local time,
//     whatever happens to the network afterwards.
//   - who is alive, that is, may be answering: a node heard from within
//     dead, directly or through a peer's first-hand report, whose newest
//     heartbeat said it held its lease. Reports keep alive a node that only
//     this node cannot hear (a one-sided fault) as long as someone else
//     hears it, and that someone also grants it its lease. The flag lets
//     the others take over from a node that can send but not hear.
//
// The safety argument, in short: say P takes over X's address at time t
// while X answers. P holds its lease, so a majority echoed heartbeats P
// sent after t-lease. X answers, so it regained its lease before
// t-holdDown < t-2*lease and held it since: at t-lease a majority had
// echoed heartbeats X sent after t-2*lease, each saying that X holds its
// lease, and those echoes had reached X. A node in both majorities heard
// such a heartbeat of X before t-lease and echoed P after t-lease, so its
// echo told P that X was heard after t-2*lease > t-dead and holds its
// lease: P cannot have taken over. Both margins (dead and holdDown over
// 2*lease) cover clocks that run at slightly different rates. A lease
// alone is not enough: X can keep its lease through a cut shorter than
// one, on echoes of nodes that P still counts (TestLivenessFlap).
type liveness struct {
	self  string
	epoch uint64
	start time.Time
	t     timing

	// needContact: a node given peers is not quorate before it met one.
	needContact bool
	contacted   bool
	known       map[string]bool
	nodes       map[string]*peerState
	// forgotten are the nodes removed by forget, which learn does not
	// add back (join does: memberlist saw the node alive again).
	forgotten map[string]bool

	// leaseUntil is when the lease ends, as computed at the last event
	// (the lease only grows when a heartbeat arrives).
	leaseUntil time.Time
	// quorateFrom ends the hold-down after the lease was regained.
	quorateFrom time.Time
	// gen counts the times the lease was (re)gained.
	gen uint64
	// regained is set when the lease was regained, until taken: the
	// others must learn it before the hold-down ends.
	regained bool
	// left is set by leave: no lease ever again.
	left bool
	// seq is the sequence number of the last message this node sent in
	// its epoch (see encode).
	seq uint64
	// tieUntil is until when this node holds the tie-breaker (see
	// Tiebreak): with it, exactly half of an even voter set is a quorum.
	tieUntil time.Time
	// rec is the membership record this node follows (see
	// membership.go). recKnown says it knows the current one: a node
	// that must first read it from the API server is silent and holds no
	// lease until it has (see needRecord). settledAt is when it was first
	// settled under rec.Rev (zero: not yet).
	rec       MemberRecord
	recKnown  bool
	settledAt time.Time
	// legacy makes this node behave as a speaker of the release before
	// the record (heartbeat version 2 only): it never follows a record
	// and does not say it reads version 3. Tests only.
	legacy bool
	// list is the known membership, sorted, and digest its digest (see
	// summary.go), computed when needed: stale says they are not.
	list   []string
	digest uint64
	stale  bool
	// scale lets this node take part in voter sets (voters.go): it says it
	// reads version 4 and summary deltas, and proposes voters in a large
	// cluster. Members sets it from MembersConfig.Voters.
	scale bool
	// firstRecord: no lease before a first record exists, which this
	// node may then write without one (first_record.go); waitSince is
	// since when it waits for it (updated by recompute), heardNoWait that
	// it heard a node that does not wait.
	firstRecord bool
	waitSince   time.Time
	heardNoWait bool
	// noDelta makes this node behave as a speaker of the release before
	// summary deltas: it reads version 4, but neither reads nor sends
	// deltas. Tests only.
	noDelta bool
	// scratch is reused to build summaries (summary_delta.go);
	// summaries counts them.
	scratch   []byte
	summaries Summaries
	// broken leaves one rule of the voter protocol out, to show that the
	// simulator catches what it prevents. Tests only.
	broken brokenRule
}

// brokenRule names a rule of the voter protocol left out (tests only).
type brokenRule string

const (
	// brokenAnyEcho counts the echoes of any node towards a majority of
	// the voters, not only the voters'.
	brokenAnyEcho brokenRule = "echoes of non-voters count"
	// brokenUnknownInSummary sends a summary even when the voter heard a
	// node outside its known membership, which the summary cannot name.
	brokenUnknownInSummary brokenRule = "summary leaves out unknown nodes"
	// brokenFirstWait lets a node that waits for the first record hold
	// leases and echo as if it did not (it still writes that record
	// without a lease).
	brokenFirstWait brokenRule = "leases and echoes while waiting for the first record"
)

// peerState is what one node knows of another.
type peerState struct {
	// epoch and stamp are from the newest heartbeat received directly,
	// at recvAt, which said quorate.
	epoch   uint64
	stamp   uint64
	recvAt  time.Time
	quorate bool
	// seen is the newest local time the node is known to have been alive,
	// directly or from reports; viable is the Quorate flag of the newest
	// heartbeat behind that evidence, of flagEpoch and flagStamp.
	seen      time.Time
	viable    bool
	flagEpoch uint64
	flagStamp uint64
	// grants is until when the node's echoes keep this node's lease, by
	// the revision of the record the node followed when it echoed.
	grants map[uint64]time.Time
	// reads3, reads4 and readsDelta are the Reads3, Reads4 and ReadsDelta
	// flags of its newest direct heartbeat, digest its Digest.
	reads3, reads4, readsDelta bool
	digest                     uint64
	// Summary deltas (summary_delta.go). got are the summaries read from
	// the node, gotRead says its newest heartbeat carried one of them;
	// sent are the summaries sent to it, ack the stamp of this node's
	// heartbeat in its newest echo, ackRead that it read that one's
	// summary.
	got, sent keptSummaries
	gotRead   bool
	ack       uint64
	ackRead   bool
	// bye is set when the node left on purpose, at byeStamp of byeEpoch:
	// older evidence of it is ignored.
	bye      bool
	byeEpoch uint64
	byeStamp uint64
	// replay is what was received directly from the node, against
	// replays; it survives a Bye.
	replay replayState
}

func newLiveness(self string, epoch uint64, start time.Time, t timing, needContact bool) *liveness {
	l := &liveness{
		self: self, epoch: epoch, start: start, t: t, needContact: needContact,
		known: map[string]bool{self: true}, nodes: map[string]*peerState{}, forgotten: map[string]bool{}, recKnown: true,
	}
	l.stale = true
	l.recompute(start)
	l.regained = false
	return l
}

func (l *liveness) peer(name string) *peerState {
	p, ok := l.nodes[name]
	if !ok {
		p = &peerState{}
		l.nodes[name] = p
	}
	return p
}

// stampAt is this node's heartbeat stamp at now.
func (l *liveness) stampAt(now time.Time) uint64 {
	return uint64(max(now.Sub(l.start), 0))
}

// join records that name is a member (memberlist saw it alive): it counts
// in the quorum from now on. It is not alive for Owner before its
// heartbeats say it holds its lease.
func (l *liveness) join(now time.Time, name string) {
	if name == l.self {
		return
	}
	delete(l.forgotten, name)
	l.contacted = true
	l.add(name)
	l.recompute(now)
}

// add puts name in the known membership; the caller recomputes the lease.
func (l *liveness) add(name string) {
	l.known[name] = true
	l.peer(name)
	l.stale = true
}

// forget removes nodes from the known membership.
func (l *liveness) forget(now time.Time, names ...string) {
	for _, n := range names {
		if n != l.self {
			delete(l.known, n)
			delete(l.nodes, n)
			l.forgotten[n] = true
		}
	}
	l.stale = true
	l.recompute(now)
}

// receive processes a heartbeat and reports whether the set of alive
// nodes changed, or why the heartbeat was dropped: a replay, or a message
// of an older epoch of its sender than one already heard (see replay.go).
func (l *liveness) receive(now time.Time, hb heartbeat) (bool, dropReason) {
	if hb.From == l.self {
		return false, dropNone
	}
	p := l.peer(hb.From)
	if r := p.replay.check(hb.Epoch, hb.Seq); r != dropNone {
		return false, r
	}
	return l.use(now, p, hb), dropNone
}

// use processes a heartbeat of p that is not a replay.
func (l *liveness) use(now time.Time, p *peerState, hb heartbeat) bool {
	switch {
	case hb.Epoch == p.epoch && hb.Stamp < p.stamp:
		// Older than what arrived already (memberlist hands messages
		// over newest first under load) or replayed: nothing new.
		return false
	case p.bye && hb.Epoch == p.byeEpoch && hb.Stamp <= p.byeStamp:
		return false
	}
	changed := false
	was := l.isAlive(p, now)
	if hb.Epoch != p.epoch {
		// A new run of p has read none of this node's summaries.
		p.ack, p.ackRead = 0, false
	}
	p.epoch, p.stamp = hb.Epoch, hb.Stamp
	if hb.Bye {
		*p = peerState{epoch: hb.Epoch, stamp: hb.Stamp, bye: true, byeEpoch: hb.Epoch, byeStamp: hb.Stamp, replay: p.replay}
		l.recompute(now)
		return was
	}
	p.bye = false
	p.recvAt, p.quorate, p.reads3, p.reads4, p.digest, p.readsDelta = now, hb.Quorate, hb.Reads3, hb.Reads4, hb.Digest, hb.ReadsDelta
	if hb.Rec.Rev == 0 && !hb.WaitFirst {
		l.heardNoWait = true
	}
	if !l.legacy && hb.Rec.Rev > l.rec.Rev {
		l.adopt(hb.Rec)
	}
	l.evidence(p, now, hb.Epoch, hb.Stamp, hb.Quorate)
	changed = was != l.isAlive(p, now)
	p.gotRead = false
	if hb.Summary != nil || hb.Delta != nil {
		// An echo counts only with the report it travels with: a summary
		// this node cannot read voids the message's echo too.
		sum := l.readSummary(p, hb)
		if sum == nil {
			l.recompute(now)
			return changed
		}
		changed = l.useSummary(now, sum) || changed
	}
	l.echoes(now, p, hb)
	for _, h := range hb.Heard {
		if h.Node == l.self {
			continue
		}
		q := l.peer(h.Node)
		if q.bye && h.Epoch == q.byeEpoch && h.Stamp <= q.byeStamp {
			continue
		}
		if q.replay.heard && h.Epoch < q.replay.epoch {
			// About a run of that node older than the one this node
			// hears: says nothing of the current one.
			continue
		}
		was := l.isAlive(q, now)
		// The reporter heard it Age before sending, so no later than
		// now-Age here: the estimate errs towards "alive", the safe side.
		l.evidence(q, now.Add(-max(h.Age, 0)), h.Epoch, h.Stamp, h.Quorate)
		changed = changed || was != l.isAlive(q, now)
	}
	l.recompute(now)
	return changed
}

// echoes takes in the echo of this node's heartbeat that p's heartbeat hb
// carries, if any.
func (l *liveness) echoes(now time.Time, p *peerState, hb heartbeat) {
	for _, h := range hb.Heard {
		if h.Node != l.self || h.Epoch != l.epoch || h.Stamp > l.stampAt(now) {
			continue
		}
		if h.Stamp >= p.ack {
			p.ack, p.ackRead = h.Stamp, h.Summarised
		}
		// Only echoes that count are kept (at most two revisions).
		if g := l.start.Add(time.Duration(h.Stamp) + l.t.lease); l.counts(hb.Rec.Rev) && g.After(p.grants[hb.Rec.Rev]) {
			if p.grants == nil {
				p.grants = map[uint64]time.Time{}
			}
			p.grants[hb.Rec.Rev] = g
		}
	}
}

// evidence records that p sent the heartbeat (epoch, stamp) with the
// Quorate flag quorate, and was alive at at.
func (l *liveness) evidence(p *peerState, at time.Time, epoch, stamp uint64, quorate bool) {
	newer := epoch == p.flagEpoch && stamp >= p.flagStamp
	if epoch != p.flagEpoch {
		newer = at.After(p.seen)
	}
	if newer {
		p.viable, p.flagEpoch, p.flagStamp = quorate, epoch, stamp
	}
	if at.After(p.seen) {
		p.seen = at
	}
}

// isAlive reports whether p may be answering at now: seen within dead,
// and quorate by its newest word.
func (l *liveness) isAlive(p *peerState, now time.Time) bool {
	return l.heardOf(p, now) && p.viable
}

// heardOf reports whether p was seen within dead, quorate or not.
func (l *liveness) heardOf(p *peerState, now time.Time) bool {
	return !p.seen.IsZero() && now.Sub(p.seen) < l.t.dead
}

// heartbeat is what this node sends at now: its stamp, whether it holds
// its lease, and every node it heard from directly within dead.
func (l *liveness) heartbeat(now time.Time) heartbeat {
	hb := heartbeat{
		From: l.self, Epoch: l.epoch, Stamp: l.stampAt(now), Quorate: now.Before(l.leaseUntil),
		Reads3: !l.legacy, Reads4: l.scale && !l.legacy, Rec: l.rec, WaitFirst: l.waitFirst(),
		ReadsDelta: l.scale && !l.legacy && !l.noDelta,
	}
	for name, p := range l.nodes {
		if p.recvAt.IsZero() || now.Sub(p.recvAt) >= l.t.dead {
			continue
		}
		hb.Heard = append(hb.Heard, heard{Node: name, Epoch: p.epoch, Stamp: p.stamp, Age: now.Sub(p.recvAt), Quorate: p.quorate, Summarised: p.gotRead})
	}
	if l.waitFirst() && l.broken != brokenFirstWait {
		// Nobody it hears holds a lease: nothing to echo or report.
		hb.Heard = nil
	}
	slices.SortFunc(hb.Heard, func(a, b heard) int { return strings.Compare(a.Node, b.Node) })
	if l.rec.hasVoters() {
		_, hb.Digest = l.membership()
	}
	return hb
}

// encode encodes hb, numbering its messages after the last ones this node
// sent: the same numbers are never sent twice in an epoch.
func (l *liveness) encode(hb heartbeat) [][]byte {
	hb.Seq = l.seq + 1
	msgs := encodeHeartbeats(hb)
	l.seq += uint64(len(msgs))
	return msgs
}

// alive returns this node and every other node alive at now, sorted.
func (l *liveness) alive(now time.Time) []string {
	out := []string{l.self}
	for name, p := range l.nodes {
		if l.isAlive(p, now) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// leave makes this node answer for nothing from now on and returns its
// goodbye.
func (l *liveness) leave(now time.Time) heartbeat {
	l.left = true
	l.leaseUntil = time.Time{}
	hb := l.heartbeat(now)
	hb.Bye, hb.Quorate, hb.Heard = true, false, nil
	return hb
}

// knownNodes returns the known membership, sorted.
func (l *liveness) knownNodes() []string {
	out := make([]string, 0, len(l.known))
	for n := range l.known {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}
