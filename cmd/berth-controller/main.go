// Command berth-controller runs Berth's Service IP controller: it hands out
// addresses from BerthIPPools to LoadBalancer Services.
//
// `berth-controller uninstall` prepares an uninstall instead (the chart's
// pre-delete hook): see internal/lifecycle.
package main

import (
	"context"
	"os"

	"github.com/spf13/pflag"

	"github.com/berthlb/berth/controller"
	"github.com/berthlb/berth/internal/cli"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "uninstall" {
		uninstall()
		return
	}
	opts := controller.DefaultOptions()
	fs := pflag.NewFlagSet("berth-controller", pflag.ExitOnError)
	fs.StringVar(&opts.Kubeconfig, "kubeconfig", "", "path to a kubeconfig file; empty uses the in-cluster configuration")
	fs.Float32Var(&opts.QPS, "kube-api-qps", opts.QPS, "requests per second to the API server")
	fs.IntVar(&opts.Burst, "kube-api-burst", opts.Burst, "burst of requests to the API server")
	fs.StringVar(&opts.LoadBalancerClass, "load-balancer-class", opts.LoadBalancerClass, "spec.loadBalancerClass handled by this controller")
	fs.BoolVar(&opts.HandleUnclassed, "handle-unclassed", opts.HandleUnclassed, "also handle LoadBalancer Services without spec.loadBalancerClass")
	fs.IntVar(&opts.Workers, "workers", opts.Workers, "Services reconciled concurrently")
	fs.DurationVar(&opts.PoolStatusDelay, "pool-status-delay", opts.PoolStatusDelay, "minimum time between two status writes of one pool")
	fs.BoolVar(&opts.LeaderElect, "leader-elect", opts.LeaderElect, "run only while holding the leader Lease (set with more than one replica)")
	fs.StringVar(&opts.LeaderElectionNamespace, "leader-election-namespace", cli.EnvOr("POD_NAMESPACE", opts.LeaderElectionNamespace), "namespace of the leader Lease")
	fs.StringVar(&opts.LeaderElectionName, "leader-election-id", opts.LeaderElectionName, "name of the leader Lease")
	fs.DurationVar(&opts.LeaseDuration, "leader-elect-lease-duration", opts.LeaseDuration, "leader Lease duration")
	fs.DurationVar(&opts.RenewDeadline, "leader-elect-renew-deadline", opts.RenewDeadline, "time the leader retries renewing before it gives up")
	fs.DurationVar(&opts.RetryPeriod, "leader-elect-retry-period", opts.RetryPeriod, "time between election attempts")
	fs.StringVar(&opts.MetricsAddr, "metrics-addr", opts.MetricsAddr, "address serving /metrics, /healthz and /readyz; empty disables")
	fs.StringVar(&opts.LifecycleConfigMap, "lifecycle-configmap", "", "ConfigMap in the leader election namespace that marks an uninstall, upon which every BerthIPPool loses its finalizer; empty ignores uninstalls")
	cli.Main(fs, func(ctx context.Context) error { return controller.Run(ctx, opts) })
}
