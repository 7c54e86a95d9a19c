package l2

import (
	"slices"
	"testing"
	"time"
)

// FuzzReceive feeds a node's liveness a sequence of arbitrary messages, as
// they would arrive from the network: each is decoded as NotifyMsg does and
// the heartbeats are received 10 ms apart. Nothing may panic; a message
// received a second time is always dropped as a replay or old epoch and
// changes nothing; the node always counts itself alive; and the lease is
// never quorate without current grants from a majority of the known nodes.
func FuzzReceive(f *testing.F) {
	voterRec := MemberRecord{Rev: 1, Voters: []string{"a", "b", "c"}}
	var seed []byte
	for _, hb := range []heartbeat{
		{From: "b", Epoch: 1, Seq: 1, Stamp: 2, Quorate: true, Heard: []heard{{Node: "a", Epoch: 1, Stamp: 1}}},
		{From: "c", Epoch: 2, Seq: 1, Stamp: 5},
		{From: "b", Epoch: 1, Seq: 2, Stamp: 9, Bye: true},
		{From: "b", Epoch: 0, Seq: 3, Stamp: 1},
		// A voter's summary, then a delta against it.
		{From: "c", Epoch: 3, Seq: 1, Stamp: 10, Quorate: true, ReadsDelta: true, Rec: voterRec, Digest: membershipDigest([]string{"a", "b", "c"}), Summary: []byte{0x81, 0, 0x85}, Heard: []heard{{Node: "a", Epoch: 1, Stamp: 1, Summarised: true}}},
		{From: "c", Epoch: 3, Seq: 2, Stamp: 20, Quorate: true, ReadsDelta: true, Rec: voterRec, Digest: membershipDigest([]string{"a", "b", "c"}), Delta: &summaryDelta{Base: 10, Len: 3, Index: []int{2}, B: []byte{0x83}}, Heard: []heard{{Node: "a", Epoch: 1, Stamp: 1}}},
	} {
		for _, m := range encodeHeartbeats(hb) {
			seed = append(seed, byte(len(m)))
			seed = append(seed, m...)
		}
	}
	f.Add(seed)
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, b []byte) {
		now := time.Unix(1000, 0)
		l := newLiveness("a", 1, now, defaultTiming(), false)
		l.join(now, "b")
		l.join(now, "c")
		for len(b) > 0 {
			n := min(int(b[0]), len(b)-1)
			msg := b[1 : 1+n]
			b = b[1+n:]
			now = now.Add(10 * time.Millisecond)
			if !isHeartbeat(msg) {
				continue
			}
			hb, err := decodeHeartbeat(msg)
			if err != nil {
				continue
			}
			l.receive(now, hb)
			if changed, drop := l.receive(now, hb); changed || (drop == dropNone && hb.From != "a") {
				t.Fatalf("the same message %+v received twice: changed %v, drop reason %v", hb, changed, drop)
			}
			alive := l.alive(now)
			if !slices.Contains(alive, "a") {
				t.Fatalf("the node does not count itself alive: %v", alive)
			}
			granted := 0
			for _, name := range l.knownNodes() {
				if p := l.nodes[name]; name != "a" && p != nil && p.grant(l.counts).After(now) {
					granted++
				}
			}
			if _, quorate := l.lease(now); quorate && granted < len(l.knownNodes())/2 {
				t.Fatalf("quorate with %d granting of known %v", granted, l.knownNodes())
			}
		}
	})
}
