package helmchart

import (
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// grants lists a role's rules as "group/resource:verb" (plus "=name" with
// resourceNames).
func grants(rules []rbacv1.PolicyRule) []string {
	var out []string
	for _, r := range rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					s := g + "/" + res + ":" + v
					if len(r.ResourceNames) > 0 {
						s += "=" + strings.Join(r.ResourceNames, ",")
					}
					out = append(out, s)
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// roles renders vals and returns every Role and ClusterRole's grants by
// kind/name.
func roles(t *testing.T, vals map[string]any) map[string][]string {
	t.Helper()
	ch, _ := loadChart(t)
	ms, err := Render(ch, Options{Values: vals})
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Objects(ms)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, o := range objs {
		switch o.GetKind() {
		case "ClusterRole", "Role":
			var r rbacv1.ClusterRole
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &r); err != nil {
				t.Fatal(err)
			}
			out[o.GetKind()+"/"+o.GetName()] = grants(r.Rules)
		}
	}
	return out
}

// TestRBACFollowsValues checks that permissions a configuration does not
// use are not granted, and that the Secrets rule always names its Secrets
// (an empty resourceNames would grant every Secret).
func TestRBACFollowsValues(t *testing.T) {
	for _, tc := range []struct {
		name      string
		vals      map[string]any
		role      string
		has, lack []string
	}{
		{
			name: "ccm pools reads pools, patches no node", role: "ClusterRole/berth-ccm",
			vals: map[string]any{"ccm": map[string]any{"enabled": true}},
			has:  []string{"/services/status:patch", "berth.dev/berthippools:list", "/namespaces:watch", "/nodes:list"},
			lack: []string{"/nodes:patch", "discovery.k8s.io/endpointslices:list", "/services:patch", "events.k8s.io/events:create"},
		},
		{
			name: "ccm aws patches nodes, reads slices, no pools", role: "ClusterRole/berth-ccm",
			vals: map[string]any{"ccm": map[string]any{"enabled": true, "backend": "aws", "aws": map[string]any{"clusterName": "c"}}},
			has:  []string{"/nodes:patch", "discovery.k8s.io/endpointslices:watch", "/services/status:patch"},
			lack: []string{"berth.dev/berthippools:list", "/namespaces:list", "/services:patch"},
		},
		{
			name: "controller never touches Secrets or Service specs, and only reads Nodes", role: "ClusterRole/berth-controller",
			has:  []string{"berth.dev/berthippools:update", "/services/status:patch", "berth.dev/berthl2advertisements/status:patch", "/nodes:list", "networking.k8s.io/servicecidrs:watch", "berth.dev/berthnodestatuses:watch", "berth.dev/berthbgppeers/status:patch"},
			lack: []string{"/secrets:get", "/nodes:get", "/nodes:patch", "/services:patch", "/services:update", "/services:get", "berth.dev/berthnodestatuses:patch"},
		},
		{
			name: "speaker with everything", role: "ClusterRole/berth-speaker",
			has: []string{"/nodes:watch", "berth.dev/berthnodestatuses:patch", "berth.dev/berthnodestatuses:create", "berth.dev/berthl2advertisements:watch", "discovery.k8s.io/endpointslices:list"},
			// The router ID comes from the Node in the informer's cache.
			lack: []string{"/services:patch", "/nodes:patch", "/nodes:get", "/secrets:list", "/secrets:get", "berth.dev/berthbgppeers/status:patch", "berth.dev/berthnodestatuses:get", "berth.dev/berthnodestatuses:delete"},
		},
		{
			name: "speaker BGP with a router ID needs no Node get and no layer 2", role: "ClusterRole/berth-speaker",
			vals: map[string]any{"speaker": map[string]any{"bgp": map[string]any{"routerID": "192.0.2.1"}, "layer2": map[string]any{"enabled": false}}},
			has:  []string{"berth.dev/berthnodestatuses:patch"},
			lack: []string{"/nodes:get", "berth.dev/berthl2advertisements:list"},
		},
		{
			name: "speaker without BGP writes no peer status but its node's", role: "ClusterRole/berth-speaker",
			vals: map[string]any{"speaker": map[string]any{"bgp": map[string]any{"enabled": false}}},
			has:  []string{"berth.dev/berthnodestatuses:patch"},
			lack: []string{"berth.dev/berthbgppeers/status:patch", "/nodes:get"},
		},
		{
			name: "speaker reads its Secrets by name", role: "Role/berth-speaker-secrets",
			vals: map[string]any{"speaker": map[string]any{"bgp": map[string]any{"passwordSecrets": []any{"a", "b"}}}},
			has:  []string{"/secrets:get=berth-memberlist,a,b"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := roles(t, tc.vals)[tc.role]
			if !ok {
				t.Fatalf("%s not rendered", tc.role)
			}
			for _, g := range tc.has {
				if !slices.Contains(got, g) {
					t.Errorf("%s lacks %s; has %v", tc.role, g, got)
				}
			}
			for _, g := range tc.lack {
				if slices.Contains(got, g) {
					t.Errorf("%s grants %s, which this configuration does not use", tc.role, g)
				}
			}
		})
	}
	// No Secret to read: no Role at all, rather than one with an empty
	// resourceNames.
	rs := roles(t, map[string]any{"speaker": map[string]any{"bgp": map[string]any{"passwordSecrets": []any{}}, "layer2": map[string]any{"enabled": false}}})
	if g, ok := rs["Role/berth-speaker-secrets"]; ok {
		t.Errorf("Role berth-speaker-secrets rendered without Secrets to name: %v", g)
	}
	for name, gs := range rs {
		for _, g := range gs {
			if strings.Contains(g, "/secrets:") && !strings.Contains(g, "=") {
				t.Errorf("%s grants %s on every Secret", name, g)
			}
		}
	}
}
