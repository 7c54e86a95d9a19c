package aws_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"

	"github.com/berthlb/berth/config"
)

// label sets (or, with value nil, removes) the exclude label of node.
func (l *lab) label(node string, value *string) {
	l.kube.update(node, func(n *v1.Node) {
		if value == nil {
			delete(n.Labels, config.ExcludeLabel)
			return
		}
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		n.Labels[config.ExcludeLabel] = *value
	})
}

// TestExcludeLabel: a node labelled
// node.kubernetes.io/exclude-from-external-load-balancers (any value but a
// false one, as the service controller reads it) is no NLB target and no
// Elastic IP candidate; removing the label, or setting it false, makes it
// one again.
func TestExcludeLabel(t *testing.T) {
	empty, yes, no := "", "true", "false"
	t.Run("NLB targets", func(t *testing.T) {
		l := newLab(t)
		l.addNode("n1", "i-1", "198.18.0.11")
		l.addNode("n2", "i-2", "198.18.0.12")
		l.addNode("n3", "i-3", "198.18.0.13")
		svc := service("web", "0c4b7f3e-aaaa-bbbb-cccc-000000000501", func(s *v1.Service) { s.Spec.Ports = s.Spec.Ports[:1] })
		for _, step := range []struct {
			node  string
			value *string
			want  []string
		}{
			{"n2", &empty, []string{"i-1", "i-3"}},
			{"n2", &no, []string{"i-1", "i-2", "i-3"}},
			{"n1", &yes, []string{"i-2", "i-3"}},
			{"n1", nil, []string{"i-1", "i-2", "i-3"}},
		} {
			l.label(step.node, step.value)
			l.ensureActive(svc, l.kube.list())
			for _, tg := range l.srv.Snapshot().TargetGroups {
				if got := targetsOf(tg); !cmp.Equal(got, step.want) {
					t.Errorf("label of %s %v: group %s targets %v; want %v", step.node, labelValue(step.value), tg.Name, got, step.want)
				}
			}
		}
	})
	t.Run("Elastic IP candidates", func(t *testing.T) {
		l := newLab(t)
		l.addNode("n1", "i-1", "198.18.0.11")
		l.addNode("n2", "i-2", "198.18.0.12")
		svc := service("web", "0c4b7f3e-aaaa-bbbb-cccc-000000000502", eipMode)
		st, err := l.ensure(svc, l.kube.list())
		if err != nil {
			t.Fatal(err)
		}
		public := st.Ingress[0].IP
		owner, _ := l.mapping(public)
		other := map[string]string{"n1": "n2", "n2": "n1"}[owner]
		l.label(owner, &empty)
		if err := l.update(svc, l.kube.list()); err != nil {
			t.Fatal(err)
		}
		if got, _ := l.mapping(public); got != other {
			t.Fatalf("with %s excluded the Elastic IP is on %s; want %s", owner, got, other)
		}
		l.label(other, &yes)
		if err := l.update(svc, l.kube.list()); err == nil || !strings.Contains(err.Error(), "no node can take it") {
			t.Errorf("both nodes excluded: Update = %v; want no node can take it", err)
		}
		l.label(owner, &no)
		if err := l.update(svc, l.kube.list()); err != nil {
			t.Fatal(err)
		}
		if got, _ := l.mapping(public); got != owner {
			t.Errorf("with %s's label false the Elastic IP is on %s; want %s", owner, got, owner)
		}
	})
}

func labelValue(v *string) string {
	if v == nil {
		return "removed"
	}
	return "=" + *v
}
