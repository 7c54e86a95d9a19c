package l2

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestHeartbeatRoundTrip(t *testing.T) {
	many := heartbeat{From: "node-0", Epoch: 1, Seq: 9, Stamp: 2, Quorate: true}
	for i := range 100 {
		many.Heard = append(many.Heard, heard{
			Node: fmt.Sprintf("node-%03d.%s", i, strings.Repeat("x", 60)), Epoch: uint64(i) << 40, Stamp: uint64(i) * 1e9,
			Age: time.Duration(i) * time.Millisecond, Quorate: i%2 == 0,
		})
	}
	tests := []struct {
		name     string
		hb       heartbeat
		messages int
	}{
		{name: "alone", hb: heartbeat{From: "a", Epoch: 1<<64 - 1, Seq: 1<<64 - 1, Stamp: 1 << 62}, messages: 1},
		{name: "bye", hb: heartbeat{From: "a", Epoch: 3, Seq: 1, Stamp: 4, Bye: true}, messages: 1},
		{name: "three", hb: heartbeat{From: "a", Epoch: 3, Seq: 5, Stamp: 4, Quorate: true, Heard: []heard{
			{Node: "b", Epoch: 5, Stamp: 6, Age: 7 * time.Millisecond, Quorate: true},
			{Node: "c", Epoch: 8, Stamp: 9, Age: 0},
		}}, messages: 1},
		{name: "a hundred long names split over messages", hb: many, messages: 8},
		{name: "waiting for the first record", hb: heartbeat{From: "a", Epoch: 3, Seq: 1, Stamp: 4, Reads3: true, Reads4: true, WaitFirst: true}, messages: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msgs := encodeHeartbeats(tc.hb)
			if len(msgs) != tc.messages {
				t.Errorf("%d messages, want %d", len(msgs), tc.messages)
			}
			var got, first heartbeat
			for i, b := range msgs {
				if len(b) > maxMessageLen {
					t.Errorf("message %d is %d bytes, more than %d", i, len(b), maxMessageLen)
				}
				part, err := decodeHeartbeat(b)
				if err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				if part.Seq != tc.hb.Seq+uint64(i) {
					t.Errorf("message %d numbered %d, want %d", i, part.Seq, tc.hb.Seq+uint64(i))
				}
				heardPart := part.Heard
				part.Heard, part.Seq = nil, tc.hb.Seq
				if i == 0 {
					first, got = part, part
				} else if diff := cmp.Diff(first, part); diff != "" {
					t.Errorf("message %d header differs (-first +this):\n%s", i, diff)
				}
				got.Heard = append(got.Heard, heardPart...)
			}
			if diff := cmp.Diff(tc.hb, got); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeHeartbeatErrors(t *testing.T) {
	good := encodeHeartbeats(heartbeat{From: "a", Epoch: 1, Seq: 1, Stamp: 2, Heard: []heard{{Node: "b", Epoch: 3, Stamp: 4}}})[0]
	long := encodeHeartbeats(heartbeat{From: strings.Repeat("n", maxNameLen+1), Epoch: 1, Seq: 1})[0]
	tests := []struct {
		name string
		b    []byte
	}{
		{name: "empty", b: nil},
		{name: "old format", b: []byte("berth-hb:node-1")},
		{name: "truncated", b: good[:len(good)-1]},
		{name: "trailing bytes", b: append(append([]byte{}, good...), 0)},
		{name: "name too long", b: long},
		{name: "no sender", b: encodeHeartbeats(heartbeat{Epoch: 1, Seq: 1})[0]},
		{name: "no sequence number", b: encodeHeartbeats(heartbeat{From: "a", Epoch: 1})[0]},
		{name: "magic only", b: []byte(heartbeatMagic)},
		{name: "too many entries", b: append([]byte(heartbeatMagic), heartbeatVersion2, 0, 1, 'a', 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0xff, 0xff, 0x03)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if hb, err := decodeHeartbeat(tc.b); err == nil {
				t.Errorf("decoded %+v", hb)
			}
		})
	}
}

func FuzzDecodeHeartbeat(f *testing.F) {
	for _, hb := range []heartbeat{
		{From: "a", Epoch: 1, Seq: 1, Stamp: 2},
		{From: "a", Epoch: 3, Seq: 7, Stamp: 4, Bye: true, Quorate: true, Heard: []heard{{Node: "b", Epoch: 5, Stamp: 6, Age: time.Second}}},
		{From: "a", Epoch: 3, Seq: 7, Stamp: 4, Reads3: true, Rec: MemberRecord{Rev: 5, Out: []string{"c"}, Joint: true, NextOut: []string{"c", "d"}}, Heard: []heard{{Node: "b", Epoch: 5, Stamp: 6}}},
		{From: "a", Epoch: 3, Seq: 7, Stamp: 4, ReadsDelta: true, Rec: MemberRecord{Rev: 5, Voters: []string{"a", "b", "c"}}, Delta: &summaryDelta{Base: 2, Len: 3, Index: []int{1, 2}, B: []byte{0x81, 0}}, Heard: []heard{{Node: "b", Epoch: 5, Stamp: 6, Summarised: true}}},
	} {
		f.Add(encodeHeartbeats(hb)[0])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		hb, err := decodeHeartbeat(b)
		if err != nil {
			return
		}
		msgs := encodeHeartbeats(hb)
		again, err := decodeHeartbeat(msgs[0])
		if err != nil {
			t.Fatalf("re-encoded %+v does not decode: %v", hb, err)
		}
		if len(msgs) == 1 {
			if diff := cmp.Diff(hb, again); diff != "" {
				t.Errorf("re-encoding changed it (-first +second):\n%s", diff)
			}
		}
	})
}

// v1Heartbeat is a heartbeat as version 1 encoded it: magic "bhb1", no
// sequence number.
func v1Heartbeat(from string) []byte {
	b := append([]byte("bhb1"), flagQuorate)
	b = appendString(b, from)
	b = append(b, 0, 0, 0, 0, 0, 0, 0, 1) // epoch
	return append(b, 2, 0)                // stamp, no entries
}

func TestDecodeHeartbeatVersion(t *testing.T) {
	v5 := encodeHeartbeats(heartbeat{From: "c", Epoch: 1, Seq: 1})[0]
	v5[len(heartbeatMagic)] = 5
	tests := []struct {
		name string
		b    []byte
		want versionError
	}{
		{name: "version 1", b: v1Heartbeat("node-1"), want: versionError{Version: 1, From: "node-1"}},
		{name: "version 5", b: v5, want: versionError{Version: 5, From: "c"}},
		{name: "version 0, unreadable", b: append([]byte(heartbeatMagic), 0, 0xff), want: versionError{Version: 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hb, err := decodeHeartbeat(tc.b)
			var ve *versionError
			if !errors.As(err, &ve) {
				t.Fatalf("decoded %+v, %v; want a version error", hb, err)
			}
			if diff := cmp.Diff(tc.want, *ve); diff != "" {
				t.Errorf("version error (-want +got):\n%s", diff)
			}
		})
	}
}
