package l2

import "time"

// Summary deltas. A voter's summary to a node is nearly the same from one
// heartbeat to the next: heartbeat phases are stable, so each node's age
// in it is too. To a node whose heartbeats say it reads deltas
// (heartbeat.ReadsDelta), a voter therefore sends only the entries that
// changed since a summary the node has read, named by its stamp:
//
//   - The receiver keeps the last summaryKept summaries it read from each
//     voter, and its echo of a voter's heartbeat says whether it read that
//     heartbeat's summary (heard.Summarised).
//   - The voter keeps the last summaryKept summaries it sent each node,
//     and writes the next one as changes to the newest one the node's echo
//     says it read. Without such a base it sends the whole summary; a
//     receiver that lacks the base ignores the message's echo too (as for
//     a summary it cannot read) and says so in its next echo, so the voter
//     sends the whole summary next.
//   - An entry is kept while it errs towards "alive" by less than
//     summaryBand: the voter heard the node no later than the entry says,
//     and at most summaryBand units earlier. A changed entry says
//     summarySlack units younger than the truth, so that it holds through
//     the jitter of heartbeat delivery. The receiver's estimate of when a
//     node was heard thus errs towards "alive" by less than summaryBand
//     units (three, 24 ms) instead of one.
const (
	summaryKept  = 4
	summarySlack = 1
	summaryBand  = 3
)

// keptSummary is a summary sent or read, by the epoch and stamp of its
// heartbeat and the digest of the membership it is over.
type keptSummary struct {
	epoch, stamp, digest uint64
	b                    []byte
}

// keptSummaries are the last summaryKept summaries sent to or read from
// one node.
type keptSummaries struct {
	k    [summaryKept]keptSummary
	next int
}

// get returns the summary of the heartbeat (epoch, stamp), or nil.
func (ks *keptSummaries) get(epoch, stamp, digest uint64) []byte {
	for _, k := range ks.k {
		if k.b != nil && k.epoch == epoch && k.stamp == stamp && k.digest == digest {
			return k.b
		}
	}
	return nil
}

// put keeps a copy of k.b, in place of the oldest. Two summaries of one
// heartbeat (a node that sent twice in the same nanosecond, or a replay
// that got through) leave neither kept: a delta against that heartbeat
// could mean either. It reports whether k was kept.
func (ks *keptSummaries) put(k keptSummary) bool {
	for i := range ks.k {
		if ks.k[i].b != nil && ks.k[i].epoch == k.epoch && ks.k[i].stamp == k.stamp {
			ks.k[i] = keptSummary{}
			return false
		}
	}
	slot := &ks.k[ks.next]
	ks.next = (ks.next + 1) % summaryKept
	k.b = append(slot.b[:0], k.b...)
	*slot = k
	return true
}

// keeps reports whether a summary entry b still says r, erring towards
// "alive" by less than summaryBand units.
func keeps(b byte, r report) bool {
	if b == 0 || r.age < 0 {
		return b == 0 && r.age < 0
	}
	said := time.Duration(b&summaryMaxAge-1) * summaryAgeUnit
	return b&summaryQuorate != 0 == r.quorate && r.age >= said && r.age < said+summaryBand*summaryAgeUnit
}

// summaryFor returns the summary this node sends p with hb, whose entries
// say rs: the whole summary, or a delta against the newest summary p
// read, when that is shorter. It keeps what it sent.
func (l *liveness) summaryFor(p *peerState, hb heartbeat, rs []report) ([]byte, *summaryDelta) {
	var base []byte
	if p.ackRead {
		base = p.sent.get(l.epoch, p.ack, hb.Digest)
	}
	sum := l.scratch[:0]
	var d summaryDelta
	for i, r := range rs {
		if base != nil && keeps(base[i], r) {
			sum = append(sum, base[i])
			continue
		}
		b := summaryByte(r, summarySlack)
		sum = append(sum, b)
		if base != nil {
			d.Index, d.B = append(d.Index, i), append(d.B, b)
		}
	}
	l.scratch = sum
	if !p.sent.put(keptSummary{epoch: l.epoch, stamp: hb.Stamp, digest: hb.Digest, b: sum}) {
		return summaryBytes(rs), nil
	}
	// A change costs about two bytes, an entry of the whole summary one.
	if base == nil || 2*len(d.Index) >= len(rs) {
		return append([]byte(nil), sum...), nil
	}
	d.Base, d.Len = p.ack, len(rs)
	return nil, &d
}

// readSummary returns the summary that p's heartbeat hb carries, whole or
// as a delta against one this node read and kept, or nil when there is
// none or it cannot be read: another digest, or a base it does not have.
// It keeps what it read, and notes whether it did for the echo.
func (l *liveness) readSummary(p *peerState, hb heartbeat) []byte {
	list, digest := l.membership()
	sum := hb.Summary
	if d := hb.Delta; d != nil {
		sum = nil
		if base := p.got.get(hb.Epoch, d.Base, hb.Digest); base != nil && len(base) == d.Len {
			sum = append(l.scratch[:0], base...)
			for i, x := range d.Index {
				sum[x] = d.B[i]
			}
			l.scratch = sum
		}
	}
	p.gotRead = false
	switch {
	case sum == nil || hb.Digest != digest || len(sum) != len(list):
		l.summaries.Unreadable++
		return nil
	case hb.Delta != nil:
		l.summaries.ReadDelta++
	default:
		l.summaries.ReadWhole++
	}
	p.gotRead = p.got.put(keptSummary{epoch: hb.Epoch, stamp: hb.Stamp, digest: hb.Digest, b: sum})
	return sum
}
