package speaker

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/berthlb/berth/l2"
)

// TestLeaseRecordStoreVoters stores a record that names voters (with
// --l2-voters) and reads it back.
func TestLeaseRecordStoreVoters(t *testing.T) {
	kube := fake.NewClientset()
	store := &leaseRecordStore{leases: kube.CoordinationV1().Leases("berth-system"), name: DefaultL2Members}
	joint := l2.MemberRecord{Rev: 3, Out: []string{"x"}, Joint: true, NextOut: []string{"x"}, Voters: []string{"a", "b", "c"}, NextVoters: []string{"a", "b", "d"}}
	if err := store.Write(t.Context(), joint, storedRecord{}); err != nil {
		t.Fatal(err)
	}
	got, err := store.Get(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(joint, got.rec, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("read back (-want +got):\n%s", diff)
	}
	l, err := kube.CoordinationV1().Leases("berth-system").Get(t.Context(), DefaultL2Members, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"rev":3,"out":["x"],"joint":true,"nextOut":["x"],"voters":["a","b","c"],"nextVoters":["a","b","d"]}`
	if got := l.Annotations[recordAnnotation]; got != want {
		t.Errorf("annotation %s, want %s", got, want)
	}
}
