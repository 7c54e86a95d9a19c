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
//   - Members (members*.go, liveness.go, heartbeat.go) is the view of which
//     speakers are alive and whether this one may answer at all:
//     members.go holds its API, members_heartbeats.go the sending and
//     watching loops, members_memberlist.go what ties it to memberlist,
//     members_keys.go the key rotation.
//     hashicorp/memberlist on UDP/TCP port 7946 finds the speakers and
//     carries every message authenticated and encrypted with a shared key
//     (16, 24 or 32 bytes, from a Secret); the decisions come from
//     heartbeats every HeartbeatInterval, each echoing the others' newest
//     heartbeats (liveness.go). A crashed node is declared dead DeadAfter
//     (0.9 s) after its last heartbeat.
//   - Responder (responder.go, arp.go, ndp.go) answers for the addresses it
//     is given with Set, and announces gained addresses with gratuitous
//     ARP / unsolicited overriding NA at 0, 250 ms, 500 ms, 1 s and 2 s,
//     except quiet ones (being handed over), which it answers only until
//     another node announces them. A gate checked before every packet
//     keeps it silent while the node has no lease. Its sockets are raw:
//     the speaker needs CAP_NET_RAW (and runs on the host network).
//
// # Being sure it is the owner
//
// A node answers for an address only while both hold:
//
//  1. Owner(addr, eligible ∩ Members()) is this node, computed from its
//     current view, Members() being the nodes heard of within DeadAfter,
//     directly or through another node's first-hand report, whose newest
//     heartbeat said they hold their lease; and
//  2. it holds its lease (Members.Lease): a strict majority of the last
//     known membership, itself included, echoed one of its heartbeats sent
//     less than QuorumLease ago, and RegainHoldDown passed since it last
//     regained the lease; if it was given peers, it has met one.
//
// Since DeadAfter and RegainHoldDown exceed twice QuorumLease and
// majorities intersect, a node that everyone another node talks to has not
// heard of for DeadAfter no longer holds its lease: it is silent before
// that node takes its addresses over (the argument is in liveness.go; the
// timeline in docs/layer2.md). Memberlist's own failure detection is not used: it is
// asymmetric after a partition (the cut-off node declares the others dead
// 2-4 s after the majority declared it dead).
//
// The speaker recomputes both on every Members.Changes signal (which also
// fires when only time changed the answer: a silence reaching DeadAfter, a
// lease running out) and every Service change, and calls Responder.Set
// with the result; Set guarantees that once it returns nothing more is
// sent for a dropped address. The Responder's gate
// (ResponderConfig.Gate) checks the lease right before each packet, so a
// node whose sync loop is slow still falls silent on time.
//
// # Split brain
//
// Condition 1 alone is not enough. A node cut off from the others (a
// partition, a dead uplink, a firewall) sees all of them die and, by its
// own view, owns every address, while the others have already taken over
// its addresses: two nodes answer, the neighbours' caches flap between two
// MACs, and traffic is black-holed half the time. Condition 2 is the
// safeguard, and the choice made here is the strict one: a node without
// the lease stops answering altogether, for every address, including those
// it owned before the partition.
//
// The last known membership is every node seen alive since start, learned
// from another member's state exchange (known.go), or read from the known
// list kept beside the membership record (Members.Learn, known_record.go),
// that was not removed with Members.Forget. A crashed node therefore keeps
// counting until the speaker forgets it, which it should do when the Node
// is deleted from Kubernetes; a node that left with Members.Leave is dead
// to the others at once (it says goodbye) but stays known.
//
// The membership record (membership.go, MemberRecord; lease.go counts it)
// leaves such a node out sooner: a revision-numbered list of known nodes
// that do not vote, written by a quorate node to the API server with
// conditional writes (the speaker does the I/O and hands the record to
// Members.SetRecord) and carried in heartbeats of version 3, changed
// through a joint record under which a node needs a majority of both the
// old and the new voter set, and completed only JointHold after a
// majority of each echoed under the joint revision. Proved on the
// fake-clock simulator (shrink_test.go); see docs/layer2.md.
//
// The record also names the voters (voters.go; MembersConfig.Voters, on
// in the speaker by default): every node in a cluster of up to
// SmallCluster, MaxVoters in a larger one. Leases then count a majority
// of them only, every node heartbeats the voters only, and the voters report every node
// in a one-byte-per-node summary (summary.go, heartbeat version 4), sent
// as the changes since one the recipient read (summary_delta.go), so
// that a non-voter's cost no longer grows with the cluster, and a
// voter's messages stay small at any size. Proved on the
// simulator (voters_test.go); see docs/layer2.md, "Scaling".
//
// Trade-offs of this choice:
//
//   - The majority side keeps serving every address; the minority side
//     serves none, and falls silent before the majority takes over.
//   - With an even membership, exactly half is a quorum only for the node
//     that holds the tie-breaker (Tiebreak, a record with conditional
//     writes that the speaker keeps in a coordination.k8s.io Lease): a
//     two-node cluster that loses a node keeps serving while the survivor
//     reaches the API server, and of two halves at most one serves. Without
//     a store (or when the holder cannot reach it) such a half serves
//     nothing, as before; odd cluster sizes remain preferable.
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
// socket a usable link-local address; a socket that fails to open is
// retried a second later. Neighbor Advertisements are sent from the target
// address (IPV6_FREEBIND), as the kernel would if it were assigned; the
// address is still never added.
package l2
