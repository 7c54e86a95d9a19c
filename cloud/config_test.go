package cloud

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/berthlb/berth/cloud/aws"
)

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		name, in  string
		nilReader bool
		want      Config
		wantErr   string
	}{
		{name: "no file", nilReader: true, want: Config{Backend: BackendPools}},
		{name: "empty file", in: "\n", want: Config{Backend: BackendPools}},
		{name: "pools", in: "backend: pools\n", want: Config{Backend: BackendPools}},
		{name: "pools with kubeconfig", in: "backend: pools\nkubeconfig: /etc/k\n", want: Config{Backend: BackendPools, Kubeconfig: "/etc/k"}},
		{name: "aws without section", in: "backend: aws\n", wantErr: "needs an aws section"},
		{name: "aws without cluster name", in: "backend: aws\naws:\n  region: eu-west-1\n", wantErr: "clusterName is required"},
		{name: "aws bad mode", in: "backend: aws\naws:\n  clusterName: c\n  defaultMode: alb\n", wantErr: `defaultMode "alb"`},
		{name: "aws both eip sources", in: "backend: aws\naws:\n  clusterName: c\n  eip:\n    allocationIDs: [eipalloc-1]\n    publicIPv4Pool: ipv4pool-ec2-1\n", wantErr: "not both"},
		{name: "aws section with pools", in: "backend: pools\naws:\n  clusterName: c\n", wantErr: "aws section is set"},
		{name: "aws typo", in: "backend: aws\naws:\n  clusterName: c\n  defaultMod: eip\n", wantErr: "parse cloud config"},
		{name: "unknown backend", in: "backend: gce\n", wantErr: `unknown backend "gce"`},
		{name: "typo in field", in: "backnd: pools\n", wantErr: "parse cloud config"},
		{name: "aws defaults", in: "backend: aws\naws:\n  clusterName: prod\n", want: Config{Backend: BackendAWS, AWS: &aws.Config{
			ClusterName: "prod", DefaultMode: aws.ModeNLB, MaxAttempts: 10, NLB: aws.NLBConfig{Scheme: "internet-facing",
				AllowedSchemes: []string{"internal", "internet-facing"}, UDPHealthCheckPort: 10256},
		}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got Config
			var err error
			if tc.nilReader {
				got, err = ParseConfig(nil)
			} else {
				got, err = ParseConfig(strings.NewReader(tc.in))
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !cmp.Equal(got, tc.want) {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}
