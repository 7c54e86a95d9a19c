package helmchart

import "strings"

// ValueSets are the configurations the chart's tests lint, render into
// golden files and (e2e/chart_test.go) dry-run against an API server, by
// name: the defaults, a BGP-only speaker, berth-ccm with the aws backend
// (and a forwarding-only speaker for eip mode), and the controller alone
// with monitoring objects and pinned images.
func ValueSets() map[string]map[string]any {
	return map[string]map[string]any{
		"defaults": nil,
		"speaker-bgp-only": {
			"controller": map[string]any{"enabled": false},
			"speaker": map[string]any{
				"layer2":     map[string]any{"enabled": false},
				"forwarding": map[string]any{"enabled": false},
				"bgp":        map[string]any{"passwordSecrets": []any{"bgp-passwords", "rack-7"}},
			},
		},
		"ccm-aws": {
			"controller": map[string]any{"enabled": false},
			"speaker": map[string]any{
				"bgp":    map[string]any{"enabled": false},
				"layer2": map[string]any{"enabled": false},
			},
			"ccm": map[string]any{
				"enabled": true, "backend": "aws", "loadBalancerClass": "berth.dev/aws",
				"aws": map[string]any{"clusterName": "prod", "region": "eu-west-1", "defaultMode": "eip",
					"eip": map[string]any{"allocationIDs": []any{"eipalloc-0123"}}},
				"serviceAccount": map[string]any{"annotations": map[string]any{"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/berth-ccm"}},
			},
		},
		"controller-only": {
			"speaker": map[string]any{"enabled": false},
			"metrics": map[string]any{"serviceMonitor": map[string]any{"enabled": true}, "prometheusRule": map[string]any{"enabled": true}},
			"image":   map[string]any{"tag": "0.3.0"},
			"controller": map[string]any{
				"image": map[string]any{"digest": "sha256:" + strings.Repeat("ab", 32)},
			},
		},
	}
}
