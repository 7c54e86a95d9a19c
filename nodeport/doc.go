// Package nodeport programs a node's nftables so that traffic for a
// Service's load-balancer address and port is delivered to the Service's
// NodePort on that node, as if the client had connected to the NodePort
// itself, whatever handles NodePorts there (kube-proxy in iptables or
// nftables mode, IPVS, a local socket), with the client's source address
// unchanged (no masquerade or SNAT, so externalTrafficPolicy: Local keeps
// working).
//
// The speaker computes the Rules a node needs and calls Forwarder.Sync
// declaratively; this package validates them and turns them into one
// nftables table. It must not touch any other table, decide which rules a
// node needs, or talk to the Kubernetes API.
//
// # How it works
//
// Netfilter performs NAT once per connection and hook: the first NAT chain
// that binds a new connection wins and later ones are not consulted. So
// Berth must not NAT the connection to the NodePort before the proxy has
// had its turn, or the proxy's NodePort DNAT
// (kube-proxy, NAT chain at dstnat) never happens. Instead it rewrites the
// first packet of each connection in a filter chain between conntrack and
// dstnat:
//
//  1. Conntrack (priority -200) records the connection with its real
//     destination, load-balancer address:port.
//  2. Chain rewrite-prerouting (filter, dstnat-5) rewrites the packet's
//     destination, statelessly, to node IP:NodePort.
//  3. The proxy's NAT chain at dstnat sees ordinary NodePort traffic and
//     DNATs it to a pod. Its binding translates from the connection's
//     recorded destination, so the reverse translation of every reply, done
//     by conntrack, gives the replies the source load-balancer address:port.
//  4. If nobody bound the connection at dstnat (the NodePort is a local
//     socket, or IPVS handles it at local-in), chain nat-prerouting (nat,
//     dstnat+10) binds it itself: DNAT to node IP:NodePort, which changes
//     nothing in the packet but makes conntrack translate the replies back.
//
// The node's own connections take the same path in rewrite-output (type
// route, so the kernel routes the packet again) and nat-output.
//
// Everything stateful is conntrack's: replies, ICMP errors about the
// connection and later packets are translated by the NAT binding, so no
// packet mark, connection mark or label is used, and a connection outlives
// the removal of its rule. Only packets of state new are rewritten.
//
// # Table layout
//
// The Forwarder owns one table, inet berth by default (NFTOptions.Table):
//
//   - maps port4 and port6, from address . protocol . port to NodePort;
//   - maps node4 and node6, from address to node IP (so every rule for one
//     address must have the same node IP; validation enforces it). nft
//     cannot write two fields from one lookup, so the rewrite sets the port
//     from the port map, then the address from the node map;
//   - chains rewrite-prerouting and rewrite-output, one rule per family and
//     protocol (TCP, UDP, SCTP), each
//     "ct state new tcp dport set ip daddr . meta l4proto . tcp dport map
//     @port4 ip daddr set ip daddr map @node4";
//   - chains nat-prerouting and nat-output, one rule per family, each
//     "dnat ip to ct original ip daddr map @node4 : ct original ip daddr .
//     meta l4proto . ct original proto-dst map @port4";
//   - sets restrict4 and restrict6, the keys (address . protocol . port)
//     of restricted rules, and allow4 and allow6, concatenated interval
//     sets of each key's allowed client ranges; rules ranges4 and ranges6,
//     first in rewrite-prerouting and in rewrite-output, drop a new
//     connection to a restricted key from any other client, before the
//     rewrite (Rule.Restricted; config.SourceRanges fails closed);
//   - chain member-input (input hook) with sets member-ports and members4,
//     members6 (Forwarder.Members): only node addresses reach layer 2's
//     membership port;
//   - sets drain4 and drain6 (Forwarder.Drain), addresses whose mid-stream
//     TCP packets of connections this node does not know are exempt from
//     the rewrite and the DNAT (rules first in rewrite-prerouting and
//     nat-prerouting) and whose ICMP redirects the node does not send
//     (rules first in rewrite-output); see docs/forwarding.md#draining.
//
// Sync never lets one bad rule hold up the others: it leaves out invalid
// rules, and when the kernel refuses the table it writes the rules address
// by address, bisecting, and leaves out those refused (RefusedError,
// NotProgrammed); a later Sync tries them again.
//
// The number of rules is fixed; Services only add map elements, so lookup
// cost does not grow with them. Packets without a matching element pass
// untouched. The payload statements update the IP, TCP and UDP checksums;
// for SCTP they ask the kernel to recompute the CRC32c, and the NAT
// binding recomputes it again in any case.
//
// # Limits
//
//   - The proxy sees NodePort traffic, not load-balancer traffic: anything it
//     does only for load-balancer addresses in its NAT chains does not
//     apply. For loadBalancerSourceRanges (which kube-proxy's iptables mode
//     checks there) Berth's own check takes its place.
//   - Connections already tracked before a rule existed (say a UDP flow
//     that got no answer) are not rewritten until conntrack forgets them.
//   - Untracked packets (notrack) are not forwarded.
//   - SCTP is tested with hand-made INIT and INIT ACK packets on raw sockets
//     (the test kernel has conntrack's SCTP support but no SCTP sockets),
//     not with a real SCTP stack.
//
// # Transactions: netlink, no nft binary
//
// Everything goes to the kernel as nfnetlink batches, which it applies
// atomically, over one netlink socket (see nlConn); the nft binary is never
// run. The first Sync, and the first after drift, deletes and recreates the
// whole table in one batch. Later Syncs send only the map elements that
// changed, and nothing when nothing changed; a change of more than 1,000
// element operations (thousands of Services at once) is written as a whole
// table instead.
//
// The table's objects are encoded as nft 1.0.6 encodes the same commands
// (nfnl.go, table.go): the rules' expressions register by register, the
// sets' and table's user data (comments, and how nft prints keys), so that
// nft list table inet berth shows the table exactly as if nft had written
// it. Each rule also carries its text in nft's syntax, which the golden
// files show; TestMatchesNFT loads that text with nft in a second network
// namespace and checks that both kernels then hold the same table, rule
// bytecode included. Writing 10,000 rules over netlink takes about 0.1 s,
// several times faster than nft (no process, no parsing), and a change of
// one Service is one or two map elements, a few fixed-size byte strings
// (see element.encode), tens of microseconds in the kernel.
//
// An element batch reads nothing first and still reaches the desired state
// when an element to delete is already gone or one to add is already
// there: each element to delete is first added with the value last
// written, then deleted, and adding an element with the value it already
// holds is not an error. The batch keeps one netlink socket open across
// changes: closing a netfilter netlink socket makes the kernel wait for
// the deferred release of whatever was deleted (an RCU grace period, 7 to
// 15 ms), which a socket per change would add to every removal.
//
// # Drift
//
// Someone else may change the table (nft flush ruleset, a hand edit, a
// firewall reload). Drift is detected two ways:
//
//   - An element batch fails as a whole when the table or a map is gone,
//     or an element it adds or deletes holds a value Berth did not write;
//     Sync logs it and rewrites the table at once. So does any other error
//     of the batch. This costs nothing extra.
//   - Check reads, over netlink, the table's chains (type, hook and
//     priority), the comments of their rules, and every element of the four
//     maps and two sets, and compares them with what was last written:
//     tens of milliseconds at 10,000 rules. On drift it logs the reason
//     (through the logr logger in the context) and the next Sync rewrites
//     the table. The speaker should call it on a timer (e.g. every 10 s),
//     not on every change; a Sync that arrives meanwhile waits for it.
//
// Check tells rules apart by their comments only, and does not notice extra
// chains or sets someone adds to the table; every full rewrite removes those
// anyway.
//
// # Requirements
//
// NewNFT talks nf_tables netlink itself (through github.com/mdlayher/netlink),
// so the speaker needs no nft binary and can be one static binary. The
// kernel must support what nft 1.0.6 would use for the same table (NAT in
// an inet table, conntrack keys of the original tuple, concatenated map
// keys, payload writes with checksum fixes); it is tested on Linux 6.18.
// It needs CAP_NET_ADMIN. NFTOptions.Netns makes it
// act in another network namespace, which the tests use; the tests also
// use the nft binary (nftables 1.0.6 of Debian bookworm) as an independent
// reader of what was written. The table outlives the process: nothing in
// it belongs to a netlink socket, so a crashed speaker leaves its rules
// forwarding, and only Cleanup removes them. See docs/forwarding.md for the
// packet walk and the designs that were rejected.
package nodeport
