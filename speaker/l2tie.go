package speaker

import (
	"context"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/berthlb/berth/l2"
)

// DefaultL2Tiebreak names the coordination.k8s.io Lease that breaks ties in
// an even layer-2 membership (two-node clusters, even splits).
const DefaultL2Tiebreak = "berth-l2-tiebreak"

// leaseClient is what the tie-breaker needs of the Leases of Berth's
// namespace.
type leaseClient interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*coordinationv1.Lease, error)
	Create(ctx context.Context, lease *coordinationv1.Lease, opts metav1.CreateOptions) (*coordinationv1.Lease, error)
	Update(ctx context.Context, lease *coordinationv1.Lease, opts metav1.UpdateOptions) (*coordinationv1.Lease, error)
}

// leaseTieStore is l2.TieStore on one Lease. Its writes carry the
// resourceVersion read, so the API server refuses all but one of
// competing writes. The Lease's fields are informative only (kubectl get
// lease shows the holder); the duration that counts is l2.TieDuration.
type leaseTieStore struct {
	leases leaseClient
	name   string
}

func (s *leaseTieStore) Get(ctx context.Context) (*l2.TieRecord, error) {
	// No resourceVersion: a quorum read, never an older copy.
	l, err := s.leases.Get(ctx, s.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get lease %s: %w", s.name, err)
	}
	return &l2.TieRecord{Holder: ptr.Deref(l.Spec.HolderIdentity, ""), Version: l.ResourceVersion}, nil
}

func (s *leaseTieStore) Write(ctx context.Context, a l2.TieAction, self, version string) (*l2.TieRecord, error) {
	now := metav1.NewMicroTime(time.Now())
	l := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: s.name, ResourceVersion: version},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity:       ptr.To(self),
			LeaseDurationSeconds: ptr.To(int32(l2.TieDuration / time.Second)),
			RenewTime:            &now,
		},
	}
	var (
		out *coordinationv1.Lease
		err error
	)
	switch a {
	case l2.TieCreate:
		l.ResourceVersion = ""
		l.Spec.AcquireTime = &now
		out, err = s.leases.Create(ctx, l, metav1.CreateOptions{})
	case l2.TieAcquire, l2.TieRenewHold, l2.TieRelease:
		if a == l2.TieRelease {
			l.Spec.HolderIdentity, l.Spec.RenewTime = nil, nil
		}
		if a == l2.TieAcquire {
			l.Spec.AcquireTime = &now
		}
		out, err = s.leases.Update(ctx, l, metav1.UpdateOptions{})
	default:
		return nil, fmt.Errorf("unknown tie-breaker action %d", a)
	}
	if err != nil {
		return nil, fmt.Errorf("write lease %s: %w", s.name, err)
	}
	return &l2.TieRecord{Holder: ptr.Deref(out.Spec.HolderIdentity, ""), Version: out.ResourceVersion}, nil
}

// tieStepTimeout bounds one read and write of the tie-breaker Lease.
const tieStepTimeout = time.Second

// tieMembers is what the tie-breaker loop needs of l2.Members.
type tieMembers interface {
	WantsTiebreak() bool
	SetTiebreak(until time.Time)
}

// runTiebreak takes, keeps and releases the tie-breaker Lease for m until
// ctx ends. It looks every l2.TieWatch whether m wants it, and steps when
// l2.Tiebreak.Due says so: every l2.TieRenew, and at once when m starts
// wanting it (150 ms before its lease would lapse). A node that neither
// wants nor holds it sends the API server nothing. On the way out it stops
// counting the Lease; it does not release it (the others take it over
// TieDuration after its last renewal).
func runTiebreak(ctx context.Context, m tieMembers, store l2.TieStore, self string) {
	log := logr.FromContextOrDiscard(ctx).WithName("tiebreak")
	tb := l2.NewTiebreak(self)
	t := time.NewTicker(l2.TieWatch)
	defer t.Stop()
	defer m.SetTiebreak(time.Time{})
	var held bool
	var failing string
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		want := m.WantsTiebreak()
		if !tb.Due(time.Now(), want) {
			continue
		}
		// Bounded, so that an API server that hangs (paused, partitioned
		// away) does not keep the loop from noticing anything else; the
		// hold runs out by itself meanwhile.
		sctx, cancel := context.WithTimeout(ctx, tieStepTimeout)
		err := tb.Step(sctx, time.Now, want, store, m.SetTiebreak)
		cancel()
		switch {
		case err != nil && err.Error() != failing:
			failing = err.Error()
			log.V(2).Info("Tie-breaker not written", "err", failing)
		case err == nil:
			failing = ""
		}
		if h := tb.HeldUntil().After(time.Now()); h != held {
			held = h
			log.Info("Tie-breaker changed", "held", h)
		}
	}
}
