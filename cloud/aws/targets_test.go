package aws_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	"k8s.io/cloud-provider/api"
)

// A node that comes back while its target is still draining is
// registered again: a draining target is not a registered one.
func TestNLBTargetReturnsWhileDraining(t *testing.T) {
	l := newLab(t)
	n1 := l.addNode("n1", "i-1", "198.18.0.11")
	n2 := l.addNode("n2", "i-2", "198.18.0.12")
	svc := service("web", "0c4b7f3e-aaaa-bbbb-cccc-000000000401")
	l.ensureActive(svc, []*v1.Node{n1, n2})
	if err := l.b.Update(l.ctx, svc, []*v1.Node{n1}); err != nil {
		t.Fatal(err)
	}
	if err := l.b.Update(l.ctx, svc, []*v1.Node{n1, n2}); err != nil {
		t.Fatal(err)
	}
	for _, tg := range l.srv.Snapshot().TargetGroups {
		if got := targetsOf(tg); !cmp.Equal(got, []string{"i-1", "i-2"}) {
			t.Errorf("group %s targets %v; want n2's i-2 registered again while it drained", tg.Name, got)
		}
	}
}

// Targets go in calls of at most 100, and a call AWS refuses for one
// invalid target does not keep the others out.
func TestNLBTargetChunksAndInvalidTarget(t *testing.T) {
	l := newLab(t)
	var nodes []*v1.Node
	var want []string
	for i := range 120 {
		id := fmt.Sprintf("i-%03d", i)
		nodes = append(nodes, l.addNode(fmt.Sprintf("n%03d", i), id, fmt.Sprintf("198.18.0.%d", 100+i)))
		want = append(want, id)
	}
	svc := service("web", "0c4b7f3e-aaaa-bbbb-cccc-000000000402", func(s *v1.Service) { s.Spec.Ports = s.Spec.Ports[:1] })
	l.srv.FailNext("RegisterTargets", "InvalidTarget", 1)
	l.ensureActive(svc, nodes)
	tg := l.srv.Snapshot().TargetGroups[0]
	if got := targetsOf(tg); !cmp.Equal(got, want) {
		t.Errorf("%d targets registered, want all %d", len(got), len(want))
	}
	// 1 refused chunk of 100, retried one by one, and a chunk of 20.
	if got := l.srv.Calls("RegisterTargets"); got != 1+100+1 {
		t.Errorf("RegisterTargets calls = %d, want 102", got)
	}
}

// A target group that serves no port any more is deleted even though AWS
// holds on to it for a while after its listener moved: the call asks for
// a retry, and the retry deletes it.
func TestNLBDetachedGroupDeletedLater(t *testing.T) {
	l := newLab(t)
	l.srv.SetProvisioningDescribes(0)
	n1 := l.addNode("n1", "i-1", "198.18.0.11")
	svc := service("web", "0c4b7f3e-aaaa-bbbb-cccc-000000000403")
	l.ensureActive(svc, []*v1.Node{n1})
	svc.Spec.Ports[0].NodePort = 30081
	_, err := l.b.Ensure(l.ctx, svc, []*v1.Node{n1})
	if !errors.As(err, new(*api.RetryError)) {
		t.Fatalf("Ensure = %v; want a retry while AWS holds the old group", err)
	}
	if _, err := l.b.Ensure(l.ctx, svc, []*v1.Node{n1}); err != nil {
		t.Fatal(err)
	}
	if s := l.srv.Snapshot(); len(s.TargetGroups) != 2 {
		t.Errorf("%d target groups after the retry, want 2 (the old one deleted)", len(s.TargetGroups))
	}
}
