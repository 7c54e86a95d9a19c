package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	berthac "github.com/berthlb/berth/client/applyconfiguration/api/v1alpha1"
	"github.com/berthlb/berth/client/clientset/versioned"
	"github.com/berthlb/berth/e2e/controlplane"
)

// nodeStatusPolicy is the chart's ValidatingAdmissionPolicy that lets a
// speaker write only its own node's BerthNodeStatus.
const nodeStatusPolicy = "berth-speaker-own-node-status"

// TestSpeakerNodeStatusPolicy checks the chart's admission policy against
// the real API server (v1.37), under the manifests' RBAC: the speaker's
// ServiceAccount with a token bound to its Pod on node-a (a TokenRequest
// bound to the Pod, as the kubelet's projected token is) may create, update
// and delete BerthNodeStatus node-a and no other, and is told so naming the
// policy; a token of the same account bound to no node may write none; the
// admin is not affected.
func TestSpeakerNodeStatusPolicy(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	for i, n := range []string{"node-a", "node-b"} {
		if _, err := controlplane.CreateNode(ctx, e.kube, n, netip.AddrFrom4([4]byte{198, 51, 100, byte(10 + i)})); err != nil {
			t.Fatal(err)
		}
	}
	clientOf := func(kubeconfig string) versioned.Interface {
		t.Helper()
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		return versioned.NewForConfigOrDie(cfg)
	}
	onA := clientOf(e.speakerKubeconfig(t, "node-a")) // also applies the manifests' RBAC and policy
	plain, err := e.cp.TokenKubeconfig(ctx, berthNS, "berth-speaker")
	if err != nil {
		t.Fatal(err)
	}
	unbound := clientOf(plain)
	apply := func(c versioned.Interface, node string, bgp int32, dryRun bool) error {
		obj := berthac.BerthNodeStatus(node).WithStatus(berthac.BerthNodeStatusStatus().WithEligible(true).WithBGPAddresses(bgp))
		opts := metav1.ApplyOptions{FieldManager: "berth-speaker", Force: true}
		if dryRun {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		_, err := c.BerthV1alpha1().BerthNodeStatuses().Apply(ctx, obj, opts)
		return err
	}
	// The API server enforces a new policy a moment after its creation; a
	// dry run goes through admission and writes nothing.
	took := poll(t, 30*time.Second, "the policy enforced", func() error {
		if err := apply(onA, "node-b", 1, true); !apierrors.IsForbidden(err) {
			return fmt.Errorf("dry run of node-b from node-a: %v", err)
		}
		return nil
	})
	t.Logf("policy enforced %v after it was created", took.Round(time.Millisecond))

	refusedBy := func(err error, want string) error {
		switch {
		case !apierrors.IsForbidden(err):
			return fmt.Errorf("got %v, want Forbidden", err)
		case !strings.Contains(err.Error(), "ValidatingAdmissionPolicy '"+nodeStatusPolicy+"'") || !strings.Contains(err.Error(), want):
			return fmt.Errorf("refusal %q names not the policy and %q", err, want)
		}
		return nil
	}
	for _, tc := range []struct {
		name    string
		client  versioned.Interface
		node    string
		wantErr string // "" when allowed
	}{
		{"own node: create", onA, "node-a", ""},
		{"own node: update", onA, "node-a", ""},
		{"another node: create", onA, "node-b", "may write only BerthNodeStatus node-a, not node-b"},
		{"token bound to no node", unbound, "node-a", "bound to no node"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := apply(tc.client, tc.node, 7, false)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err := refusedBy(err, tc.wantErr); err != nil {
				t.Fatal(err)
			}
			t.Logf("refused: %v", err)
		})
	}
	if _, err := e.berth.BerthV1alpha1().BerthNodeStatuses().Get(ctx, "node-b", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("BerthNodeStatus node-b after the refused create: %v", err)
	}

	t.Run("another node: update", func(t *testing.T) {
		// The admin (as the speaker of node-b would) may write it.
		if err := apply(e.berth, "node-b", 2, false); err != nil {
			t.Fatalf("admin write of node-b: %v", err)
		}
		if err := refusedBy(apply(onA, "node-b", 9, false), "not node-b"); err != nil {
			t.Fatal(err)
		}
		if got, err := e.berth.BerthV1alpha1().BerthNodeStatuses().Get(ctx, "node-b", metav1.GetOptions{}); err != nil || got.Status.BGPAddresses != 2 {
			t.Fatalf("node-b after the refused update: %v, %+v", err, got)
		}
	})

	// The manifests do not let the speaker delete; with a role that does,
	// the policy still keeps it to its own node.
	t.Run("delete", func(t *testing.T) {
		granted := "berth-e2e-speaker-delete"
		role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: granted}, Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{"berth.dev"}, Resources: []string{"berthnodestatuses"}, Verbs: []string{"delete"},
		}}}
		binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: granted},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: granted},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: berthNS, Name: "berth-speaker"}},
		}
		applyRBAC(t, e, &controlplane.RBAC{
			ServiceAccount: &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: berthNS, Name: "berth-speaker"}},
			ClusterRoles:   []*rbacv1.ClusterRole{role}, ClusterRoleBindings: []*rbacv1.ClusterRoleBinding{binding},
		})
		del := func(c versioned.Interface, node string) error {
			return c.BerthV1alpha1().BerthNodeStatuses().Delete(ctx, node, metav1.DeleteOptions{})
		}
		// RBAC allows it once the authorizer's cache has the binding: the
		// refusal then comes from the policy.
		poll(t, 30*time.Second, "the policy refuses deleting node-b", func() error {
			return refusedBy(del(onA, "node-b"), "not node-b")
		})
		if err := del(onA, "node-a"); err != nil {
			t.Fatalf("delete own node's status: %v", err)
		}
		if err := refusedBy(del(unbound, "node-b"), "bound to no node"); err != nil {
			t.Fatalf("delete with a token bound to no node: %v", err)
		}
	})
}
