package l2

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// sim runs liveness instances on a simulated network with a fake clock:
// every node sends a heartbeat each HeartbeatInterval (at its own phase),
// and at once after regaining its lease, like Members; messages take 1 ms
// plus the sender's extra delay, unless the link is cut or a node is down.
type sim struct {
	t     *testing.T
	now   time.Time
	names []string
	nodes map[string]*liveness
	next  map[string]time.Time
	down  map[string]bool
	cut   map[[2]string]bool
	delay map[string]time.Duration
	queue []simMsg
	epoch uint64
	// violations are the times a quorate node was not alive in the view
	// of another quorate node.
	violations []string
	// gone records, per observer and node, when the node was last seen
	// leaving the observer's alive set.
	gone map[[2]string]time.Time
	prev map[string][]string
	// tick, if set, runs for every node that is up at each of its
	// heartbeats (the tie-breaker's loop, say); after, if set, at every
	// step after the safety check.
	tick  func(n string)
	after func()
	// tieLoop, if set, runs for every node that is up every TieWatch
	// (the tie-breaker's loop).
	tieLoop func(n string)
	// packets and bytes count the heartbeat messages sent (one per
	// recipient) and their payload; sent and recv the same per node.
	packets, bytes int
	sent, recv     map[string]*traffic
	// scale makes the nodes take part in voter sets (liveness.scale);
	// firstRecord makes them wait for the first record and write it
	// without a lease (liveness.firstRecord), as the speaker does; broken
	// breaks a rule of the voter protocol in every node.
	scale, firstRecord bool
	broken             brokenRule
	// noDelta starts nodes of the release before summary deltas
	// (liveness.noDelta); deltas and wholes count the summaries
	// delivered as deltas and whole.
	noDelta        bool
	deltas, wholes int
	// noCheck skips the safety check, and records only the departures
	// of the nodes of watch (benchmarks of large clusters). checkEvery,
	// if set, records only those departures at every step too, and
	// checks safety every checkEvery instead of every millisecond
	// (simulations of hundreds of nodes, where the check costs n² a
	// step).
	noCheck    bool
	watch      []string
	checkEvery time.Duration
	// memberlist makes restarts and joins as memberlist makes them (see
	// meet): a restarted node meets only the nodes it can reach, and
	// learns the others from their known memberships (known.go) unless
	// noExchange.
	memberlist, noExchange bool
	// timing, if set, replaces the nodes' default timing.
	timing *timing
	// jitter, if set, delays each message by up to jitter more, drawn
	// from jitterRand (seeded, so runs repeat).
	jitter     time.Duration
	jitterRand *rand.Rand
}

// traffic counts a node's heartbeat packets and payload bytes.
type traffic struct{ packets, bytes int }

type simMsg struct {
	at time.Time
	to string
	b  []byte
}

var simStart = time.Unix(1_000_000, 0)

func newSim(t *testing.T, names ...string) *sim {
	s := &sim{
		t: t, now: simStart, names: names, nodes: map[string]*liveness{}, next: map[string]time.Time{},
		down: map[string]bool{}, cut: map[[2]string]bool{}, delay: map[string]time.Duration{},
		gone: map[[2]string]time.Time{}, prev: map[string][]string{},
		sent: map[string]*traffic{}, recv: map[string]*traffic{},
	}
	for _, n := range names {
		s.sent[n], s.recv[n] = &traffic{}, &traffic{}
	}
	// Every node joins every other, as start does one node at a time, but
	// with one recomputation per node: joining them one by one costs n³
	// log n, an hour at 1,000 nodes.
	for i, n := range names {
		s.newNode(n)
		// Spread the phases as independent tickers would.
		s.next[n] = s.now.Add(time.Duration(i*37%100) * time.Millisecond)
	}
	for _, n := range names {
		l := s.nodes[n]
		for _, o := range names {
			if o != n {
				l.contacted = true
				l.add(o)
			}
		}
		l.recompute(s.now)
	}
	return s
}

// newNode puts a new run of node n (a new epoch) in place, knowing only
// itself.
func (s *sim) newNode(n string) *liveness {
	s.epoch++
	tm := defaultTiming()
	if s.timing != nil {
		tm = *s.timing
	}
	l := newLiveness(n, s.epoch, s.now, tm, true)
	l.scale, l.firstRecord, l.broken, l.noDelta = s.scale, s.firstRecord, s.broken, s.noDelta
	s.nodes[n] = l
	s.next[n] = s.now
	delete(s.down, n)
	return l
}

// start (re)starts node n with a new epoch; every node already knows it,
// as memberlist would after it joins.
func (s *sim) start(n string) {
	restart := s.nodes[n] != nil
	l := s.newNode(n)
	if s.memberlist && restart {
		s.meet(n)
		return
	}
	for _, o := range s.names {
		if o != n {
			l.join(s.now, o)
			if ol := s.nodes[o]; ol != nil {
				ol.join(s.now, n)
			}
		}
	}
}

// meet makes node n join every node it can reach and does not know yet,
// as the speaker's rejoin loop (every second) and memberlist's state
// exchange do: both learn the other's known membership, unless noExchange.
// Memberlist passes on no node that a member suspects or declared dead, so
// n learns nothing else from it.
func (s *sim) meet(n string) {
	l := s.nodes[n]
	for _, o := range s.names {
		if o == n || s.down[o] || s.cut[[2]string{n, o}] || s.cut[[2]string{o, n}] || l.known[o] {
			continue
		}
		ol := s.nodes[o]
		l.join(s.now, o)
		ol.join(s.now, n)
		if !s.noExchange {
			l.learn(s.now, ol.knownNodes())
			ol.learn(s.now, l.knownNodes())
		}
	}
}

func (s *sim) send(from string, hb heartbeat) {
	all := make([]string, 0, len(s.names))
	for _, to := range s.names {
		if to != from {
			all = append(all, to)
		}
	}
	for _, m := range s.nodes[from].outgoing(s.now, hb, all) {
		if s.cut[[2]string{from, m.to}] {
			continue
		}
		d := time.Millisecond + s.delay[from]
		if s.jitter > 0 {
			if s.jitterRand == nil {
				s.jitterRand = rand.New(rand.NewPCG(1, 2))
			}
			d += time.Duration(s.jitterRand.Int64N(int64(s.jitter/time.Millisecond)+1)) * time.Millisecond
		}
		s.queue = append(s.queue, simMsg{at: s.now.Add(d), to: m.to, b: m.b})
		s.packets++
		s.bytes += len(m.b)
		s.sent[from].packets++
		s.sent[from].bytes += len(m.b)
		s.recv[m.to].packets++
		s.recv[m.to].bytes += len(m.b)
	}
}

// run advances the clock by d in 1 ms steps.
func (s *sim) run(d time.Duration) {
	end := s.now.Add(d)
	for s.now.Before(end) {
		s.now = s.now.Add(time.Millisecond)
		// What a node sends while receiving (a heartbeat at once when it
		// regains its lease) is queued anew, not lost with the old queue.
		due := s.queue
		s.queue = nil
		var rest []simMsg
		for _, m := range due {
			if m.at.After(s.now) {
				rest = append(rest, m)
				continue
			}
			if s.down[m.to] {
				continue
			}
			l := s.nodes[m.to]
			if l.legacy && m.b[len(heartbeatMagic)] != heartbeatVersion2 {
				continue // a speaker of the previous release cannot read it
			}
			hb, err := decodeHeartbeat(m.b)
			if err != nil {
				s.t.Fatal(err)
			}
			switch {
			case hb.Delta != nil && l.noDelta:
				// That release would fail to decode it.
				s.t.Fatalf("%s sent %s, which does not read deltas, a delta", hb.From, m.to)
			case hb.Delta != nil:
				s.deltas++
			case hb.Summary != nil:
				s.wholes++
			}
			l.receive(s.now, hb)
			if l.takeRegained() {
				s.send(m.to, l.heartbeat(s.now))
			}
		}
		s.queue = append(rest, s.queue...)
		for _, n := range s.names {
			if !s.down[n] && !s.next[n].After(s.now) {
				if !s.nodes[n].silent() {
					s.send(n, s.nodes[n].heartbeat(s.now))
				}
				s.next[n] = s.next[n].Add(HeartbeatInterval)
				if s.memberlist && s.now.Sub(simStart)%time.Second < HeartbeatInterval {
					s.meet(n)
				}
				if s.tick != nil {
					s.tick(n)
				}
			}
		}
		if s.tieLoop != nil && s.now.Sub(simStart)%TieWatch == 0 {
			for _, n := range s.names {
				if !s.down[n] {
					s.tieLoop(n)
				}
			}
		}
		s.check()
		if s.after != nil {
			s.after()
		}
	}
}

// check records safety violations and departures.
func (s *sim) check() {
	if s.noCheck || s.checkEvery > 0 {
		s.departures()
		if s.checkEvery > 0 && s.now.Sub(simStart)%s.checkEvery == 0 {
			s.safety()
		}
		return
	}
	for _, p := range s.names {
		if s.down[p] {
			continue
		}
		alive := s.nodes[p].alive(s.now)
		for _, x := range s.prev[p] {
			if _, ok := slices.BinarySearch(alive, x); !ok {
				s.gone[[2]string{p, x}] = s.now
			}
		}
		s.prev[p] = alive
	}
	s.safety()
}

// safety records a violation for every quorate node that another quorate
// node does not see alive.
func (s *sim) safety() {
	var quorate []string
	for _, x := range s.names {
		if s.quorate(x) {
			quorate = append(quorate, x)
		}
	}
	for _, p := range quorate {
		l := s.nodes[p]
		for _, x := range quorate {
			if q := l.nodes[x]; x != p && (q == nil || !l.isAlive(q, s.now)) {
				s.violations = append(s.violations, fmt.Sprintf("%v: %s is quorate but %s (quorate) sees only %v", s.now.Sub(simStart), x, p, l.alive(s.now)))
			}
		}
	}
}

// departures records when each node stopped seeing the nodes of watch
// alive.
func (s *sim) departures() {
	for _, p := range s.names {
		if s.down[p] {
			continue
		}
		l := s.nodes[p]
		for _, x := range s.watch {
			q := l.nodes[x]
			key := [2]string{p, x}
			alive := q != nil && l.isAlive(q, s.now)
			if !alive && slices.Contains(s.prev[p], x) {
				s.gone[key] = s.now
				s.prev[p] = without(s.prev[p], []string{x})
			}
			if alive && !slices.Contains(s.prev[p], x) {
				s.prev[p] = append(s.prev[p], x)
			}
		}
	}
}

func (s *sim) quorate(n string) bool {
	if s.down[n] {
		return false
	}
	_, ok := s.nodes[n].lease(s.now)
	return ok
}

func (s *sim) partition(a, b []string, cut bool) {
	for _, x := range a {
		for _, y := range b {
			s.cut[[2]string{x, y}], s.cut[[2]string{y, x}] = cut, cut
		}
	}
}

func TestLiveness(t *testing.T) {
	abc := []string{"a", "b", "c"}
	// Every scenario runs 2 s to settle, then its event, then 3 s.
	const settle, after = 2 * time.Second, 3 * time.Second
	tests := []struct {
		name  string
		nodes []string
		event func(s *sim)
		// mid, if set, runs halfway through the 3 s after the event.
		mid         func(s *sim)
		wantQuorate []string
		wantAlive   map[string][]string
		// gone: observer "a" drops node "c" within these bounds of the
		// event (zero: not checked).
		goneMin, goneMax time.Duration
	}{
		{
			name: "steady", nodes: abc, event: func(*sim) {},
			wantQuorate: abc, wantAlive: map[string][]string{"a": abc, "b": abc, "c": abc},
		},
		{
			name: "c crashes", nodes: abc, event: func(s *sim) { s.down["c"] = true },
			wantQuorate: []string{"a", "b"}, wantAlive: map[string][]string{"a": {"a", "b"}, "b": {"a", "b"}},
			goneMin: DeadAfter - HeartbeatInterval, goneMax: DeadAfter + 5*time.Millisecond,
		},
		{
			name: "c partitioned off", nodes: abc, event: func(s *sim) { s.partition([]string{"c"}, []string{"a", "b"}, true) },
			wantQuorate: []string{"a", "b"}, wantAlive: map[string][]string{"a": {"a", "b"}, "c": {"c"}},
			goneMin: DeadAfter - HeartbeatInterval, goneMax: DeadAfter + 5*time.Millisecond,
		},
		{
			name: "c cannot send", nodes: abc,
			event:       func(s *sim) { s.cut[[2]string{"c", "a"}], s.cut[[2]string{"c", "b"}] = true, true },
			wantQuorate: []string{"a", "b"}, wantAlive: map[string][]string{"a": {"a", "b"}},
			goneMin: DeadAfter - HeartbeatInterval, goneMax: DeadAfter + 5*time.Millisecond,
		},
		{
			// c's heartbeats still arrive, but say it lost its lease.
			name: "c cannot hear", nodes: abc,
			event:       func(s *sim) { s.cut[[2]string{"a", "c"}], s.cut[[2]string{"b", "c"}] = true, true },
			wantQuorate: []string{"a", "b"}, wantAlive: map[string][]string{"a": {"a", "b"}},
			goneMin: QuorumLease - HeartbeatInterval, goneMax: DeadAfter + 5*time.Millisecond,
		},
		{
			// b relays what it hears of each: nobody loses anything.
			name: "link a-c cut", nodes: abc, event: func(s *sim) { s.partition([]string{"a"}, []string{"c"}, true) },
			wantQuorate: abc, wantAlive: map[string][]string{"a": abc, "b": abc, "c": abc},
		},
		{
			name: "c's heartbeats 150 ms late", nodes: abc, event: func(s *sim) { s.delay["c"] = 150 * time.Millisecond },
			wantQuorate: abc, wantAlive: map[string][]string{"a": abc, "c": abc},
		},
		{
			// Echoes of c's heartbeats come back after its lease: c
			// loses it and says so, and the others take over at once.
			name: "c's heartbeats 400 ms late", nodes: abc, event: func(s *sim) { s.delay["c"] = 400 * time.Millisecond },
			wantQuorate: []string{"a", "b"}, wantAlive: map[string][]string{"a": {"a", "b"}, "b": {"a", "b"}},
			goneMin: QuorumLease, goneMax: QuorumLease + 500*time.Millisecond,
		},
		{
			name: "partition heals", nodes: abc, event: func(s *sim) { s.partition([]string{"c"}, []string{"a", "b"}, true) },
			mid:         func(s *sim) { s.partition([]string{"c"}, []string{"a", "b"}, false) },
			wantQuorate: abc, wantAlive: map[string][]string{"a": abc, "c": abc},
		},
		{
			name: "c restarts", nodes: abc, event: func(s *sim) { s.down["c"] = true },
			mid:         func(s *sim) { s.start("c") },
			wantQuorate: abc, wantAlive: map[string][]string{"a": abc, "c": abc},
		},
		{
			name: "c leaves", nodes: abc, event: func(s *sim) { s.send("c", s.nodes["c"].leave(s.now)); s.down["c"] = true },
			wantQuorate: []string{"a", "b"}, wantAlive: map[string][]string{"a": {"a", "b"}},
			goneMin: 0, goneMax: 5 * time.Millisecond,
		},
		{
			name: "two of three crash", nodes: abc, event: func(s *sim) { s.down["b"], s.down["c"] = true, true },
			wantQuorate: nil, wantAlive: map[string][]string{"a": {"a"}},
		},
		{
			name: "five nodes split 3+2", nodes: []string{"a", "b", "c", "d", "e"},
			event:       func(s *sim) { s.partition([]string{"a", "b", "e"}, []string{"c", "d"}, true) },
			wantQuorate: []string{"a", "b", "e"}, wantAlive: map[string][]string{"a": {"a", "b", "e"}, "c": {"c"}},
			goneMin: DeadAfter - HeartbeatInterval, goneMax: DeadAfter + 5*time.Millisecond,
		},
		{
			name: "five nodes split 2+2+1", nodes: []string{"a", "b", "c", "d", "e"},
			event: func(s *sim) {
				s.partition([]string{"a", "b"}, []string{"c", "d", "e"}, true)
				s.partition([]string{"c", "d"}, []string{"e"}, true)
			},
			wantQuorate: nil,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t, tc.nodes...)
			s.run(settle)
			for _, n := range tc.nodes {
				if !s.quorate(n) {
					t.Fatalf("%s not quorate after %v", n, settle)
				}
			}
			at := s.now
			tc.event(s)
			if tc.mid != nil {
				s.run(after / 2)
				tc.mid(s)
				s.run(after / 2)
			} else {
				s.run(after)
			}
			if len(s.violations) > 0 {
				t.Errorf("%d safety violations, first: %s", len(s.violations), s.violations[0])
			}
			var quorate []string
			for _, n := range tc.nodes {
				if s.quorate(n) {
					quorate = append(quorate, n)
				}
			}
			if diff := cmp.Diff(tc.wantQuorate, quorate); diff != "" {
				t.Errorf("quorate at the end (-want +got):\n%s", diff)
			}
			for n, want := range tc.wantAlive {
				if diff := cmp.Diff(want, s.nodes[n].alive(s.now)); diff != "" {
					t.Errorf("alive in %s's view (-want +got):\n%s", n, diff)
				}
			}
			if tc.goneMax > 0 {
				g, ok := s.gone[[2]string{"a", "c"}]
				if !ok {
					t.Fatalf("a never dropped c")
				}
				if d := g.Sub(at); d < tc.goneMin || d > tc.goneMax {
					t.Errorf("a dropped c %v after the event, want within [%v, %v]", d, tc.goneMin, tc.goneMax)
				}
			}
		})
	}
}

// TestLivenessLeaseBeforeDeath checks the core inequality on the crash
// path: the crashed node's lease ends before anyone declares it dead.
func TestLivenessLeaseBeforeDeath(t *testing.T) {
	for phase := time.Duration(0); phase < HeartbeatInterval; phase += 7 * time.Millisecond {
		t.Run(phase.String(), func(t *testing.T) {
			s := newSim(t, "a", "b", "c")
			s.run(2*time.Second + phase)
			s.partition([]string{"c"}, []string{"a", "b"}, true)
			cut := s.now
			var lost, dropped time.Duration
			for lost == 0 || dropped == 0 {
				s.run(time.Millisecond)
				if _, ok := s.nodes["c"].lease(s.now); !ok && lost == 0 {
					lost = s.now.Sub(cut)
				}
				if !slices.Contains(s.nodes["a"].alive(s.now), "c") && dropped == 0 {
					dropped = s.now.Sub(cut)
				}
				if s.now.Sub(cut) > 2*time.Second {
					t.Fatal("not settled")
				}
			}
			if lost >= dropped {
				t.Errorf("c lost its lease %v after the cut, a dropped it after %v", lost, dropped)
			}
			if dropped > DeadAfter {
				t.Errorf("a dropped c %v after the cut, want within DeadAfter (%v)", dropped, DeadAfter)
			}
		})
	}
}

func TestLivenessAloneAndContact(t *testing.T) {
	now := simStart
	alone := newLiveness("a", 1, now, defaultTiming(), false)
	if _, ok := alone.lease(now); !ok {
		t.Error("a node without peers must be quorate at once")
	}
	waiting := newLiveness("a", 1, now, defaultTiming(), true)
	if _, ok := waiting.lease(now.Add(time.Hour)); ok {
		t.Error("a node with peers must not be quorate before it met one")
	}
	// Met b, then Kubernetes deleted b: alone and known alone again, after
	// the hold-down.
	waiting.join(now, "b")
	waiting.forget(now, "b")
	if _, ok := waiting.lease(now); ok {
		t.Error("quorate during the hold-down")
	}
	if _, ok := waiting.lease(now.Add(RegainHoldDown)); !ok {
		t.Error("not quorate after the hold-down, alone")
	}
}

// TestLivenessIgnoresStaleAndForeignEchoes: b keeps sending a the same
// kind of echo every HeartbeatInterval, from before a's hold-down until it
// ended; only fresh echoes of a's current epoch make a quorate.
func TestLivenessIgnoresStaleAndForeignEchoes(t *testing.T) {
	start := simStart
	// echo is b's heartbeat number seq at now, echoing a's stamp sent ago
	// before now in epoch.
	echo := func(seq uint64, now time.Time, ago time.Duration, epoch uint64) heartbeat {
		stamp := now.Sub(start) - ago
		return heartbeat{From: "b", Epoch: 1, Seq: seq, Stamp: seq, Quorate: true, Heard: []heard{{Node: "a", Epoch: epoch, Stamp: uint64(stamp)}}}
	}
	tests := []struct {
		name  string
		ago   time.Duration
		epoch uint64
		want  bool
	}{
		{name: "echo of another epoch (a previous run)", ago: 100 * time.Millisecond, epoch: 6},
		{name: "echo from the future", ago: -time.Second, epoch: 7},
		{name: "echo too old for a lease", ago: 700 * time.Millisecond, epoch: 7},
		{name: "fresh echo", ago: 100 * time.Millisecond, epoch: 7, want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newLiveness("a", 7, start, defaultTiming(), true)
			l.join(start, "b")
			l.join(start, "c")
			first := start.Add(time.Second)
			var seq uint64
			for now := first; !now.After(first.Add(RegainHoldDown)); now = now.Add(HeartbeatInterval) {
				seq++
				l.receive(now, echo(seq, now, tc.ago, tc.epoch))
			}
			if _, ok := l.lease(first.Add(RegainHoldDown)); ok != tc.want {
				t.Errorf("quorate %v at the end of the hold-down, want %v", ok, tc.want)
			}
			if !tc.want {
				return
			}
			// A replayed older heartbeat of b is ignored.
			last := first.Add(RegainHoldDown)
			replay := echo(seq+1, last, 0, 7)
			replay.Stamp = 1
			if _, drop := l.receive(last, replay); drop != dropNone {
				t.Errorf("dropped as %v, want the stale-stamp rule to ignore it", drop)
			}
			if _, ok := l.lease(last.Add(QuorumLease)); ok {
				t.Error("a replayed heartbeat extended the lease")
			}
		})
	}
}
