package l2

import (
	"slices"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/google/go-cmp/cmp"
)

func TestReplayStateCheck(t *testing.T) {
	type msg struct {
		epoch, seq uint64
		want       dropReason
	}
	tests := []struct {
		name string
		msgs []msg
	}{
		{name: "in order", msgs: []msg{{5, 1, dropNone}, {5, 2, dropNone}, {5, 3, dropNone}}},
		{name: "same message twice", msgs: []msg{{5, 1, dropNone}, {5, 1, dropReplayed}}},
		{name: "a gap, then the missing one once", msgs: []msg{{5, 1, dropNone}, {5, 4, dropNone}, {5, 2, dropNone}, {5, 2, dropReplayed}, {5, 3, dropNone}, {5, 4, dropReplayed}}},
		{name: "older counter, already seen", msgs: []msg{{5, 7, dropNone}, {5, 8, dropNone}, {5, 7, dropReplayed}}},
		{name: "older counter, at the window's edge", msgs: []msg{{5, 100, dropNone}, {5, 100 - replayWindow, dropNone}, {5, 100 - replayWindow, dropReplayed}}},
		{name: "older counter, beyond the window", msgs: []msg{{5, 100, dropNone}, {5, 99 - replayWindow, dropReplayed}}},
		{name: "window slides by exactly its size", msgs: []msg{{5, 1, dropNone}, {5, 1 + replayWindow, dropNone}, {5, 1, dropReplayed}, {5, 2, dropNone}}},
		{name: "long jump forgets the window", msgs: []msg{{5, 1, dropNone}, {5, 1000, dropNone}, {5, 999, dropNone}, {5, 1, dropReplayed}}},
		{name: "newer epoch restarts the count", msgs: []msg{{5, 50, dropNone}, {6, 1, dropNone}, {6, 1, dropReplayed}}},
		{name: "older epoch", msgs: []msg{{6, 1, dropNone}, {5, 51, dropOldEpoch}, {5, 1, dropOldEpoch}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r replayState
			for i, m := range tc.msgs {
				if got := r.check(m.epoch, m.seq); got != m.want {
					t.Errorf("message %d (epoch %d, seq %d): %v, want %v", i, m.epoch, m.seq, got, m.want)
				}
			}
		})
	}
}

// TestLivenessDropsReplays feeds node a heartbeats of b (Quorate, so b is
// alive while heard within DeadAfter) at fake times, and checks what each
// did and whether b is alive at the end.
func TestLivenessDropsReplays(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	hb := func(epoch, seq uint64, stamp time.Duration) heartbeat {
		return heartbeat{From: "b", Epoch: epoch, Seq: seq, Stamp: uint64(stamp), Quorate: true}
	}
	bye := func(epoch, seq uint64, stamp time.Duration) heartbeat {
		return heartbeat{From: "b", Epoch: epoch, Seq: seq, Stamp: uint64(stamp), Bye: true}
	}
	type step struct {
		at   time.Duration
		hb   heartbeat
		drop dropReason
	}
	tests := []struct {
		name  string
		steps []step
		at    time.Duration
		alive bool
	}{
		{name: "fresh heartbeats keep b alive",
			steps: []step{{0, hb(10, 1, 0), dropNone}, {ms(600), hb(10, 2, ms(600)), dropNone}}, at: ms(900), alive: true},
		{name: "the same message twice does not",
			steps: []step{{0, hb(10, 1, 0), dropNone}, {ms(600), hb(10, 1, 0), dropReplayed}}, at: ms(900)},
		{name: "an older counter with the newest stamp does not",
			steps: []step{{0, hb(10, 1, 0), dropNone}, {0, hb(10, 2, 0), dropNone}, {ms(600), hb(10, 1, 0), dropReplayed}}, at: ms(900)},
		{name: "a counter beyond the window does not",
			steps: []step{{0, hb(10, 200, 0), dropNone}, {ms(600), hb(10, 100, 0), dropReplayed}}, at: ms(900)},
		{name: "a reordered part is used once",
			steps: []step{{0, hb(10, 6, 0), dropNone}, {ms(1), hb(10, 5, 0), dropNone}, {ms(2), hb(10, 5, 0), dropReplayed}}, at: ms(100), alive: true},
		{name: "an older epoch does not",
			steps: []step{{0, hb(20, 1, 0), dropNone}, {ms(600), hb(10, 900, ms(900)), dropOldEpoch}}, at: ms(900)},
		{name: "a Bye of an older epoch is ignored",
			steps: []step{{0, hb(20, 1, 0), dropNone}, {ms(10), bye(10, 2, ms(10)), dropOldEpoch}}, at: ms(100), alive: true},
		{name: "a replayed Bye after a restart is ignored",
			steps: []step{{0, bye(10, 9, 0), dropNone}, {ms(10), hb(20, 1, 0), dropNone}, {ms(20), bye(10, 9, 0), dropOldEpoch}}, at: ms(100), alive: true},
		{name: "a Bye of the current epoch ends b",
			steps: []step{{0, hb(20, 1, 0), dropNone}, {ms(10), bye(20, 2, ms(10)), dropNone}}, at: ms(100)},
		{name: "a restart is followed",
			steps: []step{{0, hb(10, 50, ms(5000)), dropNone}, {ms(600), hb(20, 1, 0), dropNone}}, at: ms(900), alive: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newLiveness("a", 1, simStart, defaultTiming(), true)
			l.join(simStart, "b")
			for i, s := range tc.steps {
				if _, drop := l.receive(simStart.Add(s.at), s.hb); drop != s.drop {
					t.Errorf("step %d: dropped as %v, want %v", i, drop, s.drop)
				}
			}
			if alive := slices.Contains(l.alive(simStart.Add(tc.at)), "b"); alive != tc.alive {
				t.Errorf("b alive %v, want %v", alive, tc.alive)
			}
		})
	}
}

// TestMembersRejectsHeartbeats checks the counts and the log of what
// NotifyMsg drops, for the messages memberlist hands over (decrypted).
func TestMembersRejectsHeartbeats(t *testing.T) {
	b1 := encodeHeartbeats(heartbeat{From: "b", Epoch: 10, Seq: 1, Quorate: true})[0]
	old := encodeHeartbeats(heartbeat{From: "b", Epoch: 9, Seq: 7, Quorate: true})[0]
	v5 := encodeHeartbeats(heartbeat{From: "c", Epoch: 10, Seq: 1})[0]
	v5[len(heartbeatMagic)] = 5
	tests := []struct {
		name string
		msgs [][]byte
		want Rejected
		logs int
	}{
		{name: "one heartbeat", msgs: [][]byte{b1}},
		{name: "same message twice", msgs: [][]byte{b1, b1}, want: Rejected{Replayed: 1}},
		{name: "older epoch", msgs: [][]byte{b1, old}, want: Rejected{OldEpoch: 1}},
		{name: "version 1, logged once", msgs: [][]byte{v1Heartbeat("b"), v1Heartbeat("b")}, want: Rejected{UnknownVersion: 2}, logs: 1},
		{name: "versions 1 and 5, each logged", msgs: [][]byte{v1Heartbeat("b"), v5}, want: Rejected{UnknownVersion: 2}, logs: 2},
		{name: "malformed", msgs: [][]byte{b1[:len(b1)-1]}, want: Rejected{Malformed: 1}},
		{name: "not a heartbeat", msgs: [][]byte{[]byte("something else")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var logs []string
			log := funcr.New(func(_, args string) { logs = append(logs, args) }, funcr.Options{})
			m := &Members{
				name: "a", live: newLiveness("a", 1, time.Now(), defaultTiming(), false),
				log: log, logged: map[int]time.Time{}, kick: make(chan struct{}, 1), changes: make(chan struct{}, 1),
			}
			for _, b := range tc.msgs {
				(*delegate)(m).NotifyMsg(b)
			}
			if diff := cmp.Diff(tc.want, m.Rejected()); diff != "" {
				t.Errorf("Rejected (-want +got):\n%s", diff)
			}
			if len(logs) != tc.logs {
				t.Errorf("logged %d times, want %d: %q", len(logs), tc.logs, logs)
			}
		})
	}
}
