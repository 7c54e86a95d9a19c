package l2

import (
	"slices"
	"time"
)

// JointHold is how long a node must have been settled under a revision of
// the membership record (a strict majority of every voter set echoed its
// heartbeats while following exactly that revision) before it writes the
// next one. By then the echoes those nodes gave under earlier revisions
// have expired (QuorumLease, with a wide margin for clock rates), so no
// node can still hold a lease under a revision two behind the new one.
const JointHold = 2 * time.Second

// MemberRecord is the membership record: which known nodes do not vote,
// under a revision that the API server orders (every write is conditional
// on the revision read, and adds one). Revision 0 is "no record": every
// known node votes, as before the record existed.
//
// Changes go through a joint record: from {Out: X} to {Out: X, NextOut:
// Y, Joint: true} to {Out: Y}. Under a joint record a node needs a
// majority of both voter sets, so a node following the revision before or
// after it shares a voter set with it, and any two majorities of one set
// intersect. See liveness.voterSets and docs/layer2.md.
type MemberRecord struct {
	// Rev is the revision, 0 without a record.
	Rev uint64
	// Out are the nodes that do not vote, sorted.
	Out []string
	// Joint says a change to NextOut is under way: both voter sets count.
	Joint bool
	// NextOut are the nodes that will not vote once the change is done,
	// sorted; only when Joint.
	NextOut []string
	// Voters, when not empty, is the voter set itself, sorted, in place of
	// the known nodes minus Out: in a large cluster only a few nodes vote,
	// and heartbeats go to them only (see voters.go). NextVoters is the
	// same for NextOut, only when Joint.
	Voters     []string
	NextVoters []string
}

// voterSets returns the voter sets of r over the known nodes (sorted):
// one, or two under a joint record.
func (r MemberRecord) voterSets(known []string) [][]string {
	sets := [][]string{voterSet(known, r.Voters, r.Out)}
	if r.Joint {
		sets = append(sets, voterSet(known, r.NextVoters, r.NextOut))
	}
	return sets
}

// voterSet is the explicit voters that are known (sorted), or without
// them the known nodes minus out. A node learns every voter a record
// names (adopt), except those it forgot because their Node was deleted:
// such a voter counts no more, as a forgotten node does where no voters
// are named, so that deleting the Nodes of dead voters frees the others
// to hold leases and to write the record that replaces them
// (TestLivenessVotersDeletedNode).
func voterSet(known, voters, out []string) []string {
	if len(voters) == 0 {
		return without(known, out)
	}
	unknown := func(n string) bool {
		_, ok := slices.BinarySearch(known, n)
		return !ok
	}
	if !slices.ContainsFunc(voters, unknown) {
		return voters
	}
	return slices.DeleteFunc(slices.Clone(voters), unknown)
}

// Votes says node votes under r: a voter set of r names it, or names
// none and does not leave it out (node taken as known).
func (r MemberRecord) Votes(node string) bool {
	for _, set := range r.voterSets([]string{node}) {
		if slices.Contains(set, node) {
			return true
		}
	}
	return false
}

// hasVoters says a voter set of r is explicit: heartbeats of version 4,
// sent to the voters only.
func (r MemberRecord) hasVoters() bool {
	return len(r.Voters) > 0 || r.Joint && len(r.NextVoters) > 0
}

// clone returns a deep copy of r.
func (r MemberRecord) clone() MemberRecord {
	return MemberRecord{
		Rev: r.Rev, Out: slices.Clone(r.Out), Joint: r.Joint, NextOut: slices.Clone(r.NextOut),
		Voters: slices.Clone(r.Voters), NextVoters: slices.Clone(r.NextVoters),
	}
}

// without returns the names of all not in out, in order.
func without(all, out []string) []string {
	var s []string
	for _, n := range all {
		if !slices.Contains(out, n) {
			s = append(s, n)
		}
	}
	return s
}

// RecordView is what a node knows when it considers writing the next
// record (see NextRecord).
type RecordView struct {
	// Current is the record it follows, as last read from the API server
	// or heard in a heartbeat, whichever is newer.
	Current MemberRecord
	// Known is the known membership.
	Known []string
	// Gone are the nodes the API server says are gone for good (see
	// GoneNodes), sorted.
	Gone []string
	// Alive are the nodes alive in this node's view (Members.Members).
	Alive []string
	// Quorate says the node holds its lease now.
	Quorate bool
	// SettledFor is how long it has been settled under Current.Rev; a
	// negative value: not settled.
	SettledFor time.Duration
	// AllRead3 says every live node reads heartbeat version 3.
	AllRead3 bool
	// MaxVoters, when positive, lets a cluster of more than SmallCluster
	// nodes vote through that many voters (see chooseVoters); 0 keeps
	// every node a voter. AllRead4 says every live node reads heartbeat
	// version 4, which a record with voters needs.
	MaxVoters int
	AllRead4  bool
	// WritesFirst says the node may write the first record without a
	// lease (first_record.go): it holds none while there is no record,
	// has waited so for DeadAfter, hears a peer, and never heard a node
	// that does not wait.
	WritesFirst bool
}

// NextRecord returns the record this node should write, if any. The first
// record, when v.WritesFirst, names the voters at once, without a lease
// (first_record.go). Otherwise it acts
// only while it holds its lease and has been settled under the current
// revision for JointHold. A joint record is completed; otherwise, when the
// nodes that should be left out differ from those that are, a joint
// record starts the change, provided every live node reads version 3 (a
// record is carried only there) and at least one known node would vote.
//
// A node is left out while the API server says it is gone, and from the
// start only once it is also dead in this node's view: a node that
// still heartbeats costs the quorum nothing, and a node that sees the
// majority it is cut off from alive still holds no lease by the time they
// look dead to it (QuorumLease < DeadAfter), so it cannot shrink the
// quorum towards its own side. The write must be conditional on
// Current.Rev.
func NextRecord(v RecordView) (MemberRecord, bool) {
	cur := v.Current
	if cur.Rev == 0 && v.WritesFirst {
		want := outNodes(v)
		if voters := chooseVoters(v, want); len(voters) > 0 {
			return MemberRecord{Rev: 1, Out: want, Voters: voters}, true
		}
		return MemberRecord{}, false
	}
	if !v.Quorate || v.SettledFor < JointHold {
		return MemberRecord{}, false
	}
	if cur.Joint {
		return MemberRecord{Rev: cur.Rev + 1, Out: slices.Clone(cur.NextOut), Voters: slices.Clone(cur.NextVoters)}, true
	}
	want := outNodes(v)
	voters := chooseVoters(v, want)
	if len(cur.Voters) == 0 && !v.AllRead4 {
		// Not every live node reads version 4 (an upgrade under way): no
		// voters yet, but a change of out still goes ahead.
		voters = nil
	}
	switch {
	case slices.Equal(want, cur.Out) && slices.Equal(voters, cur.Voters),
		!v.AllRead3, len(voterSet(v.Known, voters, want)) == 0:
		return MemberRecord{}, false
	}
	next := cur.clone()
	next.Rev, next.Joint, next.NextOut, next.NextVoters = cur.Rev+1, true, want, voters
	return next, true
}

// outNodes returns the nodes a record should leave out, sorted: those the
// API server says are gone, when they are out already or dead in this
// node's view.
func outNodes(v RecordView) []string {
	var want []string
	for _, n := range v.Gone {
		if slices.Contains(v.Current.Out, n) || !slices.Contains(v.Alive, n) {
			want = append(want, n)
		}
	}
	slices.Sort(want)
	return slices.Compact(want)
}

// NodeHealth is what the API server says of a node, for GoneNodes.
type NodeHealth struct {
	Name string
	// Ready is the Node's Ready condition; Since its last transition.
	Ready bool
	Since time.Time
	// Renewed is the last renewal of the node's Lease in kube-node-lease
	// (zero: none seen).
	Renewed time.Time
}

// GoneNodes returns, sorted, the nodes that have not been Ready, or whose
// node Lease has not been renewed, for at least after at now: the nodes
// that leave the voter sets. after <= 0 returns none (shrinking is off).
func GoneNodes(now time.Time, nodes []NodeHealth, after time.Duration) []string {
	if after <= 0 {
		return nil
	}
	var out []string
	for _, n := range nodes {
		notReady := !n.Ready && now.Sub(n.Since) >= after
		expired := !n.Renewed.IsZero() && now.Sub(n.Renewed) >= after
		if notReady || expired {
			out = append(out, n.Name)
		}
	}
	slices.Sort(out)
	return out
}
