// Command berth-speaker runs on every node and makes the addresses Berth
// assigned reachable: it announces them over BGP or answers ARP/NDP for
// them (layer 2), and forwards their traffic
// to the Services' NodePorts.
//
// `berth-speaker cleanup` removes instead what a speaker leaves on the node
// it runs on (its nftables table and drain routes) and exits.
package main

import (
	"context"
	"net/netip"
	"os"
	"runtime/debug"

	"github.com/spf13/pflag"

	"github.com/berthlb/berth/internal/cli"
	"github.com/berthlb/berth/speaker"
)

func main() {
	// The speaker recomputes its plan from large caches on every change;
	// halving the garbage collector's headroom keeps a node agent's
	// memory near its live heap. GOGC still overrides.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
	opts := speaker.DefaultOptions()
	if len(os.Args) > 1 && os.Args[1] == "cleanup" {
		fs := pflag.NewFlagSet("berth-speaker cleanup", pflag.ExitOnError)
		fs.StringVar(&opts.Table, "nftables-table", opts.Table, "the nftables table (family inet) to delete")
		cli.Main(fs, func(ctx context.Context) error { return speaker.Cleanup(ctx, opts.Table) })
		return
	}
	fs := pflag.NewFlagSet("berth-speaker", pflag.ExitOnError)
	fs.StringVar(&opts.Kubeconfig, "kubeconfig", "", "path to a kubeconfig file; empty uses the in-cluster configuration")
	fs.StringVar(&opts.NodeName, "node-name", os.Getenv("NODE_NAME"), "name of the node this speaker runs on")
	fs.StringVar(&opts.Namespace, "namespace", cli.EnvOr("POD_NAMESPACE", opts.Namespace), "Berth's namespace, where BGP password Secrets live")
	fs.BoolVar(&opts.BGP, "bgp", opts.BGP, "announce addresses over BGP")
	fs.Func("router-id", "BGP router ID (IPv4); default: the Node's bgp.berth.dev/router-id annotation, else its first IPv4 InternalIP, else a hash of its name", func(v string) error {
		a, err := netip.ParseAddr(v)
		opts.RouterID = a
		return err
	})
	fs.BoolVar(&opts.Forwarding, "forwarding", opts.Forwarding, "forward external address:port to the Services' NodePorts with nftables")
	fs.StringVar(&opts.Table, "nftables-table", opts.Table, "the nftables table (family inet) the speaker owns")
	fs.BoolVar(&opts.CleanupOnExit, "cleanup-on-exit", opts.CleanupOnExit, "remove the forwarding table on a clean exit (for uninstalling)")
	fs.StringVar(&opts.LifecycleConfigMap, "lifecycle-configmap", "", "ConfigMap in the namespace that marks an uninstall, upon which the speaker removes its table and routes and idles; empty ignores uninstalls")
	fs.DurationVar(&opts.DriftCheck, "drift-check-interval", opts.DriftCheck, "how often to check the forwarding table for changes made by others")
	fs.DurationVar(&opts.StatusInterval, "status-interval", opts.StatusInterval, "least time between two writes of the node's BerthNodeStatus; changes in between are written together")
	fs.StringVar(&opts.MetricsAddr, "metrics-addr", opts.MetricsAddr, "address serving /metrics and /healthz; empty disables")
	fs.BoolVar(&opts.MetricsSecure, "metrics-secure", opts.MetricsSecure, "serve HTTPS (self-signed) and /metrics only to bearer tokens allowed to get /metrics (TokenReview, SubjectAccessReview); /healthz and /readyz stay open")
	fs.BoolVar(&opts.L2, "l2", opts.L2, "answer ARP/NDP for the addresses BerthL2Advertisements select, one node per address")
	fs.IntVar(&opts.MemberlistPort, "memberlist-port", opts.MemberlistPort, "UDP and TCP port of the speakers' membership protocol (layer 2)")
	fs.StringVar(&opts.MemberlistSecret, "memberlist-secret", opts.MemberlistSecret, "Secret in the namespace whose key \"secretkey\" (16, 24 or 32 bytes) authenticates the membership")
	fs.DurationVar(&opts.Handover, "l2-handover", opts.Handover, "how long a node keeps answering for an address after a planned move (cordon) away from it")
	fs.DurationVar(&opts.Drain, "l2-drain", opts.Drain, "after a planned move, how long the new owner routes packets of TCP connections it does not know to the old owner, so that they survive the move (needs --forwarding); 0 disables")
	fs.StringVar(&opts.L2Tiebreak, "l2-tiebreak-lease", opts.L2Tiebreak, "coordination.k8s.io Lease in the namespace that lets exactly half of an even layer-2 membership answer (two-node clusters, even splits), held by one node at a time; empty disables")
	fs.StringVar(&opts.L2Members, "l2-members-lease", opts.L2Members, "coordination.k8s.io Lease in the namespace holding the layer-2 membership record, which lets the speakers leave nodes gone for good out of the quorum; a speaker reads it before it sends anything; empty disables (every known node then votes until its Node is deleted)")
	fs.DurationVar(&opts.L2ForgetAfter, "l2-forget-after", opts.L2ForgetAfter, "how long a Node must not have been Ready before the speakers leave it out of the layer-2 quorum (through the membership record, agreed by a majority); 0 never does")
	fs.BoolVar(&opts.L2Voters, "l2-voters", opts.L2Voters, "let the layer-2 membership record name the voters (every node in a cluster of up to 7, 5 in a larger one, to which alone the others send heartbeats), so that a new node votes only once a record names it; takes effect with --l2-members-lease, once every speaker reads heartbeat version 4; false: every known node votes, unnamed")
	cli.Main(fs, func(ctx context.Context) error { return speaker.Run(ctx, opts) })
}
