package speaker

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/berthlb/berth/l2"
)

// knownAnnotation holds the known list on the record's Lease: the nodes
// the speakers met, as a JSON array of names, sorted. A speaker that
// restarts learns them before it can hold a lease (l2/known_record.go),
// so that every speaker of one side restarting during a split still
// counts the other side. It is a separate annotation so that the record's
// revision rules stay as they are: adding a name is no new revision, and
// the admission policy lets a speaker change it only with the record
// unchanged.
const knownAnnotation = "berth.dev/l2-known"

// encodeKnownList returns the known list as stored.
func encodeKnownList(names []string) string {
	b, _ := json.Marshal(names) // a []string always encodes
	return string(b)
}

// decodeKnownList returns the known list in annotations (nil without
// one). A record written by the previous release has none.
func decodeKnownList(annotations map[string]string) ([]string, error) {
	v, ok := annotations[knownAnnotation]
	if !ok {
		return nil, nil
	}
	var names []string
	if err := json.Unmarshal([]byte(v), &names); err != nil {
		return nil, fmt.Errorf("annotation %s: %w", knownAnnotation, err)
	}
	return names, nil
}

// WriteKnown stores the known list, sorted, with the record as read in
// prev, if the Lease is still as read (or still absent). Without a record
// stored it stores cur, the record this node follows, as restoreRecord
// would: the caller holds its lease.
func (s *leaseRecordStore) WriteKnown(ctx context.Context, known []string, cur l2.MemberRecord, prev storedRecord) error {
	rec := prev.raw
	if rec == "" {
		var err error
		if rec, err = encodeRecord(cur); err != nil {
			return err
		}
	}
	return s.write(ctx, rec, known, prev)
}

// knownStep keeps the known list stored with the record, last being the
// list as last read. Only the node that leads its side (lead, see leads)
// acts: when l2.NextKnown says that what m knows differs from last, or
// with verify in any case, it reads the Lease, hands m the list read
// (Learn), and writes what l2.NextKnown then says, conditionally on what
// it read; a conflict is retried at the next poll, after a new read. nodes
// returns the names of the Nodes (nil when unknown: nothing is written).
func knownStep(ctx context.Context, log logr.Logger, m recordMembers, store *leaseRecordStore, nodes func() []string, last *[]string, lead, verify bool) error {
	if !lead {
		return nil
	}
	names := nodes()
	if _, ok := l2.NextKnown(*last, m.RecordView(nil).Known, names); !ok && !verify {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, tieStepTimeout)
	defer cancel()
	stored, err := store.Get(ctx)
	if err != nil {
		return err
	}
	*last = stored.known
	m.Learn(stored.known)
	v := m.RecordView(nil)
	next, ok := l2.NextKnown(stored.known, v.Known, names)
	if !ok {
		return nil
	}
	if err := store.WriteKnown(ctx, next, v.Current, stored); err != nil {
		return err
	}
	*last = next
	log.Info("Known list written", "known", next, "was", stored.known)
	return nil
}

// nodeNames returns the names of the Nodes, sorted, for knownStep; nil
// when the Node lister fails.
func (s *Speaker) nodeNames() []string {
	nodes, err := s.listers.nodes.List(labels.Everything())
	if err != nil {
		return nil
	}
	names := make([]string, 0, len(nodes))
	for _, n := range nodes {
		names = append(names, n.Name)
	}
	slices.Sort(names)
	return names
}
