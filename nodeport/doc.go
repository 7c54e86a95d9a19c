// Package nodeport programs a node's nftables so that traffic for a
// Service's load-balancer address and port is delivered to the Service's
// NodePort on that node, with the client's source address unchanged (no
// masquerade or SNAT, so externalTrafficPolicy: Local keeps working).
//
// The speaker computes the Rules a node needs and calls Forwarder.Sync
// declaratively; this package validates them and turns them into one
// nftables table. It must not touch any other table, decide which rules a
// node needs, or talk to the Kubernetes API.
//
// # Table layout
//
// The Forwarder owns one table, inet berth by default (NFTOptions.Table):
//
//   - maps svc4 and svc6, one per family, from address . protocol . port to
//     node address . NodePort;
//   - base chains prerouting (hook prerouting) and output (hook output, for
//     connections the node itself opens), both type nat at priority dstnat+10
//     (-90), each holding two rules:
//     dnat ip to ip daddr . meta l4proto . th dport map @svc4 and its ip6
//     twin. Packets without a matching element pass untouched.
//
// The number of rules is fixed; Services only add map elements, so lookup
// cost does not grow with them. The chains run just after dstnat so a proxy
// that handles load-balancer addresses itself (kube-proxy at dstnat) keeps
// doing so; note that netfilter performs NAT once per connection and hook,
// so a DNAT done here is not followed by the proxy's own NodePort DNAT in
// the same hook: the NodePort must be served by a local socket or at
// local-in (IPVS, eBPF socket load balancing).
//
// # Transactions
//
// The first Sync, and the first after drift, deletes and recreates the
// whole table inside one nft transaction, which the kernel applies
// atomically. Later Syncs send only "add element" and "delete element" for
// what changed, in one transaction, and nothing when nothing changed.
//
// # Drift
//
// Someone else may change the table (nft flush ruleset, a hand edit, a
// firewall reload). Drift is detected two ways:
//
//   - An incremental transaction fails as a whole when the table or a map
//     is gone or an element it deletes is missing; Sync logs it and rewrites
//     the table at once. This costs nothing extra.
//   - Check lists both chains (by rule comment) and both maps and compares
//     them with what was last written: four nft list commands and a parse of
//     every element, about 0.5 s of CPU at 10,000 rules on a busy 2-core
//     machine. On drift it logs the reason (through the logr logger in the
//     context) and the next Sync rewrites the table. The speaker should call
//     it on a timer (e.g. every 10 s), not on every change.
//
// Check does not notice changes to a base chain's hook or priority, nor
// extra chains or sets someone adds to the table; every full rewrite removes
// those anyway.
//
// # Requirements
//
// NewNFT runs the nft binary (nftables 1.0.1 or later; tested with 1.0.6 of
// Debian bookworm) through sigs.k8s.io/knftables, so the speaker image must
// ship nftables. It needs CAP_NET_ADMIN. NFTOptions.Netns makes it act in
// another network namespace, which the tests use.
package nodeport
