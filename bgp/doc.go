// Package bgp is Berth's BGP speaker: the node agent (berth-speaker) tells it
// declaratively which peers to talk to (SetPeers) and which routes to
// announce to each (Advertise), and reads back the sessions' state (Status).
// GoBGP v3 does the protocol work, embedded and hidden: no GoBGP type
// appears in this package's API, and GoBGP's logger is adapted to logr.
//
// # One GoBGP instance per peer
//
// GoBGP has a single global RIB per instance, and the same routes go to every
// neighbor unless export policies filter them. Berth gives each peer its own
// BgpServer instead. This is the simplest way to keep three promises:
// changing or removing one peer never touches another's session (they share
// nothing); announcing or withdrawing a route is a plain AddPath or DeletePath
// on that peer's RIB and never resets a session (no policy is rewritten, and
// policy changes in GoBGP need a soft reset to apply); and each peer may use
// its own local ASN. The cost is one RIB and a few goroutines per peer, small
// next to the routes themselves. Two consequences: the speaker never listens
// (it always dials, so a passive-only router cannot peer with it), because
// GoBGP instances cannot share one listening socket; and GoBGP v3's Serve loop never returns, so a removed
// peer leaves one idle goroutine behind (its RIB is freed).
//
// A changed peer (any field) is reset: its instance is stopped and started
// again with the new configuration, and its advertisements are re-announced
// (those the new configuration cannot carry, say IPv6 routes after IPv6 was
// dropped from Families, are dropped and logged).
//
// A peer's neighbor is configured in GoBGP only on its first Advertise, so
// that the first UPDATEs carry the whole table, followed by End-of-RIB: after
// a restart with graceful restart, a neighbor would otherwise see End-of-RIB
// for an empty table and drop the routes it kept.
//
// # Next hops
//
// One session can carry both unicast families (Peer.Families, MP-BGP). An
// Advertisement without NextHop gets the peer's NextHopIPv4 or NextHopIPv6,
// else the session's local address. The latter is only possible when the
// prefix and the session are of the same family, so an IPv6 prefix over an
// IPv4 session (or the reverse) needs a next hop from the Advertisement or
// the Peer; Advertise rejects it otherwise, rather than send an IPv4-mapped
// next hop the neighbor cannot use.
//
// Each peer's instance has its own router ID (Peer.RouterID, else
// Config.RouterID), so that a node's identity can change without a
// restart: a changed router ID resets that peer's session like any other
// change.
//
// # Interface peers
//
// A Peer with Interface ("BGP unnumbered") has the zoned IPv6 link-local
// address of the one neighbor on that interface as Address, which the
// caller finds with LinkLocalNeighbor and looks up again as it likes: the
// address is the peer's key, like any peer's, and a new one resets the
// session. GoBGP's own lookup (NeighborInterface) is not used: it runs once
// when the neighbor is added, and again, failing when the neighbor is gone,
// when it is removed. AnnounceLinkLocal sends the Router Advertisement
// from which a router configured for unnumbered peering learns the node.
//
// # Graceful restart
//
// With Peer.GracefulRestart, the OPEN carries the Graceful Restart
// capability (RFC 4724) for the peer's families, and Stop closes the TCP
// connection without a NOTIFICATION, so the neighbor keeps our routes as
// stale for RestartTime. GoBGP's own StopBgp cannot be used for that: it
// sends a Cease, after which an RFC 4724 neighbor drops the routes (and with
// RFC 8538's N bit GoBGP turns it into a Hard Reset, which does the same),
// so the N bit is never announced. When the restarted speaker calls SetPeers
// and Advertise again, the new session announces the table and End-of-RIB,
// and the neighbor drops whatever stale route was not announced again.
// Without graceful restart, Stop sends a Cease and the neighbor withdraws
// our routes at once. SetPeers always uses a Cease.
//
// # What it must not do
//
// It does not watch Kubernetes, pick routes or decide which node announces
// what: it takes inputs and applies them. It must not log TCP MD5 passwords
// (the logr adapter redacts them from everything GoBGP logs), must not panic
// or exit on GoBGP's Fatal or Panic log calls, and must not install routes
// it learns: it accepts nothing into the node's routing table, nor into its
// own RIB (every instance's import policy accepts only its own routes), and
// a neighbor that sends more than Config.MaxReceivedPrefixes of a family is
// disconnected, and tried again after a back-off (see docs/bgp.md, "Routes
// received from peers").
package bgp
