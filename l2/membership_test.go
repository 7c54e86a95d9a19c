package l2

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestNextRecord(t *testing.T) {
	abc := []string{"a", "b", "c"}
	ready := func(v RecordView) RecordView {
		v.Known, v.Quorate, v.SettledFor, v.AllRead3 = abc, true, JointHold, true
		if v.Alive == nil {
			v.Alive = []string{"a", "b"}
		}
		return v
	}
	tests := []struct {
		name  string
		view  RecordView
		want  MemberRecord
		write bool
	}{
		{name: "nothing gone: nothing to write", view: ready(RecordView{})},
		{
			name: "c gone, no record yet: start a joint change",
			view: ready(RecordView{Gone: []string{"c"}}), write: true,
			want: MemberRecord{Rev: 1, Joint: true, NextOut: []string{"c"}},
		},
		{
			name: "joint change settled: complete it",
			view: ready(RecordView{Current: MemberRecord{Rev: 1, Joint: true, NextOut: []string{"c"}}, Gone: []string{"c"}}), write: true,
			want: MemberRecord{Rev: 2, Out: []string{"c"}},
		},
		{
			name: "joint change settled, c back meanwhile: complete it all the same (the next change readmits it)",
			view: ready(RecordView{Current: MemberRecord{Rev: 1, Joint: true, NextOut: []string{"c"}}}), write: true,
			want: MemberRecord{Rev: 2, Out: []string{"c"}},
		},
		{
			name: "c back: readmit it through a joint change",
			view: ready(RecordView{Current: MemberRecord{Rev: 2, Out: []string{"c"}}}), write: true,
			want: MemberRecord{Rev: 3, Out: []string{"c"}, Joint: true},
		},
		{
			name: "c gone but alive in this node's view: nothing",
			view: ready(RecordView{Gone: []string{"c"}, Alive: abc}),
		},
		{
			name: "c out, gone and alive: stays out",
			view: ready(RecordView{Current: MemberRecord{Rev: 2, Out: []string{"c"}}, Gone: []string{"c"}, Alive: abc}),
		},
		{
			name: "gone unsorted and repeated: compared sorted",
			view: ready(RecordView{Current: MemberRecord{Rev: 2, Out: []string{"b", "c"}}, Gone: []string{"c", "b", "c"}}),
		},
		{
			name: "not quorate: nothing",
			view: func() RecordView { v := ready(RecordView{Gone: []string{"c"}}); v.Quorate = false; return v }(),
		},
		{
			name: "not settled long enough: nothing",
			view: func() RecordView {
				v := ready(RecordView{Gone: []string{"c"}})
				v.SettledFor = JointHold - time.Millisecond
				return v
			}(),
		},
		{
			name: "never settled: nothing",
			view: func() RecordView { v := ready(RecordView{Gone: []string{"c"}}); v.SettledFor = -1; return v }(),
		},
		{
			name: "a live node reads only version 2: nothing",
			view: func() RecordView { v := ready(RecordView{Gone: []string{"c"}}); v.AllRead3 = false; return v }(),
		},
		{
			name: "no voter would be left: nothing",
			view: ready(RecordView{Gone: abc, Alive: []string{}}),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, write := NextRecord(tc.view)
			if write != tc.write {
				t.Fatalf("write %v, want %v (%+v)", write, tc.write, got)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("record (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMemberRecordVoterSets(t *testing.T) {
	known := []string{"a", "b", "c", "d", "e"}
	tests := []struct {
		name string
		rec  MemberRecord
		want [][]string
	}{
		{name: "no record: every known node", want: [][]string{known}},
		{name: "d and e out", rec: MemberRecord{Rev: 2, Out: []string{"d", "e"}}, want: [][]string{{"a", "b", "c"}}},
		{name: "joint: both sets", rec: MemberRecord{Rev: 1, Joint: true, NextOut: []string{"d", "e"}}, want: [][]string{known, {"a", "b", "c"}}},
		{name: "an unknown node out changes nothing", rec: MemberRecord{Rev: 2, Out: []string{"x"}}, want: [][]string{known}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, tc.rec.voterSets(known)); diff != "" {
				t.Errorf("voter sets (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGoneNodes(t *testing.T) {
	now := simStart
	const after = 5 * time.Minute
	tests := []struct {
		name  string
		nodes []NodeHealth
		after time.Duration
		want  []string
	}{
		{name: "ready, lease fresh", nodes: []NodeHealth{{Name: "a", Ready: true, Renewed: now.Add(-10 * time.Second)}}, after: after},
		{name: "not ready for exactly after", nodes: []NodeHealth{{Name: "a", Since: now.Add(-after)}}, after: after, want: []string{"a"}},
		{name: "not ready, not long enough", nodes: []NodeHealth{{Name: "a", Since: now.Add(-after + time.Second)}}, after: after},
		{name: "ready but its node lease expired long ago", nodes: []NodeHealth{{Name: "a", Ready: true, Renewed: now.Add(-after)}}, after: after, want: []string{"a"}},
		{name: "no node lease seen: the condition decides", nodes: []NodeHealth{{Name: "a", Ready: true}}, after: after},
		{name: "sorted", nodes: []NodeHealth{{Name: "c", Since: now.Add(-time.Hour)}, {Name: "b", Since: now.Add(-time.Hour)}}, after: after, want: []string{"b", "c"}},
		{name: "off", nodes: []NodeHealth{{Name: "a", Since: now.Add(-time.Hour)}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, GoneNodes(now, tc.nodes, tc.after)); diff != "" {
				t.Errorf("gone (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHeartbeatRecord(t *testing.T) {
	heardB := []heard{{Node: "b", Epoch: 5, Stamp: 6, Age: time.Millisecond, Quorate: true}}
	tests := []struct {
		name    string
		hb      heartbeat
		version byte
	}{
		{name: "no record: version 2, read by the previous release", hb: heartbeat{From: "a", Epoch: 3, Seq: 1, Stamp: 4, Quorate: true, Reads3: true, Heard: heardB}, version: heartbeatVersion2},
		{name: "record: version 3", hb: heartbeat{From: "a", Epoch: 3, Seq: 1, Stamp: 4, Reads3: true, Rec: MemberRecord{Rev: 2, Out: []string{"d", "e"}}, Heard: heardB}, version: heartbeatVersion},
		{name: "joint record", hb: heartbeat{From: "a", Epoch: 3, Seq: 1, Stamp: 4, Reads3: true, Rec: MemberRecord{Rev: 7, Out: []string{"d"}, Joint: true, NextOut: []string{"d", "e"}}}, version: heartbeatVersion},
		{name: "joint record readmitting all", hb: heartbeat{From: "a", Epoch: 3, Seq: 1, Stamp: 4, Reads3: true, Rec: MemberRecord{Rev: 3, Out: []string{"d"}, Joint: true}}, version: heartbeatVersion},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msgs := encodeHeartbeats(tc.hb)
			if v := msgs[0][len(heartbeatMagic)]; v != tc.version {
				t.Errorf("version %d, want %d", v, tc.version)
			}
			got, err := decodeHeartbeat(msgs[0])
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.hb, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

// TestHeartbeatVersion2Compatible checks that a heartbeat sent without a
// record is the version 2 message of the previous release, byte for byte,
// but for the flag that the previous release's decoder masks out.
func TestHeartbeatVersion2Compatible(t *testing.T) {
	hb := heartbeat{From: "a", Epoch: 3, Seq: 1, Stamp: 4, Quorate: true, Heard: []heard{{Node: "b", Epoch: 5, Stamp: 6}}}
	plain := encodeHeartbeats(hb)[0]
	hb.Reads3 = true
	flagged := encodeHeartbeats(hb)[0]
	if len(plain) != len(flagged) {
		t.Fatalf("lengths differ: %d, %d", len(plain), len(flagged))
	}
	flags := len(heartbeatMagic) + 1
	for i := range plain {
		if i != flags && plain[i] != flagged[i] {
			t.Fatalf("byte %d differs", i)
		}
	}
	if flagged[flags] != plain[flags]|flagReads3 || flagged[flags]&^(flagBye|flagQuorate|flagReads3) != 0 {
		t.Errorf("flags %#x, want %#x", flagged[flags], plain[flags]|flagReads3)
	}
	for _, b := range [][]byte{
		// A version 3 record claiming revision 0, and a list of names
		// over the limit.
		func() []byte {
			b := append([]byte(heartbeatMagic), heartbeatVersion, 0)
			b = appendString(b, "a")
			b = append(b, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0)
			return b
		}(),
		func() []byte {
			b := append([]byte(heartbeatMagic), heartbeatVersion, 0)
			b = appendString(b, "a")
			return append(b, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0xff, 0xff, 0x03)
		}(),
	} {
		if got, err := decodeHeartbeat(b); err == nil {
			t.Errorf("decoded %+v", got)
		}
	}
}
