package awsdouble

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// RouteTable is a VPC route table. Every VPC a subnet is added to gets a
// main table with the local route only, as AWS makes it; AddRouteTable adds
// others. A subnet without an explicit association uses its VPC's main
// table.
type RouteTable struct {
	ID      string
	VPCID   string
	Main    bool
	Subnets []string          // explicitly associated subnets
	Routes  map[string]string // destination CIDR -> target ("local", "igw-…", "nat-…")
}

// AddRouteTable adds a route table to the VPC with a default route
// (0.0.0.0/0 and ::/0) to gateway ("igw-…" makes the subnets public,
// "nat-…" or "" keeps them private) and associates the subnets with it,
// taking them from any table they were associated with. It returns the
// table's ID and panics on an unknown subnet or one of another VPC.
func (s *Server) AddRouteTable(vpcID, gateway string, subnets ...string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mainTable(vpcID)
	rt := &RouteTable{ID: s.ec2ID("rtb"), VPCID: vpcID, Routes: map[string]string{"local": "local"}}
	if gateway != "" {
		rt.Routes["0.0.0.0/0"], rt.Routes["::/0"] = gateway, gateway
	}
	for _, id := range subnets {
		if sn := s.subnets[id]; sn == nil || sn.VPCID != vpcID {
			panic(fmt.Sprintf("awsdouble: AddRouteTable: subnet %q is not in %s", id, vpcID))
		}
		for _, other := range s.routeTables {
			other.Subnets = slices.DeleteFunc(other.Subnets, func(x string) bool { return x == id })
		}
		rt.Subnets = append(rt.Subnets, id)
	}
	s.routeTables[rt.ID] = rt
	return rt.ID
}

// SetZoneType sets an availability zone's type: "availability-zone" (the
// default for every zone a subnet names), "local-zone" or "wavelength-zone".
func (s *Server) SetZoneType(zone, zoneType string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.zoneTypes[zone] = zoneType
}

// mainTable returns the VPC's main route table, made on first use; s.mu is
// held.
func (s *Server) mainTable(vpcID string) *RouteTable {
	for _, rt := range s.routeTables {
		if rt.VPCID == vpcID && rt.Main {
			return rt
		}
	}
	rt := &RouteTable{ID: s.ec2ID("rtb"), VPCID: vpcID, Main: true, Routes: map[string]string{"local": "local"}}
	s.routeTables[rt.ID] = rt
	return rt
}

func (s *Server) describeRouteTables(p params) ([]*node, error) {
	fs, err := p.filters("vpc-id", "association.subnet-id", "association.main", "route-table-id")
	if err != nil {
		return nil, err
	}
	tables, err := pick(s.routeTables, p.list("RouteTableId"), "InvalidRouteTableID.NotFound", "route table ID")
	if err != nil {
		return nil, err
	}
	set := el("routeTableSet")
	for _, rt := range tables {
		main := "false"
		if rt.Main {
			main = "true"
		}
		if !matches(fs, nil, map[string][]string{"vpc-id": {rt.VPCID}, "association.subnet-id": rt.Subnets,
			"association.main": {main}, "route-table-id": {rt.ID}}) {
			continue
		}
		routes := el("routeSet")
		for _, dst := range slices.Sorted(maps.Keys(rt.Routes)) {
			target := rt.Routes[dst]
			if dst == "local" {
				continue
			}
			r := el("item", tx("state", "active"))
			if strings.Contains(dst, ":") {
				r.kids = append(r.kids, tx("destinationIpv6CidrBlock", dst))
			} else {
				r.kids = append(r.kids, tx("destinationCidrBlock", dst))
			}
			if strings.HasPrefix(target, "nat-") {
				r.kids = append(r.kids, tx("natGatewayId", target))
			} else {
				r.kids = append(r.kids, tx("gatewayId", target))
			}
			routes.kids = append(routes.kids, r)
		}
		routes.kids = append(routes.kids, el("item", tx("destinationCidrBlock", "198.18.0.0/16"), tx("gatewayId", "local"), tx("state", "active")))
		assocs := el("associationSet")
		if rt.Main {
			assocs.kids = append(assocs.kids, el("item", tx("routeTableAssociationId", "rtbassoc-"+rt.ID[4:]),
				tx("routeTableId", rt.ID), tx("main", "true")))
		}
		for _, sn := range rt.Subnets {
			assocs.kids = append(assocs.kids, el("item", tx("routeTableAssociationId", "rtbassoc-"+sn),
				tx("routeTableId", rt.ID), tx("subnetId", sn), tx("main", "false")))
		}
		set.kids = append(set.kids, el("item", tx("routeTableId", rt.ID), tx("vpcId", rt.VPCID),
			tx("ownerId", AccountID), routes, assocs))
	}
	return []*node{set}, nil
}

func (s *Server) describeAvailabilityZones(p params) ([]*node, error) {
	fs, err := p.filters("zone-name", "zone-type", "region-name")
	if err != nil {
		return nil, err
	}
	zones := map[string]bool{}
	for _, sn := range s.subnets {
		zones[sn.AvailabilityZone] = true
	}
	for z := range s.zoneTypes {
		zones[z] = true
	}
	names := p.list("ZoneName")
	set := el("availabilityZoneInfo")
	for _, z := range slices.Sorted(maps.Keys(zones)) {
		if len(names) > 0 && !slices.Contains(names, z) {
			continue
		}
		typ := s.zoneTypes[z]
		if typ == "" {
			typ = "availability-zone"
		}
		// AWS lists Local and Wavelength Zones once the account opted in
		// (or with AllAvailabilityZones); the double has opted in to all.
		if !matches(fs, nil, map[string][]string{"zone-name": {z}, "zone-type": {typ}, "region-name": {s.region}}) {
			continue
		}
		set.kids = append(set.kids, el("item", tx("zoneName", z), tx("zoneId", "euw1-az"+z[len(z)-1:]),
			tx("zoneType", typ), tx("zoneState", "available"), tx("regionName", s.region),
			tx("optInStatus", "opt-in-not-required")))
	}
	return []*node{set}, nil
}
