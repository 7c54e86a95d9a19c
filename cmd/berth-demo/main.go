// Command berth-demo runs Berth on this machine against a local control
// plane and shows what it does with the example pools and Services.
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
	cli.Main(fs, func(ctx context.Context) error { return demo.Run(ctx, opts) })
}
