package aws

import (
	"maps"
	"slices"
	"testing"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestChooseSubnets(t *testing.T) {
	pub := func(id, zone string, mut ...func(*subnetInfo)) subnetInfo {
		s := subnetInfo{ID: id, Zone: zone, PlainZone: true, Public: true}
		for _, m := range mut {
			m(&s)
		}
		return s
	}
	role := func(s *subnetInfo) { s.Role = true }
	private := func(s *subnetInfo) { s.Public = false }
	tagged := func(s *subnetInfo) { s.ClusterTag = "shared" }
	other := func(s *subnetInfo) { s.OtherCluster = true }
	local := func(s *subnetInfo) { s.PlainZone = false }
	v6 := func(s *subnetInfo) { s.IPv6 = true }
	for _, tc := range []struct {
		name      string
		cands     []subnetInfo
		internal  bool
		dualStack bool
		want      []string
		skipped   []string
	}{
		{name: "one per zone, lowest ID", cands: []subnetInfo{pub("subnet-b", "a"), pub("subnet-a", "a"), pub("subnet-c", "b")},
			want: []string{"subnet-a", "subnet-c"}},
		{name: "the role tag wins over a lower ID", cands: []subnetInfo{pub("subnet-a", "a"), pub("subnet-b", "a", role)},
			want: []string{"subnet-b"}},
		{name: "then the cluster tag (which is optional)", cands: []subnetInfo{pub("subnet-a", "a"), pub("subnet-b", "a", tagged)},
			want: []string{"subnet-b"}},
		{name: "internet-facing skips private subnets", cands: []subnetInfo{pub("subnet-a", "a", private, role), pub("subnet-b", "b")},
			want: []string{"subnet-b"}, skipped: []string{"subnet-a"}},
		{name: "internal takes only internal-elb subnets, public or not", internal: true,
			cands: []subnetInfo{pub("subnet-a", "a"), pub("subnet-b", "a", private, role), pub("subnet-c", "b", role)},
			want:  []string{"subnet-b", "subnet-c"}, skipped: []string{"subnet-a"}},
		{name: "other clusters' subnets and Local Zones are never used",
			cands: []subnetInfo{pub("subnet-a", "a", other, role), pub("subnet-b", "lz", local, role), pub("subnet-c", "c")},
			want:  []string{"subnet-c"}, skipped: []string{"subnet-a", "subnet-b"}},
		{name: "dual-stack needs IPv6", dualStack: true, cands: []subnetInfo{pub("subnet-a", "a", role), pub("subnet-b", "a", v6)},
			want: []string{"subnet-b"}, skipped: []string{"subnet-a"}},
		{name: "nothing fits", cands: []subnetInfo{pub("subnet-a", "a", private)}, skipped: []string{"subnet-a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, skipped := chooseSubnets(tc.cands, tc.internal, tc.dualStack)
			if !cmp.Equal(got, tc.want) {
				t.Errorf("chosen %v, want %v", got, tc.want)
			}
			if ids := slices.Sorted(maps.Keys(skipped)); !cmp.Equal(ids, tc.skipped, cmpopts.EquateEmpty()) {
				t.Errorf("skipped %v, want %v", skipped, tc.skipped)
			}
		})
	}
}

func TestPublicSubnets(t *testing.T) {
	route := func(dst, gw string) ec2types.Route {
		r := ec2types.Route{GatewayId: sdk.String(gw)}
		if dst == "::/0" {
			r.DestinationIpv6CidrBlock = sdk.String(dst)
		} else {
			r.DestinationCidrBlock = sdk.String(dst)
		}
		return r
	}
	assoc := func(subnet string) ec2types.RouteTableAssociation {
		if subnet == "" {
			return ec2types.RouteTableAssociation{Main: sdk.Bool(true)}
		}
		return ec2types.RouteTableAssociation{SubnetId: sdk.String(subnet), Main: sdk.Bool(false)}
	}
	tables := []ec2types.RouteTable{
		{Routes: []ec2types.Route{route("10.0.0.0/16", "local")}, Associations: []ec2types.RouteTableAssociation{assoc("")}},
		{Routes: []ec2types.Route{route("0.0.0.0/0", "igw-1")}, Associations: []ec2types.RouteTableAssociation{assoc("subnet-a")}},
		{Routes: []ec2types.Route{route("::/0", "igw-1")}, Associations: []ec2types.RouteTableAssociation{assoc("subnet-6")}},
		{Routes: []ec2types.Route{route("0.0.0.0/0", "nat-1")}, Associations: []ec2types.RouteTableAssociation{assoc("subnet-n")}},
		{Routes: []ec2types.Route{route("198.51.100.0/24", "igw-1")}, Associations: []ec2types.RouteTableAssociation{assoc("subnet-p")}},
	}
	got := publicSubnets(tables, []string{"subnet-a", "subnet-6", "subnet-n", "subnet-p", "subnet-main"})
	want := map[string]bool{"subnet-a": true, "subnet-6": true, "subnet-n": false, "subnet-p": false, "subnet-main": false}
	if !cmp.Equal(got, want) {
		t.Errorf("publicSubnets = %v, want %v", got, want)
	}
	// A main table with a default route to an internet gateway makes the
	// subnets without their own table public.
	tables[0].Routes = append(tables[0].Routes, route("0.0.0.0/0", "igw-1"))
	if got := publicSubnets(tables, []string{"subnet-main", "subnet-n"}); !got["subnet-main"] || got["subnet-n"] {
		t.Errorf("with a public main table: %v", got)
	}
}
