package l2

import (
	"context"
	"fmt"
	"time"
)

// Timing of the tie-breaker; see Tiebreak.
const (
	// TieDuration is how long a write of the tie-breaker record keeps it
	// held: its holder counts it until TieDuration minus TieMargin after
	// it sent the write, and another node takes it over only after it saw
	// the record unchanged for TieDuration.
	TieDuration = 2 * time.Second
	// TieMargin covers clocks running at different rates (10%).
	TieMargin = TieDuration / 10
	// TieRenew is how often the holder renews the record, and how often a
	// node that wants it reads it.
	TieRenew = 250 * time.Millisecond
	// TieKeep is how long the holder keeps the record after it stopped
	// needing it, so that a flapping link does not make it change hands at
	// every heartbeat.
	TieKeep = 5 * time.Second
	// TieWatch is how often a node looks, between steps, whether it newly
	// wants the record (see Due).
	TieWatch = 20 * time.Millisecond
)

// TieRecord is the tie-breaker record as read from the API server (a
// coordination.k8s.io Lease in the speaker).
type TieRecord struct {
	// Holder is the node holding it; "" when released.
	Holder string
	// Version changes with every write (the resourceVersion): a
	// record whose version did not change for TieDuration was not renewed.
	Version string
}

// TieAction is what Tiebreak.Next asks the caller to write.
type TieAction int

// The actions; every write but TieCreate is conditional on the version last
// observed, so that two nodes never both succeed.
const (
	// TieNone writes nothing.
	TieNone TieAction = iota
	// TieCreate creates the record, held by this node.
	TieCreate
	// TieAcquire takes a released or expired record.
	TieAcquire
	// TieRenewHold renews this node's hold.
	TieRenewHold
	// TieRelease releases it (Holder ""); this node stopped counting it
	// when Next returned.
	TieRelease
)

// Tiebreak is one node's pure view of the tie-breaker record, which lets
// exactly half of an even membership hold the quorum lease when the node
// holding the record is among them (see liveness.recompute). It needs no
// synchronised clocks: the holder counts the record from the moment it
// sent its last successful write, for TieDuration-TieMargin, while the
// others wait TieDuration from the moment they first saw that write. The
// writes themselves are conditional on the version read, so at most one of
// two competing writes succeeds. It is not safe for concurrent use.
type Tiebreak struct {
	self string
	// version and seenAt: the record's version, and when this node first
	// saw it; exists whether there is a record at all.
	version string
	holder  string
	exists  bool
	seenAt  time.Time
	// heldUntil: this node counts the record until then.
	heldUntil time.Time
	// lastWrite is when the holder last sent a renewal; wantedAt is when
	// the node last wanted the record.
	lastWrite time.Time
	wantedAt  time.Time
	// stepped is when Step was last called, steppedWant its want.
	stepped     time.Time
	steppedWant bool
}

// NewTiebreak returns the view of node self, which has seen nothing yet.
func NewTiebreak(self string) *Tiebreak { return &Tiebreak{self: self} }

// Observe records a read of the record at now; nil means there is none.
func (t *Tiebreak) Observe(now time.Time, rec *TieRecord) {
	if rec == nil {
		t.exists, t.version, t.holder = false, "", ""
		t.seenAt = now
		return
	}
	if !t.exists || rec.Version != t.version {
		t.seenAt = now
	}
	t.exists, t.version, t.holder = true, rec.Version, rec.Holder
	if rec.Holder != t.self {
		// Someone else wrote it: whatever this node thought it held is
		// gone (it cannot happen before heldUntil, but be strict).
		t.heldUntil = time.Time{}
	}
}

// Next returns what to write at now, given whether this node wants the
// record. A TieRelease stops counting the record at once, before the write.
func (t *Tiebreak) Next(now time.Time, want bool) TieAction {
	if want {
		t.wantedAt = now
	}
	holding := t.exists && t.holder == t.self
	switch {
	case holding && !want && now.Sub(t.wantedAt) >= TieKeep:
		t.heldUntil = time.Time{}
		return TieRelease
	case holding && now.Sub(t.lastWrite) >= TieRenew:
		// Also a record of this node's that it does not count (a write
		// whose answer was lost, a previous run): renewing makes it count.
		return TieRenewHold
	case holding || !want:
		return TieNone
	case !t.exists:
		return TieCreate
	case t.holder == "" || now.Sub(t.seenAt) >= TieDuration:
		return TieAcquire
	}
	return TieNone
}

// Written records the outcome of the write of a, sent at sent: rec is the
// record as written (nil on failure). Only a success counts, from sent on.
func (t *Tiebreak) Written(sent time.Time, a TieAction, rec *TieRecord) {
	if rec == nil {
		// Unknown outcome: the next read starts the wait afresh.
		t.version = ""
		return
	}
	t.exists, t.version, t.holder, t.seenAt = true, rec.Version, rec.Holder, sent
	switch a {
	case TieCreate, TieAcquire, TieRenewHold:
		if rec.Holder == t.self {
			t.heldUntil = sent.Add(TieDuration - TieMargin)
			t.lastWrite = sent
		}
	case TieRelease:
		t.heldUntil = time.Time{}
	}
}

// HeldUntil is until when this node counts the record (zero: it does not).
func (t *Tiebreak) HeldUntil() time.Time { return t.heldUntil }

// Holding reports whether the last record seen names this node: it then
// keeps reading and renewing it until it releases it.
func (t *Tiebreak) Holding() bool { return t.exists && t.holder == t.self }

// TieStore reads and writes the tie-breaker record, conditionally: the
// speaker's is a coordination.k8s.io Lease in the API server.
type TieStore interface {
	// Get returns the record, nil if there is none.
	Get(ctx context.Context) (*TieRecord, error)
	// Write performs a for node self: TieCreate creates the record held
	// by self; the others update it only if its version is still version
	// (TieRelease to Holder ""), and fail otherwise. It returns the
	// record as written.
	Write(ctx context.Context, a TieAction, self, version string) (*TieRecord, error)
}

// Due reports whether the caller should call Step at now, looking every
// TieWatch: TieRenew after the last call, or at once when this node wants
// the record and did not at the last call. A node starts wanting it only
// QuorumLease minus tieAsk (150 ms) before its majority would lapse, less
// than TieRenew.
func (t *Tiebreak) Due(now time.Time, want bool) bool {
	return t.stepped.IsZero() || now.Sub(t.stepped) >= TieRenew || want && !t.steppedWant
}

// Step reads the record and writes what Next says, when this node wants
// the record or holds it (otherwise it costs nothing), and hands every
// change of HeldUntil to set, a release before its write. now is the clock.
func (t *Tiebreak) Step(ctx context.Context, now func() time.Time, want bool, store TieStore, set func(time.Time)) error {
	t.stepped, t.steppedWant = now(), want
	if !want && !t.Holding() {
		return nil
	}
	rec, err := store.Get(ctx)
	if err != nil {
		return fmt.Errorf("reading the tie-breaker: %w", err)
	}
	t.Observe(now(), rec)
	a := t.Next(now(), want)
	set(t.heldUntil)
	if a == TieNone {
		return nil
	}
	sent := now()
	out, err := store.Write(ctx, a, t.self, t.version)
	t.Written(sent, a, out)
	set(t.heldUntil)
	if err != nil {
		return fmt.Errorf("writing the tie-breaker: %w", err)
	}
	return nil
}
