package speaker

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"k8s.io/klog/v2/ktesting"

	"github.com/berthlb/berth/l2"
)

// mapSecrets answers from a map of "secret/key" to value.
type mapSecrets map[string]string

func (m mapSecrets) get(_ context.Context, name, key string) (string, bool, error) {
	if v, ok := m["error"]; ok {
		return "", false, errors.New(v)
	}
	v, ok := m[name+"/"+key]
	return v, ok, nil
}

func TestMemberlistKeys(t *testing.T) {
	k16, k32 := strings.Repeat("a", 16), strings.Repeat("b", 32)
	for _, tc := range []struct {
		name        string
		secrets     mapSecrets
		want        membershipKeys
		wantProblem string
	}{
		{name: "primary only", secrets: mapSecrets{"ml/secretkey": k16}, want: membershipKeys{primary: []byte(k16)}},
		{name: "primary and accepted", secrets: mapSecrets{"ml/secretkey": k16, "ml/secretkey-accept": k32},
			want: membershipKeys{primary: []byte(k16), accept: []byte(k32)}},
		{name: "missing", secrets: mapSecrets{}, wantProblem: `Secret "ml" (key "secretkey") with the memberlist key does not exist`},
		{name: "bad primary", secrets: mapSecrets{"ml/secretkey": "short"}, wantProblem: `the memberlist key "secretkey" in Secret "ml" is 5 bytes`},
		{name: "bad accepted", secrets: mapSecrets{"ml/secretkey": k16, "ml/secretkey-accept": "short"}, wantProblem: `the memberlist key "secretkey-accept" in Secret "ml" is 5 bytes`},
		{name: "API error", secrets: mapSecrets{"error": "forbidden"}, wantProblem: `cannot read the memberlist Secret "ml": forbidden`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Speaker{secrets: tc.secrets}
			got, problem := s.memberlistKeys(t.Context(), "ml")
			if tc.wantProblem != "" {
				if !strings.Contains(problem, tc.wantProblem) {
					t.Errorf("problem %q, want it to contain %q", problem, tc.wantProblem)
				}
				return
			}
			if problem != "" || !got.equal(tc.want) {
				t.Errorf("got %q/%q, %q; want %q/%q", got.primary, got.accept, problem, tc.want.primary, tc.want.accept)
			}
		})
	}
}

// TestRotateKeys: a changed Secret is applied to the running membership; a
// missing or bad one keeps the keys in use and says why.
func TestRotateKeys(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	old, next := strings.Repeat("o", 32), strings.Repeat("n", 32)
	// The member binds a port itself: one found free may be taken before
	// it does, so try another then.
	var m *l2.Members
	for i := 0; ; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		m, err = l2.NewMembers(ctx, l2.MembersConfig{NodeName: "n1", BindAddr: "127.0.0.1", BindPort: port, SecretKey: []byte(old)})
		if err == nil {
			break
		}
		if i == 4 || !strings.Contains(err.Error(), "address already in use") {
			t.Fatal(err)
		}
	}
	defer func() { _ = m.Shutdown() }()
	cur := membershipKeys{primary: []byte(old)}
	secrets := mapSecrets{"ml/secretkey": old, "ml/secretkey-accept": next}
	s := &Speaker{secrets: secrets}
	for i, step := range []struct {
		set         map[string]string
		want        membershipKeys
		wantProblem string
	}{
		{set: nil, want: membershipKeys{primary: []byte(old), accept: []byte(next)}},
		{set: map[string]string{"ml/secretkey": next, "ml/secretkey-accept": old}, want: membershipKeys{primary: []byte(next), accept: []byte(old)}},
		{set: map[string]string{"ml/secretkey-accept": "short"}, want: membershipKeys{primary: []byte(next), accept: []byte(old)}, wantProblem: "5 bytes"},
		{set: map[string]string{"ml/secretkey-accept": ""}, want: membershipKeys{primary: []byte(next)}},
	} {
		for k, v := range step.set {
			if v == "" {
				delete(secrets, k)
			} else {
				secrets[k] = v
			}
		}
		var problem string
		cur, problem = s.rotateKeys(ctx, "ml", m, cur)
		if !cur.equal(step.want) || !strings.Contains(problem, step.wantProblem) || (step.wantProblem == "" && problem != "") {
			t.Errorf("step %d: keys %q/%q, problem %q; want %q/%q, %q", i, cur.primary, cur.accept, problem, step.want.primary, step.want.accept, step.wantProblem)
		}
	}
}
