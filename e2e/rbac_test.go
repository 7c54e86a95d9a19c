package e2e

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/e2e/controlplane"
)

// TestRBACServiceAccounts checks the kubeconfigs Berth's processes run with
// in these tests: each authenticates as its component's ServiceAccount, not
// as the admin, and is allowed what the manifests grant and nothing else.
func TestRBACServiceAccounts(t *testing.T) {
	e := newEnv(t)
	ra := func(verb, group, resource, sub, ns, name string) authorizationv1.ResourceAttributes {
		return authorizationv1.ResourceAttributes{Verb: verb, Group: group, Resource: resource, Subresource: sub, Namespace: ns, Name: name}
	}
	for _, tc := range []struct {
		account         string
		allowed, denied []authorizationv1.ResourceAttributes
	}{{
		account: "berth-controller",
		allowed: []authorizationv1.ResourceAttributes{
			ra("patch", "", "services", "status", "default", "web"),
			ra("update", v1alpha1.GroupName, "berthippools", "", "", "p"),
			ra("update", "coordination.k8s.io", "leases", "", berthNS, "berth-controller"),
			ra("patch", v1alpha1.GroupName, "berthbgppeers", "status", "", "r1"),
			ra("watch", v1alpha1.GroupName, "berthnodestatuses", "", "", ""),
		},
		denied: []authorizationv1.ResourceAttributes{
			ra("patch", v1alpha1.GroupName, "berthnodestatuses", "", "", "node1"),
			ra("update", "", "services", "", "default", "web"),
			ra("get", "", "secrets", "", berthNS, "berth-memberlist"),
			ra("update", "coordination.k8s.io", "leases", "", berthNS, "berth-ccm"),
			ra("delete", v1alpha1.GroupName, "berthippools", "", "", "p"),
		},
	}, {
		account: "berth-speaker",
		allowed: []authorizationv1.ResourceAttributes{
			ra("get", "", "secrets", "", berthNS, "berth-memberlist"),
			ra("patch", v1alpha1.GroupName, "berthnodestatuses", "", "", "node1"),
			ra("create", v1alpha1.GroupName, "berthnodestatuses", "", "", ""),
			// Layer-2 ownership leaves out what each node withholds.
			ra("list", v1alpha1.GroupName, "berthnodestatuses", "", "", ""),
			ra("watch", v1alpha1.GroupName, "berthnodestatuses", "", "", ""),
			ra("list", "", "nodes", "", "", ""),
			ra("patch", "", "configmaps", "", berthNS, "berth-lifecycle"),
			ra("watch", "", "configmaps", "", berthNS, "berth-lifecycle"),
			ra("get", "coordination.k8s.io", "leases", "", berthNS, "berth-l2-tiebreak"),
			ra("update", "coordination.k8s.io", "leases", "", berthNS, "berth-l2-tiebreak"),
			ra("get", "coordination.k8s.io", "leases", "", berthNS, "berth-l2-members"),
			ra("update", "coordination.k8s.io", "leases", "", berthNS, "berth-l2-members"),
			ra("create", "coordination.k8s.io", "leases", "", berthNS, ""),
		},
		denied: []authorizationv1.ResourceAttributes{
			ra("list", "", "secrets", "", berthNS, ""),
			ra("get", "", "secrets", "", berthNS, "something-else"),
			ra("get", "", "secrets", "", "default", "berth-memberlist"),
			ra("patch", "", "services", "status", "default", "web"),
			ra("patch", "", "nodes", "", "", "node1"),
			ra("patch", "", "configmaps", "", berthNS, "kube-root-ca.crt"),
			ra("get", "", "configmaps", "", berthNS, "berth-lifecycle"),
			ra("update", "coordination.k8s.io", "leases", "", berthNS, "berth-ccm"),
			ra("update", "coordination.k8s.io", "leases", "", berthNS, "berth-controller"),
			ra("delete", "coordination.k8s.io", "leases", "", berthNS, "berth-l2-tiebreak"),
			ra("delete", "coordination.k8s.io", "leases", "", berthNS, "berth-l2-members"),
			ra("list", "coordination.k8s.io", "leases", "", berthNS, ""),
			ra("get", "coordination.k8s.io", "leases", "", "default", "berth-l2-tiebreak"),
			ra("patch", v1alpha1.GroupName, "berthbgppeers", "status", "", "r1"),
			ra("delete", v1alpha1.GroupName, "berthnodestatuses", "", "", "node1"),
		},
	}, {
		// The uninstall hook: the mark, the speakers' Pods, the pools.
		account: "berth-uninstall",
		allowed: []authorizationv1.ResourceAttributes{
			ra("patch", "", "configmaps", "", berthNS, "berth-lifecycle"),
			ra("list", "", "pods", "", berthNS, ""),
			ra("list", v1alpha1.GroupName, "berthippools", "", "", ""),
		},
		denied: []authorizationv1.ResourceAttributes{
			ra("patch", "", "configmaps", "", berthNS, "other"),
			ra("create", "", "configmaps", "", berthNS, ""),
			ra("list", "", "pods", "", "default", ""),
			ra("delete", "", "pods", "", berthNS, "berth-speaker-x"),
			ra("update", v1alpha1.GroupName, "berthippools", "", "", "p"),
			ra("patch", "apps", "deployments", "", berthNS, "berth-controller"),
		},
	}, {
		account: "berth-ccm",
		allowed: []authorizationv1.ResourceAttributes{
			ra("patch", "", "services", "status", "default", "web"),
			ra("update", "coordination.k8s.io", "leases", "", berthNS, "berth-ccm"),
		},
		denied: []authorizationv1.ResourceAttributes{
			ra("get", "", "secrets", "", berthNS, "berth-memberlist"),
			ra("update", v1alpha1.GroupName, "berthippools", "", "", "p"),
			ra("update", "coordination.k8s.io", "leases", "", berthNS, "berth-controller"),
		},
	}} {
		t.Run(tc.account, func(t *testing.T) {
			cfg, err := clientcmd.BuildConfigFromFlags("", e.saKubeconfig(t, tc.account))
			if err != nil {
				t.Fatal(err)
			}
			client := kubernetes.NewForConfigOrDie(cfg)
			review, err := client.AuthenticationV1().SelfSubjectReviews().Create(t.Context(), &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
			if err != nil {
				t.Fatalf("who am I: %v", err)
			}
			want := "system:serviceaccount:" + berthNS + ":" + tc.account
			if got := review.Status.UserInfo.Username; got != want {
				t.Errorf("authenticated as %q, want %q", got, want)
			}
			if g := review.Status.UserInfo.Groups; slices.Contains(g, "system:masters") {
				t.Errorf("groups %v include system:masters", g)
			}
			for _, want := range []bool{true, false} {
				attrs := tc.denied
				if want {
					attrs = tc.allowed
				}
				for _, a := range attrs {
					r, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(t.Context(), &authorizationv1.SelfSubjectAccessReview{
						Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &a},
					}, metav1.CreateOptions{})
					if err != nil {
						t.Fatal(err)
					}
					if r.Status.Allowed != want {
						t.Errorf("%s %s.%s/%s %s/%s: allowed %v, want %v", a.Verb, a.Resource, a.Group, a.Subresource, a.Namespace, a.Name, r.Status.Allowed, want)
					}
				}
			}
		})
	}
}

// TestControllerRBACEnforced proves that the tests' RBAC bites: with one
// rule taken out of the shipped ClusterRole, berth-controller visibly fails
// (no address, or never ready, and the API server's refusal in its log),
// and giving the rule back lets it recover without a restart.
func TestControllerRBACEnforced(t *testing.T) {
	e := newEnv(t)
	dir, err := controlplane.ManifestsDir()
	if err != nil {
		t.Fatal(err)
	}
	shipped, err := controlplane.LoadRBAC(dir, berthNS, "berth-controller")
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := e.cp.TokenKubeconfig(t.Context(), berthNS, "berth-controller")
	if err != nil {
		t.Fatal(err)
	}
	e.pool(t, "rbac", v1alpha1.BerthIPPoolSpec{Addresses: []v1alpha1.AddressRange{"203.0.113.0/28"}})

	t.Run("services/status patch", func(t *testing.T) {
		applyRBAC(t, e, withoutVerb(t, shipped, "services/status", "patch"))
		ctrl := e.startControllerAs(t, kubeconfig, nil)
		ctrl.expectRefusals()
		ctrl.waitReady(t)
		e.namespace(t, "rbac1", nil)
		e.service(t, "rbac1", "web")
		waitLogged(t, ctrl.proc, "forbidden", "cannot patch resource", "services/status")
		if s, err := e.kube.CoreV1().Services("rbac1").Get(t.Context(), "web", metav1.GetOptions{}); err != nil || len(s.Status.LoadBalancer.Ingress) > 0 || condition(s) != nil {
			t.Fatalf("Service got a status without the permission to write it: %v %s", err, statusString(s))
		}
		// The same process, given the rule back, writes the address: the
		// missing rule was the only thing in the way.
		applyRBAC(t, e, shipped)
		e.waitAllocated(t, "rbac1", "web", 1)
	})

	// Listing is how informers start against an API server without
	// watch-list streaming, as every Berth process in these tests does
	// (berthEnviron).
	t.Run("namespaces list", func(t *testing.T) {
		applyRBAC(t, e, withoutVerb(t, shipped, "namespaces", "list"))
		ctrl := e.startControllerAs(t, kubeconfig, nil)
		ctrl.expectRefusals()
		waitLogged(t, ctrl.proc, "forbidden", "cannot list resource", "namespaces")
		ctrl.requireNotReady(t)
	})

	// Streaming the initial list over a watch, as against this API server
	// by default, needs watch (and not list).
	t.Run("namespaces watch, with watch-list streaming", func(t *testing.T) {
		applyRBAC(t, e, withoutVerb(t, shipped, "namespaces", "watch"))
		ctrl := e.startControllerAs(t, kubeconfig, []string{"KUBE_FEATURE_WatchListClient=true"})
		ctrl.expectRefusals()
		waitLogged(t, ctrl.proc, "forbidden", "cannot watch resource", "namespaces")
		ctrl.requireNotReady(t)
	})
}

// requireNotReady fails t if the controller's /readyz answers ok.
func (p *controllerProc) requireNotReady(t testing.TB) {
	t.Helper()
	resp, err := http.Get("http://" + p.metrics + "/readyz")
	if err != nil {
		return
	}
	_ = resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Errorf("controller ready although its informers cannot sync")
	}
}

// expectRefusals tells p's cleanup that RBAC refusals in its log are
// expected.
func (p *proc) expectRefusals() {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	p.mayBeRefused = true
}

// applyRBAC applies r with the admin client.
func applyRBAC(t testing.TB, e *env, r *controlplane.RBAC) {
	t.Helper()
	if err := e.cp.ApplyRBAC(t.Context(), r); err != nil {
		t.Fatal(err)
	}
}

// withoutVerb returns a copy of r whose roles no longer grant verb on
// resource ("services/status"). It fails t if they did not grant it.
func withoutVerb(t testing.TB, r *controlplane.RBAC, resource, verb string) *controlplane.RBAC {
	t.Helper()
	out, removed := trimRBAC(r, resource, verb)
	if !removed {
		t.Fatalf("the shipped RBAC does not grant %s on %s", verb, resource)
	}
	return out
}

// trimRBAC returns a copy of r whose roles no longer grant verb on
// resource, and whether they did.
func trimRBAC(r *controlplane.RBAC, resource, verb string) (*controlplane.RBAC, bool) {
	out := *r
	removed := false
	trim := func(rules []rbacv1.PolicyRule) []rbacv1.PolicyRule {
		var kept []rbacv1.PolicyRule
		for _, rule := range rules {
			rule = *rule.DeepCopy()
			if slices.Contains(rule.Resources, resource) && slices.Contains(rule.Verbs, verb) {
				removed = true
				// Split the rule: the other resources keep the verb, the
				// resource keeps its other verbs.
				if others := slices.DeleteFunc(slices.Clone(rule.Resources), func(s string) bool { return s == resource }); len(others) > 0 {
					o := *rule.DeepCopy()
					o.Resources = others
					kept = append(kept, o)
				}
				rule.Resources = []string{resource}
				rule.Verbs = slices.DeleteFunc(rule.Verbs, func(v string) bool { return v == verb })
				if len(rule.Verbs) == 0 {
					continue
				}
			}
			kept = append(kept, rule)
		}
		return kept
	}
	out.ClusterRoles = nil
	for _, cr := range r.ClusterRoles {
		cr = cr.DeepCopy()
		cr.Rules = trim(cr.Rules)
		out.ClusterRoles = append(out.ClusterRoles, cr)
	}
	out.Roles = nil
	for _, role := range r.Roles {
		role = role.DeepCopy()
		role.Rules = trim(role.Rules)
		out.Roles = append(out.Roles, role)
	}
	return &out, removed
}

// waitLogged waits up to 15 s for a line of p's log containing every one
// of substrs.
func waitLogged(t testing.TB, p *proc, substrs ...string) {
	t.Helper()
	poll(t, 15*time.Second, fmt.Sprintf("%s logs %q", p.name, substrs), func() error {
		p.logMu.Lock()
		defer p.logMu.Unlock()
		for _, l := range p.log {
			if !slices.ContainsFunc(substrs, func(s string) bool { return !strings.Contains(l, s) }) {
				return nil
			}
		}
		return errors.New("no such line")
	})
}
