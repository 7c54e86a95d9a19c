package speaker

import (
	"slices"
	"testing"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/berthlb/berth/l2"
)

// TestKnownList: the known list round-trips through its annotation, in
// the form the admission policy accepts; none is no list (a record of the
// previous release); a garbled one is an error.
func TestKnownList(t *testing.T) {
	format := policyVariable(t, "knownFormat")
	names := []string{"ip-10-0-1-2.ec2.internal", "node-1"}
	enc := encodeKnownList(names)
	if !format.MatchString(enc) {
		t.Errorf("the policy refuses the known list %s", enc)
	}
	got, err := decodeKnownList(map[string]string{knownAnnotation: enc})
	if err != nil || !slices.Equal(got, names) {
		t.Errorf("round trip: %v, %v", got, err)
	}
	if got, err := decodeKnownList(map[string]string{recordAnnotation: `{"rev":1}`}); err != nil || got != nil {
		t.Errorf("no list: %v, %v", got, err)
	}
	if got, err := decodeKnownList(map[string]string{knownAnnotation: `node-1`}); err == nil {
		t.Errorf("garbled list decoded to %v", got)
	}
	for _, bad := range []string{`[]`, `["node-1",]`, `["Node-1"]`, `["a", "b"]`, `{"a":1}`, `null`} {
		if format.MatchString(bad) {
			t.Errorf("the policy lets the known list %s through", bad)
		}
	}
}

// TestKnownStep runs the known list's step against a fake API server: the
// node that leads its side stores what it knows with the record, keeping
// the record byte for byte (or, without one, storing the record it
// follows, revision 0 included), learns what is stored, drops nodes whose
// Node was deleted, and reads nothing when nothing changed unless a
// verification is due; other nodes do nothing.
func TestKnownStep(t *testing.T) {
	abc := []string{"a", "b", "c"}
	tests := []struct {
		name string
		// stored are the record's and the list's annotations ("-": no
		// Lease; "": no annotation); last the list as last read.
		storedRec, storedKnown string
		last                   []string
		cur                    l2.MemberRecord
		known, nodes           []string
		lead, verify           bool
		// want are the annotations after the step; learned what was
		// handed to Learn; calls the API calls.
		wantRec, wantKnown string
		learned            []string
		calls              int
	}{
		{name: "first list, no Lease", storedRec: "-", known: abc, nodes: abc, lead: true,
			wantRec: `{"rev":0}`, wantKnown: `["a","b","c"]`, calls: 2},
		{name: "Lease deleted, record followed", storedRec: "-", cur: l2.MemberRecord{Rev: 3, Out: []string{"c"}}, known: abc, nodes: abc, lead: true,
			wantRec: `{"rev":3,"out":["c"]}`, wantKnown: `["a","b","c"]`, calls: 2},
		{name: "a node joined", storedRec: `{"rev":2,"out":["c"]}`, storedKnown: `["a","c"]`, last: []string{"a", "c"},
			known: abc, nodes: abc, lead: true, wantRec: `{"rev":2,"out":["c"]}`, wantKnown: `["a","b","c"]`, learned: []string{"a", "c"}, calls: 2},
		{name: "a Node deleted", storedRec: `{"rev":0}`, storedKnown: `["a","b","c","d"]`, last: []string{"a", "b", "c", "d"},
			known: abc, nodes: abc, lead: true, wantRec: `{"rev":0}`, wantKnown: `["a","b","c"]`, learned: []string{"a", "b", "c", "d"}, calls: 2},
		{name: "learns what is stored", storedRec: `{"rev":1}`, storedKnown: `["a","b","c","e"]`, last: []string{"a", "b"},
			known: abc, nodes: []string{"a", "b", "c", "e"}, lead: true,
			wantRec: `{"rev":1}`, wantKnown: `["a","b","c","e"]`, learned: []string{"a", "b", "c", "e"}, calls: 1},
		{name: "not the leader", storedRec: `{"rev":1}`, last: nil, known: abc, nodes: abc,
			wantRec: `{"rev":1}`},
		{name: "nothing changed", storedRec: `{"rev":1}`, storedKnown: `["a","b","c"]`, last: abc, known: abc, nodes: abc, lead: true,
			wantRec: `{"rev":1}`, wantKnown: `["a","b","c"]`},
		{name: "list dropped by a speaker of the previous release, found by verification", storedRec: `{"rev":2}`, last: abc,
			known: abc, nodes: abc, lead: true, verify: true, wantRec: `{"rev":2}`, wantKnown: `["a","b","c"]`, calls: 2},
		{name: "Nodes not listed", storedRec: `{"rev":1}`, known: abc, lead: true, verify: true, wantRec: `{"rev":1}`, calls: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var objs []runtime.Object
			if tc.storedRec != "-" {
				a := map[string]string{recordAnnotation: tc.storedRec}
				if tc.storedKnown != "" {
					a[knownAnnotation] = tc.storedKnown
				}
				objs = append(objs, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "berth-system", Name: DefaultL2Members, Annotations: a}})
			}
			kube := fake.NewClientset(objs...)
			store := &leaseRecordStore{leases: kube.CoordinationV1().Leases("berth-system"), name: DefaultL2Members}
			m := &fakeRecordMembers{view: l2.RecordView{Current: tc.cur, Known: slices.Clone(tc.known), Quorate: true}}
			last := slices.Clone(tc.last)
			if err := knownStep(t.Context(), logr.Discard(), m, store, func() []string { return tc.nodes }, &last, tc.lead, tc.verify); err != nil {
				t.Fatal(err)
			}
			gotRec, gotKnown := "-", ""
			if l, err := kube.CoordinationV1().Leases("berth-system").Get(t.Context(), DefaultL2Members, metav1.GetOptions{}); err == nil {
				gotRec, gotKnown = l.Annotations[recordAnnotation], l.Annotations[knownAnnotation]
			}
			if gotRec != tc.wantRec || gotKnown != tc.wantKnown {
				t.Errorf("stored record %s, known %s; want %s, %s", gotRec, gotKnown, tc.wantRec, tc.wantKnown)
			}
			var learned []string
			if len(m.learned) > 0 {
				learned = append([]string{}, m.learned[0]...)
			}
			if diff := cmp.Diff(tc.learned, learned, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("learned (-want +got):\n%s", diff)
			}
			if n := len(kube.Actions()) - 1; n != tc.calls { // not counting the check's Get
				t.Errorf("%d API calls, want %d", n, tc.calls)
			}
		})
	}
}

// TestReadRecordLearnsKnown: at start the speaker hands Members the known
// list stored before the record, so that it counts those nodes before it
// can hold a lease (Members waits for the record).
func TestReadRecordLearnsKnown(t *testing.T) {
	kube := fake.NewClientset(&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{
		Namespace: "berth-system", Name: DefaultL2Members,
		Annotations: map[string]string{recordAnnotation: `{"rev":2,"out":["c"]}`, knownAnnotation: `["a","b","c","d"]`},
	}})
	store := &leaseRecordStore{leases: kube.CoordinationV1().Leases("berth-system"), name: DefaultL2Members}
	m := &fakeRecordMembers{}
	stored, err := readRecord(t.Context(), m, store)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"learn [a b c d]", "record 2"}
	if diff := cmp.Diff(want, m.calls); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	if !slices.Equal(stored.known, []string{"a", "b", "c", "d"}) {
		t.Errorf("known list read %v", stored.known)
	}
}

// TestRecordWriteKeepsKnown: writing the next record keeps the known list
// read with the previous one.
func TestRecordWriteKeepsKnown(t *testing.T) {
	kube := fake.NewClientset(&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{
		Namespace: "berth-system", Name: DefaultL2Members,
		Annotations: map[string]string{recordAnnotation: `{"rev":2}`, knownAnnotation: `["a","b"]`},
	}})
	store := &leaseRecordStore{leases: kube.CoordinationV1().Leases("berth-system"), name: DefaultL2Members}
	prev, err := store.Get(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Write(t.Context(), l2.MemberRecord{Rev: 3, Joint: true, NextOut: []string{"b"}}, prev); err != nil {
		t.Fatal(err)
	}
	l, err := kube.CoordinationV1().Leases("berth-system").Get(t.Context(), DefaultL2Members, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{recordAnnotation: `{"rev":3,"joint":true,"nextOut":["b"]}`, knownAnnotation: `["a","b"]`}
	if diff := cmp.Diff(want, l.Annotations); diff != "" {
		t.Errorf("annotations (-want +got):\n%s", diff)
	}
}
