package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// membersPolicy is the chart's ValidatingAdmissionPolicy on the layer-2
// membership record; membersLease and membersAnnotation are where the
// speaker keeps the record (speaker/l2record.go), knownAnnotation where
// it keeps the known list beside it (speaker/l2known.go).
const (
	membersPolicy     = "berth-speaker-l2-members"
	membersLease      = "berth-l2-members"
	membersAnnotation = "berth.dev/l2-members"
	knownAnnotation   = "berth.dev/l2-known"
)

// TestSpeakerL2MembersPolicy checks the chart's admission policy on the
// membership record against the real API server, under the manifests'
// RBAC: the speaker's ServiceAccount may create the record with a
// revision of at least 1 and update it only to the next revision, in the
// format the speaker writes; a jump, a step back, the same revision and a
// garbled record are refused, naming the policy. The known list may come
// with a record of revision 0 on a create, and change alone with the
// record unchanged; a garbled one is refused. The admin is not
// affected, and the tie-breaker Lease is not concerned. (The speakers'
// own writes under this policy: TestSpeakerL2ForgetsGoneNode.)
func TestSpeakerL2MembersPolicy(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	cfg, err := clientcmd.BuildConfigFromFlags("", e.speakerKubeconfig(t, "node-a")) // also applies the manifests' RBAC and policies
	if err != nil {
		t.Fatal(err)
	}
	speaker := kubernetes.NewForConfigOrDie(cfg)
	create := func(c kubernetes.Interface, name, record string, dryRun bool, known ...string) error {
		l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{}}}
		if record != "" {
			l.Annotations[membersAnnotation] = record
		}
		for _, k := range known {
			l.Annotations[knownAnnotation] = k
		}
		opts := metav1.CreateOptions{}
		if dryRun {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		_, err := c.CoordinationV1().Leases(berthNS).Create(ctx, l, opts)
		return err
	}
	// update sets the annotation (membersAnnotation unless given) to value,
	// or removes it when value is "".
	update := func(c kubernetes.Interface, value string, annotation ...string) error {
		key := membersAnnotation
		for _, a := range annotation {
			key = a
		}
		l, err := c.CoordinationV1().Leases(berthNS).Get(ctx, membersLease, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if value == "" {
			delete(l.Annotations, key)
		} else {
			if l.Annotations == nil {
				l.Annotations = map[string]string{}
			}
			l.Annotations[key] = value
		}
		_, err = c.CoordinationV1().Leases(berthNS).Update(ctx, l, metav1.UpdateOptions{})
		return err
	}
	refusedBy := func(err error, want string) error {
		switch {
		case !apierrors.IsInvalid(err):
			return fmt.Errorf("got %v, want Invalid", err)
		case !strings.Contains(err.Error(), "ValidatingAdmissionPolicy '"+membersPolicy+"'") || !strings.Contains(err.Error(), want):
			return fmt.Errorf("refusal %q names not the policy and %q", err, want)
		}
		return nil
	}
	// The API server enforces a new policy a moment after its creation; a
	// dry run goes through admission and writes nothing.
	took := poll(t, 30*time.Second, "the policy enforced", func() error {
		return refusedBy(create(speaker, membersLease, `{"rev":0}`, true), "at least 1")
	})
	t.Logf("policy enforced %v after it was created", took.Round(time.Millisecond))

	steps := []struct {
		name    string
		write   func() error
		wantErr string // "" when allowed
	}{
		{"create without a record", func() error { return create(speaker, membersLease, "", false) }, "not none"},
		{"create garbled", func() error { return create(speaker, membersLease, `{"rev":1,"out":"node-c"}`, false) }, "well-formed"},
		{"create revision 0 with a known list (dry run)", func() error {
			return create(speaker, membersLease, `{"rev":0}`, true, `["node-a","node-b"]`)
		}, ""},
		{"create with a garbled known list", func() error {
			return create(speaker, membersLease, `{"rev":1}`, false, `[node-a]`)
		}, "well-formed known list"},
		{"create revision 1", func() error {
			return create(speaker, membersLease, `{"rev":1,"joint":true,"nextOut":["node-c"]}`, false)
		}, ""},
		{"update to revision 2", func() error { return update(speaker, `{"rev":2,"out":["node-c"]}`) }, ""},
		{"update the known list alone", func() error { return update(speaker, `["node-a","node-b","node-c"]`, knownAnnotation) }, ""},
		{"update the known list garbled", func() error { return update(speaker, `["node-a", "node-b"]`, knownAnnotation) }, "well-formed known list"},
		{"update to revision 4", func() error { return update(speaker, `{"rev":4,"out":["node-c"]}`) }, "from 2 to 4"},
		{"update back to revision 1", func() error { return update(speaker, `{"rev":1}`) }, "from 2 to 1"},
		{"update to the same revision", func() error { return update(speaker, `{"rev":2}`) }, "from 2 to 2"},
		{"update garbled", func() error { return update(speaker, `{"rev":3,"out":["node-c"],"extra":1}`) }, "well-formed"},
		{"update to no JSON", func() error { return update(speaker, "rev 3") }, "well-formed"},
		{"update removing the record", func() error { return update(speaker, "") }, "not none"},
		{"update to revision 3", func() error {
			return update(speaker, `{"rev":3,"out":["node-b","node-c"],"joint":true,"nextOut":["node-c"]}`)
		}, ""},
		{"update to revision 4 with voters", func() error {
			return update(speaker, `{"rev":4,"out":["node-c"],"joint":true,"voters":["node-a","node-b","node-c"],"nextVoters":["node-a","node-b"]}`)
		}, ""},
		{"admin sets revision 9", func() error { return update(e.kube, `{"rev":9}`) }, ""},
		{"update to revision 10", func() error { return update(speaker, `{"rev":10}`) }, ""},
		{"tie-breaker Lease, no record", func() error { return create(speaker, "berth-l2-tiebreak", "", false) }, ""},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			err := s.write()
			if s.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err := refusedBy(err, s.wantErr); err != nil {
				t.Fatal(err)
			}
			t.Logf("refused: %v", err)
		})
	}
	l, err := e.kube.CoordinationV1().Leases(berthNS).Get(ctx, membersLease, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := l.Annotations[membersAnnotation], `{"rev":10}`; got != want {
		t.Errorf("record at the end %s, want %s", got, want)
	}
	if got, want := l.Annotations[knownAnnotation], `["node-a","node-b","node-c"]`; got != want {
		t.Errorf("known list at the end %s, want %s", got, want)
	}
}
