package speaker

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/berthlb/berth/l2"
)

// DefaultL2Members names the coordination.k8s.io Lease that holds the
// layer-2 membership record (l2.MemberRecord).
const DefaultL2Members = "berth-l2-members"

// DefaultL2ForgetAfter is how long a Node must not have been Ready before
// the speakers leave it out of the layer-2 quorum.
const DefaultL2ForgetAfter = 5 * time.Minute

// recordAnnotation holds the record, as JSON, on the Lease.
const recordAnnotation = "berth.dev/l2-members"

// recordPoll is how often a speaker considers writing the next record.
const recordPoll = 500 * time.Millisecond

// recordVerifyPolls is every how many polls one speaker reads the record
// even with nothing to change, to find it deleted or set back (see
// verifies).
const recordVerifyPolls = 20

// recordJSON is the record as stored.
type recordJSON struct {
	Rev     uint64   `json:"rev"`
	Out     []string `json:"out,omitempty"`
	Joint   bool     `json:"joint,omitempty"`
	NextOut []string `json:"nextOut,omitempty"`
	// Voters and NextVoters name the voters, in a large cluster with
	// --l2-voters (docs/layer2.md, "Named voters, and a small voter set").
	Voters     []string `json:"voters,omitempty"`
	NextVoters []string `json:"nextVoters,omitempty"`
}

// leaseRecordStore keeps the membership record on one Lease. Its writes
// carry the resourceVersion read, so the API server refuses all but one of
// competing writes; the revision in the record only grows.
type leaseRecordStore struct {
	leases leaseClient
	name   string
}

// storedRecord is the record as read, with what a conditional write of
// the next one needs.
type storedRecord struct {
	rec l2.MemberRecord
	// raw is the record's annotation as stored ("" without one): a write
	// of the known list alone keeps it byte for byte, as the admission
	// policy requires. known is the known list stored with it (l2known.go).
	raw   string
	known []string
	// exists says the Lease exists; version is its resourceVersion.
	exists  bool
	version string
}

// Get returns the record (revision 0 when there is none).
func (s *leaseRecordStore) Get(ctx context.Context) (storedRecord, error) {
	// No resourceVersion: a quorum read, never an older copy.
	l, err := s.leases.Get(ctx, s.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return storedRecord{}, nil
	}
	if err != nil {
		return storedRecord{}, fmt.Errorf("get lease %s: %w", s.name, err)
	}
	var r recordJSON
	raw, ok := l.Annotations[recordAnnotation]
	if ok {
		if err := json.Unmarshal([]byte(raw), &r); err != nil {
			return storedRecord{}, fmt.Errorf("lease %s: annotation %s: %w", s.name, recordAnnotation, err)
		}
	}
	known, err := decodeKnownList(l.Annotations)
	if err != nil {
		return storedRecord{}, fmt.Errorf("lease %s: %w", s.name, err)
	}
	rec := l2.MemberRecord{Rev: r.Rev, Out: r.Out, Joint: r.Joint, NextOut: r.NextOut, Voters: r.Voters, NextVoters: r.NextVoters}
	return storedRecord{rec: rec, raw: raw, known: known, exists: true, version: l.ResourceVersion}, nil
}

// Write stores r, and the known list read in prev, if the Lease is still
// as read in prev (or still absent).
func (s *leaseRecordStore) Write(ctx context.Context, r l2.MemberRecord, prev storedRecord) error {
	b, err := encodeRecord(r)
	if err != nil {
		return err
	}
	return s.write(ctx, b, prev.known, prev)
}

// encodeRecord returns r as stored.
func encodeRecord(r l2.MemberRecord) (string, error) {
	b, err := json.Marshal(recordJSON{Rev: r.Rev, Out: r.Out, Joint: r.Joint, NextOut: r.NextOut, Voters: r.Voters, NextVoters: r.NextVoters})
	if err != nil {
		return "", fmt.Errorf("encode record: %w", err)
	}
	return string(b), nil
}

// write stores the record annotation rec and the known list if the Lease
// is still as read in prev (or still absent).
func (s *leaseRecordStore) write(ctx context.Context, rec string, known []string, prev storedRecord) error {
	annotations := map[string]string{recordAnnotation: rec}
	if len(known) > 0 {
		annotations[knownAnnotation] = encodeKnownList(known)
	}
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: s.name, ResourceVersion: prev.version, Annotations: annotations}}
	var err error
	if !prev.exists {
		_, err = s.leases.Create(ctx, l, metav1.CreateOptions{})
	} else {
		_, err = s.leases.Update(ctx, l, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("write lease %s: %w", s.name, err)
	}
	return nil
}

// recordMembers is what the record loop needs of l2.Members.
type recordMembers interface {
	SetRecord(l2.MemberRecord)
	RecordView(gone []string) l2.RecordView
	Learn(names []string)
}

// runRecord reads the membership record until it succeeds once and hands
// it to m (which waits for it before it sends anything); after that it
// follows newer records from the heartbeats, and every recordPoll until
// ctx ends it reads the record again and writes the next one only when
// l2.NextRecord says so by what m knows: a cluster without changes to
// make costs the API server nothing. gone (nil: shrinking off, the record
// is only read at start) returns the nodes the API server says are gone.
// Every recordVerifyPolls polls it also reads the record when verifies
// says this node (self) is the one to, and restores it (see restoreRecord).
// It keeps the known list stored with the record (knownStep), nodes
// returning the names of the Nodes. After every step it hands observe the
// record m follows, and self.
func runRecord(ctx context.Context, m recordMembers, store *leaseRecordStore, self string, gone, nodes func() []string, observe func(l2.MemberRecord, string)) {
	log := logr.FromContextOrDiscard(ctx).WithName("record")
	var failing string
	read := false
	// last is the known list as last read.
	var last []string
	for poll := 1; ; poll++ {
		var err error
		if !read {
			var stored storedRecord
			stored, err = readRecord(ctx, m, store)
			read, last = err == nil, stored.known
		} else {
			v := m.RecordView(nil)
			due := poll%recordVerifyPolls == 0
			err = recordStep(ctx, log, m, store, gone, due && verifies(v, self))
			if err == nil {
				err = knownStep(ctx, log, m, store, nodes, &last, leads(v, self), due)
			}
		}
		switch {
		case err != nil && err.Error() != failing:
			failing = err.Error()
			log.V(2).Info("Membership record not read or written", "err", failing)
		case err == nil:
			failing = ""
		}
		observe(m.RecordView(nil).Current, self)
		select {
		case <-ctx.Done():
			return
		case <-time.After(recordPoll):
		}
	}
}

// readRecord reads the record once and hands it to m, after the known
// list stored with it: m counts those nodes before it can hold a lease.
func readRecord(ctx context.Context, m recordMembers, store *leaseRecordStore) (storedRecord, error) {
	// Bounded like the tie-breaker's: a hanging API server must not stop
	// the loop.
	ctx, cancel := context.WithTimeout(ctx, tieStepTimeout)
	defer cancel()
	stored, err := store.Get(ctx)
	if err != nil {
		return storedRecord{}, err
	}
	m.Learn(stored.known)
	m.SetRecord(stored.rec)
	return stored, nil
}

// verifies says whether this node (self) is the one of its side to read
// the record with nothing to change: it leads its side and follows a
// record. A cluster that never wrote a record reads nothing for it.
func verifies(v l2.RecordView, self string) bool {
	return v.Current.Rev > 0 && leads(v, self)
}

// leads says whether this node (self) is the one of its side to read the
// known list with nothing to change, and the one to write it: it holds
// its lease and comes first of the live nodes in its view.
func leads(v l2.RecordView, self string) bool {
	return v.Quorate && len(v.Alive) > 0 && v.Alive[0] == self
}

// recordStep writes the next record if one is due by what m knows, or
// with verify only reads it: it reads the record first (m may be behind
// it), restores it if it was deleted or set back (restoreRecord), and
// otherwise writes what l2.NextRecord then says, conditionally on what it
// read.
func recordStep(ctx context.Context, log logr.Logger, m recordMembers, store *leaseRecordStore, gone func() []string, verify bool) error {
	if gone == nil {
		return nil
	}
	if _, ok := l2.NextRecord(m.RecordView(gone())); !ok && !verify {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, tieStepTimeout)
	defer cancel()
	stored, err := store.Get(ctx)
	if err != nil {
		return err
	}
	rec := stored.rec
	m.SetRecord(rec)
	if restored, err := restoreRecord(ctx, log, m, store, stored); restored || err != nil {
		return err
	}
	next, ok := l2.NextRecord(m.RecordView(gone()))
	if !ok || next.Rev != rec.Rev+1 {
		return nil
	}
	if err := store.Write(ctx, next, stored); err != nil {
		return err
	}
	log.Info("Membership record written", "revision", next.Rev, "out", next.Out, "joint", next.Joint, "nextOut", next.NextOut, "voters", next.Voters, "nextVoters", next.NextVoters)
	m.SetRecord(next)
	return nil
}

// restoreRecord writes back the record m follows when the one stored
// (stored) is missing, the Lease having been deleted, or one revision
// older, as a speaker one revision behind may have recreated it: only
// while m holds its lease, whose record is then the newest or the one
// before it (a node holding a lease under r means no revision after r+1
// was written, and it adopts r+1 from the first heartbeat that carries
// it). A missing Lease is created, which fails if someone else created it
// first; an older record is updated by one revision, conditionally on
// what was read, as the admission policy requires. It reports whether it
// wrote.
func restoreRecord(ctx context.Context, log logr.Logger, m recordMembers, store *leaseRecordStore, stored storedRecord) (bool, error) {
	v := m.RecordView(nil)
	cur := v.Current
	if !v.Quorate || cur.Rev == 0 || (stored.exists && stored.rec.Rev+1 != cur.Rev) {
		return false, nil
	}
	if err := store.Write(ctx, cur, stored); err != nil {
		return false, err
	}
	log.Info("Membership record restored", "revision", cur.Rev, "stored", stored.rec.Rev, "leaseExisted", stored.exists)
	return true, nil
}

// goneNodes returns what the record loop calls for the nodes the API
// server says are gone for after; nil when after is 0 (shrinking off).
func (s *Speaker) goneNodes(after time.Duration) func() []string {
	if after <= 0 {
		return nil
	}
	return func() []string {
		nodes, err := s.listers.nodes.List(labels.Everything())
		if err != nil {
			return nil
		}
		return l2.GoneNodes(time.Now(), nodeHealth(nodes), after)
	}
}

// nodeHealth is what l2.GoneNodes needs of the Nodes. A Node without a
// Ready condition yet (just registered) counts as Ready.
func nodeHealth(nodes []*corev1.Node) []l2.NodeHealth {
	out := make([]l2.NodeHealth, 0, len(nodes))
	for _, n := range nodes {
		h := l2.NodeHealth{Name: n.Name, Ready: true}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				h.Ready, h.Since = c.Status == corev1.ConditionTrue, c.LastTransitionTime.Time
			}
		}
		out = append(out, h)
	}
	return out
}
