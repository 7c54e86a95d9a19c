package controlplane

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// summary names what LoadRBAC found, for comparing.
type summary struct {
	ClusterRoles, ClusterRoleBindings, Roles, RoleBindings []string
	ExternalClusterRoles, ExternalRoles                    []string
	Policies, PolicyBindings                               []string
}

func summarize(r *RBAC) summary {
	var s summary
	for _, o := range r.ClusterRoles {
		s.ClusterRoles = append(s.ClusterRoles, o.Name)
	}
	for _, o := range r.ClusterRoleBindings {
		s.ClusterRoleBindings = append(s.ClusterRoleBindings, o.Name)
	}
	for _, o := range r.Roles {
		s.Roles = append(s.Roles, o.Namespace+"/"+o.Name)
	}
	for _, o := range r.RoleBindings {
		s.RoleBindings = append(s.RoleBindings, o.Namespace+"/"+o.Name)
	}
	for _, o := range r.Policies {
		s.Policies = append(s.Policies, o.Name)
	}
	for _, o := range r.PolicyBindings {
		s.PolicyBindings = append(s.PolicyBindings, o.Name)
	}
	s.ExternalClusterRoles, s.ExternalRoles = r.ExternalClusterRoles, r.ExternalRoles
	for _, l := range [][]string{s.ClusterRoles, s.ClusterRoleBindings, s.Roles, s.RoleBindings, s.ExternalClusterRoles, s.ExternalRoles, s.Policies, s.PolicyBindings} {
		slices.Sort(l)
	}
	return s
}

// TestLoadRBACManifests checks that each component's ServiceAccount in the
// repository's manifests is found with its roles, whatever the files are
// called. It names no role: the chart decides those. It only requires
// that every component has at least one ClusterRole of its own.
func TestLoadRBACManifests(t *testing.T) {
	dir, err := ManifestsDir()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"berth-controller", "berth-speaker", "berth-ccm"} {
		t.Run(name, func(t *testing.T) {
			r, err := LoadRBAC(dir, "berth-system", name)
			if err != nil {
				t.Fatal(err)
			}
			if len(r.ClusterRoles) == 0 || len(r.ClusterRoleBindings) == 0 {
				t.Errorf("%s: %+v: want a ClusterRole and its binding", name, summarize(r))
			}
		})
	}
}

const testSA = `apiVersion: v1
kind: ServiceAccount
metadata: {name: app, namespace: sys}
`

const testRoles = `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: app}
rules:
- apiGroups: [""]
  resources: [services]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: app}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: app}
subjects: [{kind: ServiceAccount, name: app, namespace: sys}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: app-delegator}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:auth-delegator"}
subjects: [{kind: ServiceAccount, name: app, namespace: sys}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: other}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: other}
subjects: [{kind: ServiceAccount, name: other, namespace: sys}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: other}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: app-lease, namespace: sys}
---
# A subject without a namespace is in the binding's.
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: app-lease, namespace: sys}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: app-lease}
subjects: [{kind: ServiceAccount, name: app}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: app-reader, namespace: kube-system}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: extension-apiserver-authentication-reader}
subjects: [{kind: ServiceAccount, name: app, namespace: sys}]
`

// testPolicy narrows what RBAC grants; LoadRBAC takes every policy.
const testPolicy = `apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: own}
spec:
  matchConstraints: {resourceRules: [{apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [services]}]}
  validations: [{expression: "true"}]
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: own}
spec: {policyName: own, validationActions: [Deny]}
`

var wantApp = summary{
	ClusterRoles:         []string{"app"},
	ClusterRoleBindings:  []string{"app", "app-delegator"},
	Roles:                []string{"sys/app-lease"},
	RoleBindings:         []string{"kube-system/app-reader", "sys/app-lease"},
	ExternalClusterRoles: []string{"system:auth-delegator"},
	ExternalRoles:        []string{"kube-system/extension-apiserver-authentication-reader"},
}

// TestLoadRBAC checks the layouts LoadRBAC must read: one bundled file, a
// file per object in nested directories, a v1 List; and that it skips
// examples and CRDs and refuses manifests that do not bind the account.
func TestLoadRBAC(t *testing.T) {
	list := `{"apiVersion": "v1", "kind": "List", "items": [` +
		`{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "app", "namespace": "sys"}}]}`
	conflicting := strings.Replace(testRoles, "verbs: [get]", "verbs: [get, delete]", 1)
	for _, tc := range []struct {
		name    string
		files   map[string]string
		want    summary
		wantErr string
	}{
		{name: "bundle", files: map[string]string{"berth.yaml": testSA + "---\n" + testRoles}, want: wantApp},
		{name: "nested files", files: map[string]string{
			"a/serviceaccount.yaml": testSA, "b/c/rbac.yml": testRoles, "a/kustomization.yaml": "kind: Kustomization\nresources: [x]\n",
		}, want: wantApp},
		{name: "list", files: map[string]string{"sa.json": list, "rbac.yaml": testRoles}, want: wantApp},
		{name: "same object twice", files: map[string]string{"sa.yaml": testSA, "rbac.yaml": testRoles, "all.yaml": testSA + "---\n" + testRoles}, want: wantApp},
		{name: "examples and crds skipped", files: map[string]string{
			"berth.yaml": testSA + "---\n" + testRoles, "examples/rbac.yaml": conflicting, "crds/rbac.yaml": conflicting,
		}, want: wantApp},
		{name: "admission policies", files: map[string]string{"berth.yaml": testSA + "---\n" + testRoles, "policy.yaml": testPolicy},
			want: func() summary {
				s := wantApp
				s.Policies, s.PolicyBindings = []string{"own"}, []string{"own"}
				return s
			}()},
		{name: "policy of another version", files: map[string]string{"berth.yaml": testSA + "---\n" + testRoles,
			"policy.yaml": strings.ReplaceAll(testPolicy, "/v1\n", "/v1beta1\n")}, wantErr: "unexpected apiVersion"},
		{name: "conflict", files: map[string]string{"sa.yaml": testSA, "rbac.yaml": testRoles, "more/rbac.yaml": conflicting}, wantErr: "defined twice"},
		{name: "no account", files: map[string]string{"rbac.yaml": testRoles}, wantErr: "no ServiceAccount sys/app"},
		{name: "not bound", files: map[string]string{"sa.yaml": testSA}, wantErr: "binds ServiceAccount sys/app"},
		{name: "bad rbac apiVersion", files: map[string]string{"sa.yaml": testSA, "rbac.yaml": strings.ReplaceAll(testRoles, "/v1\n", "/v1beta1\n")}, wantErr: "unexpected apiVersion"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range tc.files {
				path := filepath.Join(dir, name)
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			r, err := LoadRBAC(dir, "sys", "app")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, summarize(r)); diff != "" {
				t.Errorf("RBAC (-want +got):\n%s", diff)
			}
		})
	}
}
