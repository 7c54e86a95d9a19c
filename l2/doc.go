// Package l2 holds the building blocks of Berth's layer-2 announcements:
// on a flat network without BGP, exactly one node, the owner, answers ARP
// (IPv4) and Neighbor Solicitations (IPv6) for each Service address, with
// its own MAC, so that traffic for the address reaches it; when the owner
// fails another node takes over within about a second.
//
// The speaker combines three independent parts:
//
//   - Owner (owner.go) is pure: rendezvous hashing over the names of the
//     live, eligible nodes. Every node computes it alone; with the same view
//     of the membership all agree, and a node joining or leaving moves only
//     the addresses it gains or loses.
//   - Members (members.go) is the view of which speakers are alive:
//     hashicorp/memberlist on UDP/TCP port 7946, every message authenticated
//     and encrypted with a shared key (16, 24 or 32 bytes, from a Secret),
//     tuned to declare a crashed node dead in about 0.9-1.2 s (measured:
//     p50 1.0 s on loopback, 0.88 s across network namespaces, 3 nodes).
//   - Responder (responder.go, arp.go, ndp.go) answers for the addresses it
//     is given with SetOwned, and announces gained addresses with
//     gratuitous ARP / unsolicited overriding NA at 0, 250 ms, 500 ms, 1 s
//     and 2 s. Its sockets are raw: the speaker needs CAP_NET_RAW (and runs
//     on the host network).
//
// # Being sure it is the owner
//
// A node answers for an address only while both hold:
//
//  1. Owner(addr, eligible ∩ Members()) is this node, computed from its
//     current view; and
//  2. Members.Quorate(): it has heard a heartbeat within HeardWithin from
//     a strict majority of the last known membership (itself included),
//     and, if it was given peers, it has met at least one of them since it
//     started. Heartbeats (every HeartbeatInterval, over memberlist's
//     authenticated transport) rather than memberlist's member list,
//     because failure detection is asymmetric after a partition: the cut
//     off node gets no confirmations of its suspicions and declares the
//     others dead 2-4 s after the majority declared it dead (measured in
//     the speaker's e2e tests); it must fall silent first.
//
// The speaker recomputes both on every Members.Changes signal, every
// change of Quorate (polled: losing heartbeats is not a membership event)
// and every Service change, and calls Responder.SetOwned with the result; SetOwned
// guarantees that once it returns nothing more is sent for a dropped
// address. On a move the old owner's view changes at about the same time as
// the new owner's; the speaker should apply losses before gains.
//
// # Split brain
//
// Condition 1 alone is not enough. A node cut off from the others (a
// partition, a dead uplink, a firewall) sees all of them die and, by its
// own view, owns every address, while the others have already taken over
// its addresses: two nodes answer, the neighbours' caches flap between two
// MACs, and traffic is black-holed half the time. Condition 2 is the
// safeguard, and the choice made here is the strict one: a node without
// quorum stops answering altogether, for every address, including those it
// owned before the partition.
//
// The last known membership is every node seen alive since start that was
// not removed with Members.Forget. A crashed node therefore keeps counting
// until the speaker forgets it, which it should do when the Node is deleted
// from Kubernetes (or is no longer eligible); a graceful Leave is not
// distinguishable from a crash by memberlist's event API, so it is treated
// the same.
//
// Trade-offs of this choice:
//
//   - The majority side keeps serving every address; the minority side
//     serves none, so no address is ever answered twice for longer than the
//     failure detection skew (both sides declare each other dead after the
//     same suspicion timeout, so the overlap is at most a few probe
//     intervals; a speaker may add a short hold-down before taking over to
//     make the minority stop first).
//   - With two nodes, losing either leaves 1 of 2: no quorum, and all L2
//     addresses go dark until the dead node is forgotten. Two-node clusters
//     should use BGP, or accept this, or forget the failed node from the
//     Kubernetes Node lifecycle. Likewise an even split of 2+2 serves
//     nothing; odd cluster sizes are preferable.
//   - A node that boots while partitioned never claims anything, because it
//     has peers but met none.
//   - The alternative (keep answering for what one owned before the
//     partition, claim nothing new) keeps more addresses reachable but
//     still answers twice for the addresses the majority moved away, which
//     is what this package must prevent.
//
// # What this package must not do
//
// It never adds addresses to interfaces, never touches routes, neighbour
// tables or sysctls, and never talks to Kubernetes: the speaker reads
// Services and Nodes and passes plain names and addresses in. It answers
// only on the interfaces its filter selects (default: every up,
// non-loopback interface with a MAC), and only for addresses it was given.
// The ARP socket of an interface needs an IPv4 address on it, and the NDP
// socket a link-local address; interfaces without them are retried at each
// rescan.
package l2
