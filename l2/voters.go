package l2

import (
	"cmp"
	"hash/fnv"
	"slices"
	"strings"
	"time"
)

// Voters: the membership record names the voters, every known node in a
// cluster of up to SmallCluster nodes that are not gone, and MaxVoters of
// them in a larger one; leases then count a
// strict majority of them only, every node heartbeats the voters only, and
// the voters heartbeat every node with a report of every node they heard
// (a summary, see summary.go). A non-voter's cost is then independent of
// the cluster's size. The safety argument of liveness is unchanged with
// the voter set for the membership: two leases' majorities share a voter,
// whose heartbeats carry both the echo that counts for one and its report
// of the other. See docs/layer2.md, "Named voters, and a small voter set".
const (
	// SmallCluster is the largest cluster in which every node votes.
	SmallCluster = 7
	// MaxVoters is how many nodes vote in a larger one: the smallest odd
	// set that still grants leases with two voters dead.
	MaxVoters = 5
)

// chooseVoters returns the voters a record should name, given the nodes
// that will be out (sorted): the current voters that are still known and
// either not gone or alive in v's view, filled up to v.MaxVoters with the
// nodes alive in v's view, then any others, that are known and not gone,
// by voterRank. When at most SmallCluster known nodes are not gone, every
// known node not out votes, named: the same set as without voters, but a
// node that joins votes only once a record names it, so two sides of a
// split that learned of different joiners still count one voter set
// (TestLivenessJoinsDuringSplit). It returns nil (every known node not
// out votes, unnamed) when v.MaxVoters is 0: voters off.
func chooseVoters(v RecordView, out []string) []string {
	cands := without(without(v.Known, out), v.Gone)
	if v.MaxVoters <= 0 {
		return nil
	}
	if len(cands) <= SmallCluster {
		return without(v.Known, out)
	}
	var voters []string
	for _, n := range v.Current.Voters {
		// A gone voter is replaced once it is dead in this node's view
		// too, as a gone node leaves the voters in NextRecord.
		keep := slices.Contains(cands, n) || slices.Contains(v.Known, n) && slices.Contains(v.Alive, n)
		if keep && len(voters) < v.MaxVoters {
			voters = append(voters, n)
		}
	}
	sortByRank(cands)
	for _, alive := range []bool{true, false} {
		for _, n := range cands {
			if len(voters) < v.MaxVoters && slices.Contains(v.Alive, n) == alive && !slices.Contains(voters, n) {
				voters = append(voters, n)
			}
		}
	}
	slices.Sort(voters)
	return voters
}

// sortByRank orders candidates for a vote by a hash of their names, so
// that the voters spread over the cluster however the nodes are named.
func sortByRank(names []string) {
	rank := func(name string) uint64 {
		h := fnv.New64a()
		h.Write([]byte(name))
		return h.Sum64()
	}
	slices.SortFunc(names, func(a, b string) int {
		if c := cmp.Compare(rank(a), rank(b)); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
}

// isVoter says this node votes in a voter set of its record.
func (l *liveness) isVoter() bool {
	list, _ := l.membership()
	for _, set := range l.rec.voterSets(list) {
		if slices.Contains(set, l.self) {
			return true
		}
	}
	return false
}

// recipients returns to whom of all (the other nodes it can reach) this
// node sends a heartbeat: everyone without explicit voters, when it is a
// voter, or for a goodbye; otherwise the voters of every voter set.
func (l *liveness) recipients(all []string, bye bool) []string {
	if bye || !l.rec.hasVoters() || l.isVoter() {
		return all
	}
	var to []string
	list, _ := l.membership()
	sets := l.rec.voterSets(list)
	for _, n := range all {
		for _, set := range sets {
			if slices.Contains(set, n) {
				to = append(to, n)
				break
			}
		}
	}
	return to
}

// Addressed is one encoded heartbeat message and its recipient.
type addressed struct {
	to string
	b  []byte
}

// outgoing encodes hb (this node's heartbeat or goodbye at now) for the
// nodes of all it must go to (see recipients). Without explicit voters
// every recipient gets the same messages, as before voters existed. With
// them, a voter sends each recipient that announced the same known
// membership as its own a summary of what it heard instead of the list by
// name, with the recipient's own echo by name in the same message (see
// summary.go); to a recipient that reads them, as a delta when it can
// (summary_delta.go).
func (l *liveness) outgoing(now time.Time, hb heartbeat, all []string) []addressed {
	to := l.recipients(all, hb.Bye)
	var out []addressed
	var full [][]byte
	var plain []byte
	rs := l.reports(now, hb)
	if rs != nil {
		plain = summaryBytes(rs)
	}
	for _, n := range to {
		msgs := full
		if p := l.nodes[n]; rs != nil && p != nil && p.digest == hb.Digest {
			one := hb
			one.Summary, one.Heard = plain, nil
			if p.readsDelta && !l.noDelta {
				one.Summary, one.Delta = l.summaryFor(p, hb, rs)
			}
			if one.Delta != nil {
				l.summaries.SentDelta++
			} else {
				l.summaries.SentWhole++
			}
			// hb.Heard is sorted by node (liveness.heartbeat).
			if i, ok := slices.BinarySearchFunc(hb.Heard, n, func(h heard, n string) int { return strings.Compare(h.Node, n) }); ok {
				one.Heard = hb.Heard[i : i+1 : i+1]
			}
			msgs = l.encode(one)
		} else if full == nil {
			full = l.encode(hb)
			msgs = full
		}
		for _, b := range msgs {
			out = append(out, addressed{to: n, b: b})
		}
	}
	return out
}
