package bgp

import (
	"net/netip"
	"time"
)

// Config configures the node's BGP speaker.
type Config struct {
	// RouterID is the BGP identifier of the peers that have none of their
	// own (Peer.RouterID). If set, it must be a non-zero IPv4 address.
	// The speaker never listens: Berth always dials its peers (see
	// doc.go).
	RouterID netip.Addr
	// MaxReceivedPrefixes is how many prefixes of one family a neighbor
	// may send before its session is closed; zero means
	// DefaultMaxReceivedPrefixes. See docs/bgp.md.
	MaxReceivedPrefixes uint32
	// PrefixLimitRetry is how long a session closed for the prefix limit
	// stays down before it is tried again, doubling (up to 16 times) while
	// the neighbor keeps exceeding it; zero means DefaultPrefixLimitRetry.
	PrefixLimitRetry time.Duration
}

// DefaultMaxReceivedPrefixes is the default Config.MaxReceivedPrefixes.
// Berth accepts no route, but GoBGP keeps every received route (about
// 400 bytes each) in the neighbor's Adj-RIB-In before any policy applies,
// and the limit is what bounds that table: 20,000 routes cost about 8 MiB.
// It is not smaller because routers commonly send the speakers' own routes
// back (FRR does, to the very peer that announced them, and the speaker
// drops them only for the AS loop): every Service address of the cluster
// that the router learned counts against it.
const DefaultMaxReceivedPrefixes = 20000

// Family is an address family a session carries.
type Family string

// The address families Berth announces.
const (
	IPv4Unicast Family = "ipv4-unicast"
	IPv6Unicast Family = "ipv6-unicast"
)

// Peer is one BGP neighbor, as a BerthBGPPeer object describes it.
type Peer struct {
	// Name identifies the peer (the BerthBGPPeer object's name); Advertise and
	// Status refer to peers by it.
	Name string
	// Address is the neighbor's IPv4 or IPv6 address. For an Interface
	// peer it is the neighbor's IPv6 link-local address on that interface,
	// zoned with its name (fe80::1%eth1; see LinkLocalNeighbor): like any
	// address, it identifies the neighbor, and a new one resets the
	// session.
	Address netip.Addr
	// Interface, if set, binds the session to that interface (an
	// "unnumbered" peer): the session is IPv6, from the node's link-local
	// address, and its IPv6 routes' next hop is that address unless set.
	// It excludes SourceAddress and EBGPMultihopTTL.
	Interface string
	// Port is the neighbor's TCP port; zero means 179.
	Port uint16
	// ASN is the neighbor's AS number; LocalASN is ours. Neither may be 0.
	ASN, LocalASN uint32
	// SourceAddress, if valid, is the local address the session is dialled
	// from. It must be of Address's family.
	SourceAddress netip.Addr
	// RouterID, if valid, is the BGP identifier towards this peer (a
	// non-zero IPv4 address); else Config.RouterID is used.
	RouterID netip.Addr
	// Families are the address families the session negotiates (MP-BGP,
	// RFC 4760): both unicast families over one session of either family.
	// Empty means the family of Address only.
	Families []Family
	// NextHopIPv4 and NextHopIPv6, if valid, are the next hops of the
	// routes of their family that carry none of their own. Unset, a route
	// gets the session's local address, which is only possible for the
	// session's own family: a session that carries the other family needs
	// that family's next hop (say, the node's IPv6 address for IPv6 routes
	// over an IPv4 session).
	NextHopIPv4, NextHopIPv6 netip.Addr
	// HoldTime and KeepaliveTime default to 90s and 30s (zero means the
	// default). HoldTime must be at least 3s: GoBGP cannot run a session
	// without keepalives. KeepaliveTime must not exceed HoldTime.
	HoldTime, KeepaliveTime time.Duration
	// EBGPMultihopTTL, if not zero, allows an eBGP neighbor that many hops
	// away.
	EBGPMultihopTTL uint8
	// TTLSecurity turns on GTSM (RFC 5082): packets must arrive with TTL
	// 255, so the neighbor must be directly connected. It excludes
	// EBGPMultihopTTL.
	TTLSecurity bool
	// Password is the TCP MD5 (RFC 2385) key. It is never logged.
	Password string
	// GracefulRestart announces the Graceful Restart capability (RFC 4724)
	// with RestartTime (default 120s, at most 4095s), so that the neighbor
	// keeps our routes while the speaker restarts; see Server.Stop.
	GracefulRestart bool
	// RestartTime is the restart time announced with GracefulRestart.
	RestartTime time.Duration
	// MaxReceivedPrefixes is this neighbor's prefix limit per family (see
	// Config.MaxReceivedPrefixes, which zero means), at most 1,000,000.
	MaxReceivedPrefixes uint32
}

// LargeCommunity is a BGP large community (RFC 8092), Global:Local1:Local2.
type LargeCommunity struct {
	// Global is the global administrator, usually an AS number.
	Global uint32
	// Local1 and Local2 are operator-defined.
	Local1, Local2 uint32
}

// Advertisement is one route announced to a peer.
type Advertisement struct {
	// Prefix is the announced prefix: a /32 or /128 per Service address,
	// or an aggregate. It must be masked (no host bits set).
	Prefix netip.Prefix
	// NextHop, if valid, is the announced next hop; it must be of Prefix's
	// family. If it is not set, the next hop is the peer's NextHopIPv4 or
	// NextHopIPv6, else the session's local address, which needs the
	// session to be of Prefix's family: an IPv6 prefix over an IPv4
	// session (or the reverse) needs a next hop from one or the other.
	NextHop netip.Addr
	// Communities are standard communities (RFC 1997), ASN<<16|value; see
	// ParseCommunity.
	Communities []uint32
	// LargeCommunities are large communities (RFC 8092); see
	// ParseLargeCommunity.
	LargeCommunities []LargeCommunity
	// LocalPref, if not nil, is sent as LOCAL_PREF. Only iBGP carries it:
	// it is dropped on eBGP sessions, as RFC 4271 requires.
	LocalPref *uint32
}

// SessionState is the state of a peer's BGP finite state machine.
type SessionState string

// The BGP FSM states (RFC 4271 §8).
const (
	StateIdle        SessionState = "Idle"
	StateConnect     SessionState = "Connect"
	StateActive      SessionState = "Active"
	StateOpenSent    SessionState = "OpenSent"
	StateOpenConfirm SessionState = "OpenConfirm"
	StateEstablished SessionState = "Established"
)

// PeerStatus is what Status reports for one peer.
type PeerStatus struct {
	// Name and Address identify the peer.
	Name    string
	Address netip.Addr
	// State is the session state. A peer that has not been given its
	// first Advertise yet is Idle.
	State SessionState
	// Uptime is how long the session has been Established; zero if not.
	Uptime time.Duration
	// Flaps counts how often the session has gone down from Established
	// since the peer was last (re)configured.
	Flaps uint32
	// PrefixesSent is the number of prefixes currently advertised.
	PrefixesSent uint64
	// PrefixesReceived is the number of prefixes the neighbor sent.
	PrefixesReceived uint64
	// UpdatesSent is the number of UPDATE messages sent.
	UpdatesSent uint64
	// LastError is the most recent problem seen on the session (a
	// NOTIFICATION sent or received, why the session went down, a failed
	// connection), or empty.
	LastError string
}
