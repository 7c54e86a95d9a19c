package l2

// Replay protection for heartbeats. Memberlist authenticates and encrypts
// every message with the shared key, but does nothing against replays:
// anyone on the path can capture a packet and send it again, and it
// decrypts fine. A dead node's last heartbeat, replayed every 100 ms,
// would keep it alive in everyone's view (its addresses never taken
// over), and a replayed Bye would make the others take over from a node
// that is still answering. So every message carries its sender's epoch
// (its start time, which only grows) and a sequence number, and a
// receiver accepts each (epoch, sequence number) of a sender at most once,
// and nothing of an epoch older than the newest it heard from that sender.

// dropReason says why a heartbeat was not used; dropNone means it was.
type dropReason int

const (
	dropNone dropReason = iota
	// dropReplayed: this (epoch, sequence number) was accepted already, or
	// is too far behind the newest to tell (see replayWindow).
	dropReplayed
	// dropOldEpoch: the sender has since restarted (a newer epoch was
	// heard from it), so the message is a replay or hopelessly late.
	dropOldEpoch
)

// replayWindow is how far behind the newest sequence number of a sender a
// message may arrive and still be accepted once. Memberlist hands queued
// messages over newest first under load, and a heartbeat may come in
// several parts, so a strict "greater than the last" rule would drop
// legitimate parts; 64 messages are several heartbeat intervals even with
// a few parts each. Anything older is dropped (stale anyway).
const replayWindow = 64

// replayState is what a receiver remembers of one sender's sequence.
type replayState struct {
	// epoch is the newest epoch heard from the sender, seq the highest
	// sequence number accepted in it, and seen a bitmap of the
	// replayWindow numbers below seq (bit i is seq-1-i) accepted already;
	// heard is set by the first message.
	heard bool
	epoch uint64
	seq   uint64
	seen  uint64
}

// check decides whether the message (epoch, seq) of the sender is new,
// and records it if so.
func (r *replayState) check(epoch, seq uint64) dropReason {
	switch {
	case !r.heard || epoch > r.epoch:
		// First message, or the sender restarted.
		*r = replayState{heard: true, epoch: epoch, seq: seq}
		return dropNone
	case epoch < r.epoch:
		return dropOldEpoch
	case seq > r.seq:
		// The old seq becomes bit d-1; shifts by 64 or more give 0.
		d := seq - r.seq
		r.seen = r.seen<<d | 1<<(d-1)
		r.seq = seq
		return dropNone
	case seq == r.seq:
		return dropReplayed
	}
	d := r.seq - seq
	if d > replayWindow || r.seen&(1<<(d-1)) != 0 {
		return dropReplayed
	}
	r.seen |= 1 << (d - 1)
	return dropNone
}
