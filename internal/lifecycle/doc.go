// Package lifecycle tells Berth's long-running processes that Berth is
// being uninstalled, and runs the uninstall's preparation.
//
// The signal is one ConfigMap in Berth's namespace (DefaultConfigMap),
// installed empty with the chart. The chart's pre-delete hook (a Job
// running `berth-controller uninstall`, see Uninstall) sets its key
// "uninstall" to "true". Every speaker then withdraws its announcements,
// deletes its nftables table and host routes, stays idle until it is
// stopped, and reports its node in the ConfigMap; the controller removes
// the finalizer berth.dev/pool-in-use from every BerthIPPool and adds it no
// more. The hook waits for both, so that by the time Helm deletes the
// workloads no node keeps Berth's state and nothing blocks deleting the
// pools or the CRDs. A speaker that merely restarts (a rolling upgrade, a
// crash) sees no mark and keeps its table, so traffic is not interrupted.
package lifecycle
