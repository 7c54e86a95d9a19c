package speaker

import (
	"context"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/berthlb/berth/l2"
)

// fakeTieMembers wants the tie-breaker while want is set and records what
// it was told.
type fakeTieMembers struct {
	mu    sync.Mutex
	want  bool
	until []time.Time
}

func (f *fakeTieMembers) WantsTiebreak() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.want
}

func (f *fakeTieMembers) SetTiebreak(u time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.until = append(f.until, u)
}

func (f *fakeTieMembers) last() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.until) == 0 {
		return time.Time{}
	}
	return f.until[len(f.until)-1]
}

// TestRunTiebreak runs the loop against a fake API server: a node that
// wants the tie-breaker creates the Lease and counts it; on the way out it
// stops counting it.
func TestRunTiebreak(t *testing.T) {
	kube := fake.NewClientset()
	leases := kube.CoordinationV1().Leases("berth-system")
	store := &leaseTieStore{leases: leases, name: DefaultL2Tiebreak}
	m := &fakeTieMembers{want: true}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); runTiebreak(ctx, m, store, "node1") }()
	deadline := time.Now().Add(5 * time.Second)
	for m.last().Before(time.Now()) {
		if time.Now().After(deadline) {
			t.Fatal("never counted the tie-breaker")
		}
		time.Sleep(10 * time.Millisecond)
	}
	l, err := leases.Get(t.Context(), DefaultL2Tiebreak, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h := l.Spec.HolderIdentity; h == nil || *h != "node1" {
		t.Errorf("holder %v, want node1", h)
	}
	cancel()
	<-done
	if !m.last().IsZero() {
		t.Errorf("still counts the tie-breaker after the loop ended: %v", m.last())
	}
}

// TestLeaseTieStore checks the record read from and written to a Lease.
func TestLeaseTieStore(t *testing.T) {
	kube := fake.NewClientset()
	store := &leaseTieStore{leases: kube.CoordinationV1().Leases("berth-system"), name: "tb"}
	if r, err := store.Get(t.Context()); err != nil || r != nil {
		t.Fatalf("no Lease: got %v, %v; want nil, nil", r, err)
	}
	r, err := store.Write(t.Context(), l2.TieCreate, "node1", "")
	if err != nil || r.Holder != "node1" {
		t.Fatalf("create: %v, %v", r, err)
	}
	if _, err := store.Write(t.Context(), l2.TieCreate, "node2", ""); err == nil {
		t.Error("a second create succeeded")
	}
	r, err = store.Write(t.Context(), l2.TieRelease, "node1", r.Version)
	if err != nil || r.Holder != "" {
		t.Fatalf("release: %v, %v", r, err)
	}
	got, err := store.Get(t.Context())
	if err != nil || got.Holder != "" {
		t.Errorf("after the release: %v, %v", got, err)
	}
}
