package l2

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestKeeps(t *testing.T) {
	const u = summaryAgeUnit
	said := func(units int, quorate bool) byte {
		return summaryByte(report{age: time.Duration(units) * u, quorate: quorate}, 0)
	}
	tests := []struct {
		name string
		b    byte
		r    report
		want bool
	}{
		{name: "not heard, still not", b: 0, r: report{age: -1}, want: true},
		{name: "not heard, now heard", b: 0, r: report{age: 0}, want: false},
		{name: "heard, now not", b: said(5, true), r: report{age: -1}, want: false},
		{name: "same age", b: said(5, true), r: report{age: 5 * u, quorate: true}, want: true},
		{name: "older, within the band", b: said(5, true), r: report{age: 8*u - 1, quorate: true}, want: true},
		{name: "older by the band", b: said(5, true), r: report{age: 8 * u, quorate: true}, want: false},
		// Heard more recently than the entry says: the receiver would
		// think the node older than it is, the unsafe side.
		{name: "younger", b: said(5, true), r: report{age: 5*u - 1, quorate: true}, want: false},
		{name: "quorate flag changed", b: said(5, true), r: report{age: 5 * u, quorate: false}, want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := keeps(tc.b, tc.r); got != tc.want {
				t.Errorf("keeps(%#x, %+v) = %v, want %v", tc.b, tc.r, got, tc.want)
			}
		})
	}
}

// deltaPair is a voter and a node that reads deltas, over the same
// known membership, with each one's state of the other.
type deltaPair struct {
	v, r   *liveness
	pv, pr *peerState // pv: what r keeps of v; pr: what v keeps of r
}

func newDeltaPair(names []string) *deltaPair {
	v := newLiveness(names[0], 7, simStart, defaultTiming(), true)
	r := newLiveness(names[1], 8, simStart, defaultTiming(), true)
	for _, n := range names {
		v.join(simStart, n)
		r.join(simStart, n)
	}
	return &deltaPair{v: v, r: r, pv: r.peer(v.self), pr: v.peer(r.self)}
}

// send has v build its summary to r saying rs at now, encodes and
// decodes it, and returns the heartbeat r receives.
func (dp *deltaPair) send(t *testing.T, now time.Time, rs []report) heartbeat {
	t.Helper()
	_, digest := dp.v.membership()
	hb := heartbeat{From: dp.v.self, Epoch: dp.v.epoch, Stamp: dp.v.stampAt(now), Rec: MemberRecord{Rev: 2, Voters: []string{dp.v.self}}, Digest: digest, Reads4: true}
	hb.Summary, hb.Delta = dp.v.summaryFor(dp.pr, hb, rs)
	msgs := dp.v.encode(hb)
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	got, err := decodeHeartbeat(msgs[0])
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// echo has r's echo of v's heartbeat of stamp reach v.
func (dp *deltaPair) echo(stamp uint64, read bool) {
	if stamp >= dp.pr.ack {
		dp.pr.ack, dp.pr.ackRead = stamp, read
	}
}

func TestSummaryFor(t *testing.T) {
	const u = summaryAgeUnit
	names := []string{"a", "b", "c", "d", "e", "f"}
	steady := []report{{age: -1}, {age: 20 * u, quorate: true}, {age: 3 * u, quorate: true}, {age: 9 * u}, {age: -1}, {age: 11 * u, quorate: true}}
	moved := slices.Clone(steady)
	moved[3].age = 30 * u
	tests := []struct {
		name string
		// echo: r's echo of the first heartbeat reaches v, and says it
		// read its summary.
		echo, read bool
		second     []report
		wantDelta  []int // nil: the whole summary
	}{
		{name: "no echo yet: whole", second: steady},
		{name: "echo without the summary read: whole", echo: true, second: steady},
		{name: "read, nothing changed: empty delta", echo: true, read: true, second: steady, wantDelta: []int{}},
		{name: "read, one node older: one change", echo: true, read: true, second: moved, wantDelta: []int{3}},
		{name: "read, every node changed: whole", echo: true, read: true, second: []report{{age: 1}, {age: 1}, {age: 1}, {age: 1}, {age: 1}, {age: 1}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dp := newDeltaPair(names)
			now := simStart.Add(time.Second)
			first := dp.send(t, now, steady)
			if first.Delta != nil || first.Summary == nil {
				t.Fatalf("first summary %+v", first)
			}
			if got := dp.r.readSummary(dp.pv, first); got == nil {
				t.Fatal("first summary not read")
			}
			if tc.echo {
				dp.echo(first.Stamp, tc.read)
			}
			second := dp.send(t, now.Add(HeartbeatInterval), tc.second)
			switch {
			case tc.wantDelta == nil && second.Delta != nil:
				t.Fatalf("delta %+v, want the whole summary", second.Delta)
			case tc.wantDelta != nil && second.Delta == nil:
				t.Fatalf("whole summary %v, want a delta", second.Summary)
			case tc.wantDelta != nil:
				if diff := cmp.Diff(tc.wantDelta, second.Delta.Index, cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("changed entries (-want +got):\n%s", diff)
				}
			}
			got := dp.r.readSummary(dp.pv, second)
			if got == nil {
				t.Fatal("second summary not read")
			}
			checkSummary(t, got, tc.second)
		})
	}
}

// checkSummary checks that every entry of sum says the report in rs:
// 0 for a node not heard, otherwise its Quorate flag and an age no
// greater than the report's (towards "alive") and less than 24 ms below.
func checkSummary(t *testing.T, sum []byte, rs []report) {
	t.Helper()
	for i, b := range sum {
		r := rs[i]
		said := time.Duration(int(b&0x7f)-1) * 8 * time.Millisecond
		ok := b == 0 && r.age < 0 ||
			b != 0 && r.age >= 0 && (b&0x80 != 0) == r.quorate && said <= r.age && r.age < said+24*time.Millisecond
		if !ok {
			t.Errorf("entry %d is %#x, the voter's report %+v", i, b, r)
		}
	}
}

func TestReadSummaryWithoutBase(t *testing.T) {
	dp := newDeltaPair([]string{"a", "b", "c"})
	now := simStart.Add(time.Second)
	rs := []report{{age: -1}, {age: 0, quorate: true}, {age: 40 * time.Millisecond}}
	first := dp.send(t, now, rs)
	// r never receives the first; v hears an echo saying it read it (of
	// an earlier run of r, say) and sends a delta against it.
	dp.echo(first.Stamp, true)
	second := dp.send(t, now.Add(HeartbeatInterval), rs)
	if second.Delta == nil {
		t.Fatal("no delta")
	}
	if got := dp.r.readSummary(dp.pv, second); got != nil || dp.pv.gotRead {
		t.Fatalf("read %v without its base (gotRead %v)", got, dp.pv.gotRead)
	}
	// Its echo says so: v sends the whole summary next, which r reads.
	dp.echo(second.Stamp, dp.pv.gotRead)
	third := dp.send(t, now.Add(2*HeartbeatInterval), rs)
	if third.Delta != nil {
		t.Fatalf("delta %+v after an echo without the summary read", third.Delta)
	}
	if got := dp.r.readSummary(dp.pv, third); got == nil || !dp.pv.gotRead {
		t.Fatal("whole summary not read")
	}
	if want := (Summaries{ReadWhole: 1, Unreadable: 1}); dp.r.summaries != want {
		t.Errorf("receiver counted %+v, want %+v", dp.r.summaries, want)
	}
}

// TestSummaryDeltaRandom sends summaries from a voter to a node for
// random sequences of 500 heartbeats, through the encoding, with nodes
// that stop and start being heard, change their Quorate flag and whose
// heartbeats jitter, with summaries and echoes lost or late at random,
// two heartbeats sent in the same nanosecond, and the membership growing
// now and then. After every step, every summary the node read says every
// node as the voter heard it, erring towards "alive" by less than
// summaryBand units; and most of them were deltas.
func TestSummaryDeltaRandom(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 99))
			names := nodeNames(40)
			dp := newDeltaPair(names)
			phase := make([]time.Duration, len(names))
			alive := make([]bool, len(names))
			quorate := make([]bool, len(names))
			for i := range names {
				phase[i] = time.Duration(rng.IntN(100)) * time.Millisecond
				alive[i], quorate[i] = i > 0, true
			}
			now := simStart.Add(time.Second)
			var sent []heartbeat // not yet received
			// truth is what the voter meant by each heartbeat's summary,
			// nil for two heartbeats of one stamp (either may arrive).
			truth := map[uint64][]report{}
			var newest uint64
			var read, deltas int
			for step := range 500 {
				now = now.Add(HeartbeatInterval + time.Duration(rng.IntN(3)-1)*time.Millisecond)
				if rng.IntN(100) == 0 {
					// A node joins: both learn it, the digest changes.
					n := fmt.Sprintf("late-%03d", step)
					dp.v.join(now, n)
					dp.r.join(now, n)
					names = append(names, n)
					slices.Sort(names)
					i, _ := slices.BinarySearch(names, n)
					phase = slices.Insert(phase, i, time.Duration(rng.IntN(100))*time.Millisecond)
					alive, quorate = slices.Insert(alive, i, true), slices.Insert(quorate, i, true)
				}
				rs := make([]report, len(names))
				for i, n := range names {
					rs[i].age = -1
					switch x := rng.IntN(200); {
					case x == 0:
						alive[i] = !alive[i]
					case x == 1:
						quorate[i] = !quorate[i]
					}
					if alive[i] && n != dp.v.self {
						rs[i] = report{age: phase[i] + time.Duration(rng.IntN(5))*time.Millisecond, quorate: quorate[i]}
					}
				}
				hb := dp.send(t, now, rs)
				truth[hb.Stamp] = rs
				sent = append(sent, hb)
				if rng.IntN(50) == 0 {
					// A second heartbeat in the same nanosecond, after
					// a node's Quorate flag changed.
					rs2 := slices.Clone(rs)
					i := rng.IntN(len(rs2))
					alive[i], quorate[i] = true, !quorate[i]
					rs2[i] = report{age: phase[i], quorate: quorate[i]}
					sent = append(sent, dp.send(t, now, rs2))
					truth[hb.Stamp] = nil
				}
				// Deliver, lose or delay what was sent.
				var keep []heartbeat
				for _, m := range sent {
					switch x := rng.IntN(10); {
					case x == 0:
						continue // lost
					case x == 1 && len(keep) < 3:
						keep = append(keep, m) // late
						continue
					}
					if m.Stamp < newest {
						continue // older than one received: liveness.use drops it
					}
					newest = m.Stamp
					got := dp.r.readSummary(dp.pv, m)
					if got == nil {
						continue
					}
					read++
					if m.Delta != nil {
						deltas++
					}
					if want := truth[m.Stamp]; want != nil {
						checkSummary(t, got, want)
					}
				}
				sent = keep
				// r echoes the newest heartbeat it received, saying
				// whether it read its summary, most of the time.
				if newest > 0 && rng.IntN(4) != 0 {
					dp.echo(newest, dp.pv.gotRead)
				}
				if t.Failed() {
					t.Fatalf("step %d", step)
				}
			}
			if read < 300 || deltas < read/2 {
				t.Errorf("%d summaries read, %d of them deltas", read, deltas)
			}
			t.Logf("%d summaries read, %d of them deltas", read, deltas)
		})
	}
}

// TestLivenessVotersDeltaUpgrade upgrades 10 nodes under five voters, one
// at a time, from the release before summary deltas (which cannot decode
// one: the simulator fails the test if such a node is sent a delta). The
// membership stays whole and quorate after every step, and summaries
// between upgraded nodes become deltas.
func TestLivenessVotersDeltaUpgrade(t *testing.T) {
	names := nodeNames(10)
	ss := newScaleSimWith(t, names, func(ss *shrinkSim) { ss.noDelta = true })
	if len(ss.rec.Voters) != MaxVoters {
		t.Fatalf("record %+v, want %d voters", ss.rec, MaxVoters)
	}
	ss.noDelta = false
	counted := func() (c Summaries) {
		for _, n := range names {
			s := ss.nodes[n].summaries
			c.SentWhole, c.SentDelta = c.SentWhole+s.SentWhole, c.SentDelta+s.SentDelta
			c.ReadWhole, c.ReadDelta, c.Unreadable = c.ReadWhole+s.ReadWhole, c.ReadDelta+s.ReadDelta, c.Unreadable+s.Unreadable
		}
		return c
	}
	for i, x := range names {
		ss.down[x] = true
		ss.run(time.Second)
		ss.restart(x, false)
		d0, w0, c0 := ss.deltas, ss.wholes, counted()
		ss.run(3 * time.Second)
		// Every summary delivered was counted as read or unreadable, and
		// every delta read was counted as one.
		c := counted()
		if got, want := c.ReadWhole+c.ReadDelta+c.Unreadable-c0.ReadWhole-c0.ReadDelta-c0.Unreadable, uint64(ss.deltas-d0+ss.wholes-w0); got != want {
			t.Errorf("after upgrading %s: %d summaries counted as received, %d delivered", x, got, want)
		}
		if got, want := c.ReadDelta-c0.ReadDelta, uint64(ss.deltas-d0); got > want || c.SentDelta-c0.SentDelta < got {
			t.Errorf("after upgrading %s: %d deltas read, %d delivered, %d sent", x, got, want, c.SentDelta-c0.SentDelta)
		}
		if q := ss.quorateNodes(); !slices.Equal(q, names) {
			t.Errorf("after upgrading %s: quorate %v", x, q)
		}
		for _, o := range names {
			if got := ss.nodes[o].alive(ss.now); !slices.Equal(got, names) {
				t.Errorf("after upgrading %s: %s sees %v alive", x, o, got)
			}
		}
		t.Logf("after upgrading %d: %d deltas, %d whole summaries in 3 s", i+1, ss.deltas-d0, ss.wholes-w0)
		if i == len(names)-1 && ss.deltas-d0 < 10*(ss.wholes-w0) {
			t.Errorf("all upgraded: %d deltas, %d whole summaries", ss.deltas-d0, ss.wholes-w0)
		}
	}
	ss.checkSafe()
}

func TestDecodeDeltaErrors(t *testing.T) {
	rec := MemberRecord{Rev: 2, Voters: []string{"a", "b", "c"}}
	tests := []struct {
		name string
		d    summaryDelta
	}{
		{name: "index at the length", d: summaryDelta{Len: 3, Index: []int{3}, B: []byte{1}}},
		{name: "index twice", d: summaryDelta{Len: 3, Index: []int{1, 1}, B: []byte{1, 1}}},
		{name: "indexes decreasing", d: summaryDelta{Len: 3, Index: []int{2, 1}, B: []byte{1, 1}}},
		{name: "more changes than nodes", d: summaryDelta{Len: 2, Index: []int{0, 1, 2}, B: []byte{1, 1, 1}}},
		{name: "too many nodes", d: summaryDelta{Len: maxHeard + 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := encodeHeartbeats(heartbeat{From: "a", Epoch: 1, Seq: 1, Stamp: 2, Rec: rec, Delta: &tc.d})[0]
			if hb, err := decodeHeartbeat(b); err == nil {
				t.Errorf("decoded %+v", hb.Delta)
			}
		})
	}
	good := encodeHeartbeats(heartbeat{From: "a", Epoch: 1, Seq: 1, Stamp: 2, Rec: rec, Delta: &summaryDelta{Len: 3, Index: []int{1}, B: []byte{1}}})[0]
	if _, err := decodeHeartbeat(good); err != nil {
		t.Fatalf("good delta: %v", err)
	}
	// The entry count (0) follows the delta: cut it and the delta's last
	// byte.
	if hb, err := decodeHeartbeat(good[:len(good)-2]); err == nil {
		t.Errorf("decoded a truncated delta: %+v", hb.Delta)
	}
}

// TestSummaryAfterRestart: once a new run of the node is heard, the voter
// sends it the whole summary, even though the previous run's echo said it
// read one.
func TestSummaryAfterRestart(t *testing.T) {
	dp := newDeltaPair([]string{"a", "b", "c"})
	now := simStart.Add(time.Second)
	rs := []report{{age: -1}, {age: 0, quorate: true}, {age: 40 * time.Millisecond}}
	first := dp.send(t, now, rs)
	dp.echo(first.Stamp, true)
	if second := dp.send(t, now.Add(HeartbeatInterval), rs); second.Delta == nil {
		t.Fatal("no delta before the restart")
	}
	now = now.Add(2 * HeartbeatInterval)
	dp.v.receive(now, heartbeat{From: dp.r.self, Epoch: dp.r.epoch + 1, Seq: 1, Stamp: 1, Reads4: true, ReadsDelta: true})
	if third := dp.send(t, now, rs); third.Delta != nil {
		t.Fatalf("delta %+v to a new run of the node", third.Delta)
	}
}
