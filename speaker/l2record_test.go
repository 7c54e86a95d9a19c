package speaker

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/berthlb/berth/internal/testwait"
	"github.com/berthlb/berth/l2"
)

// fakeRecordMembers records the records it is handed and returns view.
type fakeRecordMembers struct {
	got []l2.MemberRecord
	// learned are the lists handed to Learn, which adds them to Known;
	// calls the calls of Learn and SetRecord, in order.
	learned [][]string
	calls   []string
	view    l2.RecordView
	gone    []string
}

func (f *fakeRecordMembers) SetRecord(r l2.MemberRecord) {
	f.calls = append(f.calls, fmt.Sprintf("record %d", r.Rev))
	f.got = append(f.got, r)
	if r.Rev >= f.view.Current.Rev {
		f.view.Current = r
	}
}

func (f *fakeRecordMembers) Learn(names []string) {
	f.learned = append(f.learned, names)
	f.calls = append(f.calls, fmt.Sprintf("learn %v", names))
	for _, n := range names {
		if !slices.Contains(f.view.Known, n) {
			f.view.Known = append(f.view.Known, n)
		}
	}
	slices.Sort(f.view.Known)
}

func (f *fakeRecordMembers) RecordView(gone []string) l2.RecordView {
	f.gone = gone
	v := f.view
	v.Gone = gone
	return v
}

// TestLeaseRecordStore reads and writes the record on a Lease.
func TestLeaseRecordStore(t *testing.T) {
	kube := fake.NewClientset()
	store := &leaseRecordStore{leases: kube.CoordinationV1().Leases("berth-system"), name: DefaultL2Members}
	none, err := store.Get(t.Context())
	if err != nil || none.rec.Rev != 0 || none.exists {
		t.Fatalf("no Lease: got %+v, %v; want revision 0", none, err)
	}
	joint := l2.MemberRecord{Rev: 1, Joint: true, NextOut: []string{"c"}}
	if err := store.Write(t.Context(), joint, none); err != nil {
		t.Fatal(err)
	}
	if err := store.Write(t.Context(), joint, none); err == nil {
		t.Error("a second create succeeded")
	}
	got, err := store.Get(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(joint, got.rec, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("read back (-want +got):\n%s", diff)
	}
	done := l2.MemberRecord{Rev: 2, Out: []string{"c"}}
	if err := store.Write(t.Context(), done, got); err != nil {
		t.Fatal(err)
	}
	l, err := kube.CoordinationV1().Leases("berth-system").Get(t.Context(), DefaultL2Members, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := l.Annotations[recordAnnotation], `{"rev":2,"out":["c"]}`; got != want {
		t.Errorf("annotation %s, want %s", got, want)
	}
}

// TestRecordStep runs the loop's steps against a fake API server: the
// first read hands the record over; a node settled long enough writes the
// joint record, then completes it, reading the record before each write;
// with nothing to change, it reads nothing.
func TestRecordStep(t *testing.T) {
	kube := fake.NewClientset()
	store := &leaseRecordStore{leases: kube.CoordinationV1().Leases("berth-system"), name: DefaultL2Members}
	m := &fakeRecordMembers{view: l2.RecordView{Known: []string{"a", "b", "c"}, Alive: []string{"a", "b"}, Quorate: true, SettledFor: l2.JointHold, AllRead3: true}}
	if _, err := readRecord(t.Context(), m, store); err != nil {
		t.Fatal(err)
	}
	gone := func() []string { return []string{"c"} }
	for range 2 {
		if err := recordStep(t.Context(), logr.Discard(), m, store, gone, false); err != nil {
			t.Fatal(err)
		}
	}
	want := []l2.MemberRecord{
		{},
		{},
		{Rev: 1, Joint: true, NextOut: []string{"c"}},
		{Rev: 1, Joint: true, NextOut: []string{"c"}},
		{Rev: 2, Out: []string{"c"}},
	}
	if diff := cmp.Diff(want, m.got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("records handed over (-want +got):\n%s", diff)
	}
	// Nothing to change, or shrinking off: no read, nothing handed over.
	m.got = nil
	for _, g := range []func() []string{gone, nil} {
		if err := recordStep(t.Context(), logr.Discard(), m, store, g, false); err != nil {
			t.Fatal(err)
		}
	}
	if len(m.got) != 0 {
		t.Errorf("records handed over with nothing to change: %+v", m.got)
	}
	if n := len(kube.Actions()); n != 5 {
		t.Errorf("%d API calls, want 5 (1 read at start, 2 x read and write, nothing since)", n)
	}
}

// TestRestoreRecord: a speaker holding its lease that finds the record's
// Lease deleted recreates it with the record it follows, and one that
// finds it a revision behind advances it to its own; it leaves alone a
// record two revisions behind (the admission policy would refuse the
// jump) or newer, and writes nothing without its lease. With nothing to
// change and no verification due, it reads nothing.
func TestRestoreRecord(t *testing.T) {
	own := l2.MemberRecord{Rev: 2, Out: []string{"c"}}
	tests := []struct {
		name    string
		stored  string // the annotation; "-": no Lease
		quorate bool
		verify  bool
		want    string // the annotation after the step; "-": no Lease
		calls   int
	}{
		{name: "Lease deleted", stored: "-", quorate: true, verify: true, want: `{"rev":2,"out":["c"]}`, calls: 2},
		{name: "one revision behind", stored: `{"rev":1,"joint":true,"nextOut":["c"]}`, quorate: true, verify: true, want: `{"rev":2,"out":["c"]}`, calls: 2},
		{name: "two revisions behind", stored: `{"rev":0}`, quorate: true, verify: true, want: `{"rev":0}`, calls: 1},
		{name: "newer", stored: `{"rev":3,"out":["c"]}`, quorate: true, verify: true, want: `{"rev":3,"out":["c"]}`, calls: 1},
		{name: "without the lease", stored: "-", verify: true, want: "-", calls: 1},
		{name: "no verification due", stored: "-", quorate: true, want: "-"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var objs []runtime.Object
			if tc.stored != "-" {
				objs = append(objs, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{
					Namespace: "berth-system", Name: DefaultL2Members, Annotations: map[string]string{recordAnnotation: tc.stored},
				}})
			}
			kube := fake.NewClientset(objs...)
			store := &leaseRecordStore{leases: kube.CoordinationV1().Leases("berth-system"), name: DefaultL2Members}
			m := &fakeRecordMembers{view: l2.RecordView{
				Current: own, Known: []string{"a", "b", "c"}, Alive: []string{"a", "b"},
				Quorate: tc.quorate, SettledFor: l2.JointHold, AllRead3: true,
			}}
			gone := func() []string { return []string{"c"} }
			if err := recordStep(t.Context(), logr.Discard(), m, store, gone, tc.verify); err != nil {
				t.Fatal(err)
			}
			got := "-"
			if l, err := kube.CoordinationV1().Leases("berth-system").Get(t.Context(), DefaultL2Members, metav1.GetOptions{}); err == nil {
				got = l.Annotations[recordAnnotation]
			}
			if got != tc.want {
				t.Errorf("record %s, want %s", got, tc.want)
			}
			if n := len(kube.Actions()) - 1; n != tc.calls {
				t.Errorf("%d API calls, want %d", n, tc.calls)
			}
		})
	}
}

// TestVerifies: one node of a side reads the record with nothing to
// change, and only once a record exists.
func TestVerifies(t *testing.T) {
	rec := l2.MemberRecord{Rev: 1, Joint: true, NextOut: []string{"c"}}
	tests := []struct {
		name string
		v    l2.RecordView
		want bool
	}{
		{"first live node, quorate", l2.RecordView{Current: rec, Alive: []string{"a", "b"}, Quorate: true}, true},
		{"not the first", l2.RecordView{Current: rec, Alive: []string{"0", "a"}, Quorate: true}, false},
		{"without the lease", l2.RecordView{Current: rec, Alive: []string{"a", "b"}}, false},
		{"no record yet", l2.RecordView{Alive: []string{"a", "b"}, Quorate: true}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := verifies(tc.v, "a"); got != tc.want {
				t.Errorf("verifies = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestRunRecordMetrics: the record loop exports the record the node
// follows: its revision, whether it is a joint step, how many are out,
// how many voters it names and whether this node is one.
func TestRunRecordMetrics(t *testing.T) {
	kube := fake.NewClientset()
	store := &leaseRecordStore{leases: kube.CoordinationV1().Leases("berth-system"), name: DefaultL2Members}
	rec := l2.MemberRecord{Rev: 3, Out: []string{"c"}, Joint: true, NextOut: []string{"c", "d"}, Voters: []string{"a", "b", "e"}, NextVoters: []string{"b", "e"}}
	if err := store.Write(t.Context(), rec, storedRecord{}); err != nil {
		t.Fatal(err)
	}
	m := NewMetrics(prometheus.NewRegistry())
	members := &fakeRecordMembers{}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		runRecord(ctx, members, store, "a", nil, func() []string { return nil }, m.observeRecord)
	}()
	defer func() { cancel(); <-done }()
	testwait.Eventually(t, 5*time.Second, func() error {
		got := recordSeries(m)
		if want := []float64{3, 1, 1, 3, 1}; !slices.Equal(got, want) {
			return fmt.Errorf("revision, joint, out, voters, voter = %v, want %v", got, want)
		}
		return nil
	})
}

// recordSeries reads the record's series of m: revision, joint, out,
// voters named, this node a voter.
func recordSeries(m *Metrics) []float64 {
	return []float64{testutil.ToFloat64(m.l2Rev), testutil.ToFloat64(m.l2Joint), testutil.ToFloat64(m.l2Out), testutil.ToFloat64(m.l2Voters), testutil.ToFloat64(m.l2Voter)}
}

// TestObserveRecordVoter: berth_speaker_l2_voter says whether this node
// votes: named, or not out of a record that names none.
func TestObserveRecordVoter(t *testing.T) {
	tests := []struct {
		name string
		rec  l2.MemberRecord
		want []float64 // revision, joint, out, voters, voter
	}{
		{"no record: every node votes", l2.MemberRecord{}, []float64{0, 0, 0, 0, 1}},
		{"none named, out", l2.MemberRecord{Rev: 2, Out: []string{"a"}}, []float64{2, 0, 1, 0, 0}},
		{"none named, not out", l2.MemberRecord{Rev: 2, Out: []string{"b"}}, []float64{2, 0, 1, 0, 1}},
		{"named", l2.MemberRecord{Rev: 4, Voters: []string{"a", "b", "c"}}, []float64{4, 0, 0, 3, 1}},
		{"not named", l2.MemberRecord{Rev: 4, Voters: []string{"b", "c", "d", "e", "f"}}, []float64{4, 0, 0, 5, 0}},
		{"named next only", l2.MemberRecord{Rev: 5, Joint: true, Voters: []string{"b", "c", "d"}, NextVoters: []string{"a", "b", "c"}}, []float64{5, 1, 0, 3, 1}},
		{"out next, still named", l2.MemberRecord{Rev: 5, Joint: true, NextOut: []string{"a"}, Voters: []string{"a", "b", "c"}, NextVoters: []string{"b", "c", "d"}}, []float64{5, 1, 0, 3, 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMetrics(prometheus.NewRegistry())
			m.observeRecord(tc.rec, "a")
			if got := recordSeries(m); !slices.Equal(got, tc.want) {
				t.Errorf("revision, joint, out, voters, voter = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestNodeHealth(t *testing.T) {
	at := time.Unix(1000, 0)
	node := func(name string, conds ...corev1.NodeCondition) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{Conditions: conds}}
	}
	got := nodeHealth([]*corev1.Node{
		node("ready", corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(at)}),
		node("unknown", corev1.NodeCondition{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse},
			corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionUnknown, LastTransitionTime: metav1.NewTime(at)}),
		node("new"),
	})
	want := []l2.NodeHealth{{Name: "ready", Ready: true, Since: at}, {Name: "unknown", Since: at}, {Name: "new", Ready: true}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("health (-want +got):\n%s", diff)
	}
}
