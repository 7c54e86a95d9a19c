package speaker

import (
	"os"
	"regexp"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/berthlb/berth/l2"
)

// policyFormat returns the pattern that the chart's admission policy
// (berth-speaker-l2-members) requires of the membership record.
func policyFormat(t *testing.T) *regexp.Regexp {
	t.Helper()
	return policyVariable(t, "format")
}

// policyVariable returns the pattern of the policy's variable name: the
// CEL raw string after "- name: <name>". CEL's matches is RE2, as Go's
// regexp is.
func policyVariable(t *testing.T, name string) *regexp.Regexp {
	t.Helper()
	b, err := os.ReadFile("../charts/berth/templates/speaker/l2members-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)- name: ` + regexp.QuoteMeta(name) + `\s+expression: >-\s+r'([^']+)'`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no %s variable in the policy", name)
	}
	re, err := regexp.Compile(string(m[1]))
	if err != nil {
		t.Fatalf("the policy's %s: %v", name, err)
	}
	return re
}

// TestRecordFormatMatchesPolicy writes records with every combination of
// their optional fields, as the speaker writes them, and checks that the
// chart's admission policy would let each through: a field the speaker
// writes that the policy does not know stops every record write in
// production (the speakers' writes are refused), which only an e2e test
// with that field would otherwise find.
func TestRecordFormatMatchesPolicy(t *testing.T) {
	format := policyFormat(t)
	names := []string{"node-1", "ip-10-0-1-2.ec2.internal"}
	for mask := range 1 << 5 {
		r := l2.MemberRecord{Rev: uint64(mask + 1)}
		if mask&1 != 0 {
			r.Out = names
		}
		if mask&2 != 0 {
			r.Joint = true
		}
		if mask&4 != 0 {
			r.NextOut = names[:1]
		}
		if mask&8 != 0 {
			r.Voters = names
		}
		if mask&16 != 0 {
			r.NextVoters = names[1:]
		}
		kube := fake.NewClientset()
		store := &leaseRecordStore{leases: kube.CoordinationV1().Leases("berth-system"), name: DefaultL2Members}
		if err := store.Write(t.Context(), r, storedRecord{}); err != nil {
			t.Fatal(err)
		}
		l, err := kube.CoordinationV1().Leases("berth-system").Get(t.Context(), DefaultL2Members, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := l.Annotations[recordAnnotation]; !format.MatchString(got) {
			t.Errorf("the policy refuses the record %s", got)
		}
	}
	// The pattern is the one that refuses: not a pattern that takes all.
	for _, bad := range []string{`{"rev":1,"extra":1}`, `{"rev":1,"voters":[]}`, `{"out":["a"],"rev":1}`, `{"rev":1,"out":["A"]}`} {
		if format.MatchString(bad) {
			t.Errorf("the policy lets %s through", bad)
		}
	}
}
