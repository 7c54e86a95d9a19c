// Command berth-demo runs Berth on this machine and shows what it does:
// with --cluster on a real cluster of kubelets and pods, installed by its
// chart; otherwise against a local control plane with the example pools
// and Services.
package main

import (
	"context"

	"github.com/spf13/pflag"

	"github.com/berthlb/berth/demo"
	"github.com/berthlb/berth/internal/cli"
)

func main() {
	var opts demo.Options
	fs := pflag.NewFlagSet("berth-demo", pflag.ExitOnError)
	fs.StringVar(&opts.ExamplesDir, "examples", "", "directory of YAML to apply (default: manifests/examples)")
	fs.BoolVar(&opts.Once, "once", false, "print the result and exit instead of waiting for Ctrl-C")
	fs.BoolVar(&opts.Cluster, "cluster", false, "run on a real cluster (kubelets, containerd, pods; as root) with Berth installed by its chart")
	cli.Main(fs, func(ctx context.Context) error { return demo.Run(ctx, opts) })
}
