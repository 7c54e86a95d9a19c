// Package allocator decides which external IP addresses LoadBalancer
// Services get from IP pools.
//
// It is pure IPAM: callers hand it a snapshot of pools (SetPools) and one
// request per Service (Assign), and it returns decisions. It keeps one
// global record of which Service holds which address, so an address is never
// handed to two Services unless they share it legitimately (same sharing key,
// compatible ports and backends, and a namespace rule the pool allows), even
// when pools overlap.
//
// The package must not import Kubernetes packages, perform I/O, log, or keep
// package-level mutable state: the controller owns reconciliation, status
// and events, and rebuilds the allocator's state on start by re-assigning the
// addresses found in Service status. Keeping it pure is what makes it cheap
// to table-test and fuzz against a brute-force model.
//
// No pool ever hands out a special-purpose address (unspecified, loopback,
// link-local, multicast, IPv4 broadcast, IPv4-mapped IPv6: SpecialPurpose),
// so a catch-all pool such as ::/0 never gives a Service "::".
//
// Costs do not depend on pool size. Per pool and family the allocator keeps
// the allocatable segments (ranges minus reserved, trimmed of .0/.255 edges)
// and a balanced tree of maximal runs of held addresses, where "consecutive"
// means consecutive among the pool's allocatable addresses. The lowest free
// address is therefore found in O(log n) even in an IPv6 ::/0 pool, and
// Stats is O(1) per family apart from big-number arithmetic. Allocation and
// release cost O(P·log n) where P is the number of pools containing the
// address (usually one).
//
// All methods of Allocator are safe for concurrent use.
package allocator
