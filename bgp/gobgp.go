package bgp

import (
	"fmt"
	"net/netip"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// connectRetry is how long GoBGP waits between connection attempts, and
// after a reset before the next one. GoBGP's defaults (120s and 30s) make a
// session that failed once take minutes to come back.
const connectRetry = 5 * time.Second

// apiFamily is GoBGP's name for f.
func apiFamily(f Family) *api.Family {
	if f == IPv6Unicast {
		return &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
	}
	return &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
}

// apiGlobal is the global configuration of p's GoBGP instance (defaults
// applied, so it has its router ID). It never listens: instances cannot
// share a listening socket (see doc.go).
func apiGlobal(p Peer) *api.Global {
	return &api.Global{
		Asn:        p.LocalASN,
		RouterId:   p.RouterID.String(),
		ListenPort: -1,
	}
}

// apiPeer translates p (defaults applied) into GoBGP's neighbor
// configuration. Each family gets a prefix limit of maxReceived: when the
// neighbor sends more, GoBGP closes the session with a Cease (Maximum
// Number of Prefixes Reached, RFC 4486) and keeps it down (GoBGP v3 has no
// warn-only mode and ignores a restart timer); watchPrefixLimit re-opens it.
func apiPeer(p Peer, maxReceived uint32) *api.Peer {
	ap := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: p.Address.String(),
			PeerAsn:         p.ASN,
			LocalAsn:        p.LocalASN,
			AuthPassword:    p.Password,
			Description:     p.Name,
		},
		Timers: &api.Timers{Config: &api.TimersConfig{
			ConnectRetry:           uint64(connectRetry / time.Second),
			IdleHoldTimeAfterReset: uint64(connectRetry / time.Second),
			HoldTime:               uint64(p.HoldTime / time.Second),
			KeepaliveInterval:      uint64(p.KeepaliveTime / time.Second),
		}},
		Transport: &api.Transport{RemotePort: uint32(p.Port)},
	}
	if p.SourceAddress.IsValid() {
		ap.Transport.LocalAddress = p.SourceAddress.String()
	}
	if p.Interface != "" {
		// The kernel picks the link-local source of the zoned neighbor.
		// Left empty, GoBGP would set the zoned local address itself,
		// which it then fails to parse as the next hop of our routes.
		// NeighborInterface stays unset: GoBGP would look the neighbor up
		// again on every change, and fail when it is gone.
		ap.Transport.LocalAddress = netip.IPv6Unspecified().String()
	}
	if p.EBGPMultihopTTL != 0 {
		ap.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: uint32(p.EBGPMultihopTTL)}
	}
	if p.TTLSecurity {
		ap.TtlSecurity = &api.TtlSecurity{Enabled: true, TtlMin: 255}
	}
	if p.GracefulRestart {
		// NotificationEnabled (RFC 8538) stays off: with it GoBGP turns
		// every Cease into a Hard Reset, which makes the neighbor drop our
		// routes; Stop avoids sending a NOTIFICATION instead.
		ap.GracefulRestart = &api.GracefulRestart{
			Enabled:     true,
			RestartTime: uint32(p.RestartTime / time.Second),
		}
	}
	for _, f := range p.Families {
		as := &api.AfiSafi{
			Config: &api.AfiSafiConfig{Family: apiFamily(f), Enabled: true},
			PrefixLimits: &api.PrefixLimit{
				Family:               apiFamily(f),
				MaxPrefixes:          maxReceived,
				ShutdownThresholdPct: 80, // warn at 80%
			},
		}
		if p.GracefulRestart {
			as.MpGracefulRestart = &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}}
		}
		ap.AfiSafis = append(ap.AfiSafis, as)
	}
	return ap
}

// ownRoutesOnly is the name of the import policy of every GoBGP instance.
const ownRoutesOnly = "berth-own-routes-only"

// importPolicy is the import policy of every GoBGP instance: Berth only
// announces, so no route a neighbor sends enters the RIB (where it would
// cost memory and could be selected over our own). GoBGP applies the
// global import policy to the routes we add too, so the policy accepts
// locally originated routes and rejects the rest by default. It must be
// added after every StartBgp, which forgets policies.
func importPolicy() *api.Policy {
	return &api.Policy{Name: ownRoutesOnly, Statements: []*api.Statement{{
		Name:       "accept-local",
		Conditions: &api.Conditions{RouteType: api.Conditions_ROUTE_TYPE_LOCAL},
		Actions:    &api.Actions{RouteAction: api.RouteAction_ACCEPT},
	}}}
}

// importAssignment applies importPolicy to the instance's RIB (it has one
// neighbor), rejecting what it does not accept.
func importAssignment() *api.PolicyAssignment {
	return &api.PolicyAssignment{
		Name:          "global",
		Direction:     api.PolicyDirection_IMPORT,
		Policies:      []*api.Policy{{Name: ownRoutesOnly}},
		DefaultAction: api.RouteAction_REJECT,
	}
}

// apiPath translates a (validated) into a GoBGP path to p, with its next
// hop or p's for its family. An unset next hop is sent to GoBGP as the
// unspecified address, which it replaces with the session's local address.
func apiPath(p Peer, a Advertisement) (*api.Path, error) {
	v4 := a.Prefix.Addr().Is4()
	nh := p.nextHop(a)
	if !nh.IsValid() {
		nh = netip.IPv6Unspecified()
		if v4 {
			nh = netip.IPv4Unspecified()
		}
	}
	nlri, err := anypb.New(&api.IPAddressPrefix{
		Prefix:    a.Prefix.Addr().String(),
		PrefixLen: uint32(a.Prefix.Bits()),
	})
	if err != nil {
		return nil, fmt.Errorf("encode prefix %v: %w", a.Prefix, err)
	}
	f := apiFamily(familyOf(a.Prefix.Addr()))
	attrs := []proto.Message{&api.OriginAttribute{Origin: 0}} // IGP
	if v4 {
		attrs = append(attrs, &api.NextHopAttribute{NextHop: nh.String()})
	} else {
		attrs = append(attrs, &api.MpReachNLRIAttribute{Family: f, NextHops: []string{nh.String()}, Nlris: []*anypb.Any{nlri}})
	}
	if len(a.Communities) > 0 {
		attrs = append(attrs, &api.CommunitiesAttribute{Communities: a.Communities})
	}
	if len(a.LargeCommunities) > 0 {
		lc := make([]*api.LargeCommunity, 0, len(a.LargeCommunities))
		for _, c := range a.LargeCommunities {
			lc = append(lc, &api.LargeCommunity{GlobalAdmin: c.Global, LocalData1: c.Local1, LocalData2: c.Local2})
		}
		attrs = append(attrs, &api.LargeCommunitiesAttribute{Communities: lc})
	}
	if a.LocalPref != nil {
		attrs = append(attrs, &api.LocalPrefAttribute{LocalPref: *a.LocalPref})
	}
	pattrs := make([]*anypb.Any, 0, len(attrs))
	for _, m := range attrs {
		x, err := anypb.New(m)
		if err != nil {
			return nil, fmt.Errorf("encode attributes of %v: %w", a.Prefix, err)
		}
		pattrs = append(pattrs, x)
	}
	return &api.Path{Family: f, Nlri: nlri, Pattrs: pattrs}, nil
}

// sessionState translates GoBGP's session state.
func sessionState(s api.PeerState_SessionState) SessionState {
	switch s {
	case api.PeerState_CONNECT:
		return StateConnect
	case api.PeerState_ACTIVE:
		return StateActive
	case api.PeerState_OPENSENT:
		return StateOpenSent
	case api.PeerState_OPENCONFIRM:
		return StateOpenConfirm
	case api.PeerState_ESTABLISHED:
		return StateEstablished
	}
	return StateIdle
}
