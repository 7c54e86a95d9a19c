// Command berth is Berth's command-line tool. Installed as kubectl-berth
// on the PATH it is also the kubectl plugin `kubectl berth`.
//
//	berth migrate -f metallb.yaml > berth.yaml
//	kubectl berth migrate --from-cluster -o berth.yaml --report report.txt
//	kubectl berth doctor
//	kubectl berth status svc/web -n demo
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/berthlb/berth/internal/cli"
	"github.com/berthlb/berth/migrate"
	"github.com/berthlb/berth/status"
)

func main() {
	name := filepath.Base(os.Args[0])
	if name == "kubectl-berth" {
		name = "kubectl berth" // run by kubectl as a plugin
	}
	if len(os.Args) >= 2 && os.Args[1] == "doctor" {
		os.Exit(doctorMain(name, os.Args[2:]))
	}
	if len(os.Args) >= 2 {
		if view, ok := map[string]status.View{"status": status.ViewServices, "pools": status.ViewPools, "peers": status.ViewPeers}[os.Args[1]]; ok {
			os.Exit(runReport(name, os.Args[1], view, os.Args[2:]))
		}
	}
	if len(os.Args) < 2 || os.Args[1] != "migrate" {
		if len(os.Args) >= 2 && os.Args[1] == "--version" {
			cli.PrintVersion(os.Stdout, name)
			return
		}
		fmt.Fprintf(os.Stderr, "usage: %s migrate|status|pools|peers|doctor [flags]\n\nmigrate converts MetalLB and Cilium LB-IPAM resources into Berth's; status says who announces each Service's addresses and whether they are reachable; pools shows each pool's usage per family; peers shows each node's BGP sessions; doctor checks the installation and says what to fix; %s COMMAND --help lists a command's flags\n", name, name)
		os.Exit(2)
	}
	var opts migrate.Options
	fs := pflag.NewFlagSet(name+" migrate", pflag.ExitOnError)
	fs.StringArrayVarP(&opts.Files, "filename", "f", nil, "YAML file with MetalLB or Cilium resources (multi-document or kind: List); - reads standard input; repeatable")
	fs.BoolVar(&opts.FromCluster, "from-cluster", false, "also read MetalLB's and Cilium's resources from the cluster")
	fs.StringVar(&opts.Kubeconfig, "kubeconfig", "", "kubeconfig for --from-cluster; empty follows kubectl ($KUBECONFIG, ~/.kube/config)")
	fs.StringVar(&opts.Context, "context", "", "kubeconfig context for --from-cluster")
	fs.StringVarP(&opts.Output, "output", "o", "", "file for Berth's resources; empty or - is standard output")
	fs.StringVar(&opts.Report, "report", "", "file for the report of what was not carried over; empty is standard error")
	_ = fs.Parse(os.Args[2:])

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := migrate.Run(ctx, opts, migrate.Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s migrate: %v\n", name, err)
		os.Exit(1)
	}
}
