// Package status is `berth status` (`kubectl berth status`): for each
// LoadBalancer Service, or one in detail, its addresses and pools, who
// announces them (the nodes over BGP and to which peers, the layer-2
// owner), whether forwarding is in place on each node, the Service's
// conditions and last Events, and a verdict: reachable from where, or the
// first reason it is not. `berth pools` shows each pool's usage per family
// and `berth peers` each node's BGP sessions (Options.View).
//
// It only reads: the Services and their Events, Berth's resources and the
// speakers' BerthNodeStatuses. Analyze is a pure function of what it read,
// so that the verdicts are table-tested without a cluster.
package status
