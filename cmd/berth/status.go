package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/berthlb/berth/status"
)

// reportUsage says what each of `berth status`, `berth pools` and `berth
// peers` takes and shows.
func reportUsage(view status.View) (args, what string) {
	switch view {
	case status.ViewPools:
		return "", "Each pool's addresses used, free and total per family (exact, however large the pool), a usage bar, the Services holding them and whether the pool is Ready."
	case status.ViewPeers:
		return "", "Each node's BGP session with each peer: state, time up, prefixes sent and received, whether the node applied the peer's configuration, the last error."
	}
	return "[svc/NAME] ", "Without a Service, one line per LoadBalancer Service; with one, who announces its addresses, forwarding per node, conditions, Events and a verdict."
}

// runReport is `berth status [svc/NAME]`, `berth pools` and `berth
// peers`; command is the subcommand's name. It returns the exit code.
func runReport(name, command string, view status.View, args []string) int {
	opts := status.Options{View: view}
	usageArgs, usageWhat := reportUsage(view)
	fs := pflag.NewFlagSet(name+" "+command, pflag.ExitOnError)
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: %s %s %s[flags]\n\n%s\n\n", name, command, usageArgs, usageWhat)
		fs.PrintDefaults()
	}
	maxArgs := 0
	if view == status.ViewServices {
		maxArgs = 1
		fs.StringVarP(&opts.Namespace, "namespace", "n", "", "the Services' namespace; empty is the kubeconfig context's")
		fs.BoolVarP(&opts.AllNamespaces, "all-namespaces", "A", false, "list the Services of every namespace")
		fs.IntVar(&opts.Events, "events", 10, "how many of the Service's last Events to show")
	}
	fs.StringVar(&opts.Kubeconfig, "kubeconfig", "", "kubeconfig; empty follows kubectl ($KUBECONFIG, ~/.kube/config)")
	fs.StringVar(&opts.Context, "context", "", "kubeconfig context")
	_ = fs.Parse(args)
	if fs.NArg() > maxArgs {
		fs.Usage()
		return 2
	}
	opts.Target = fs.Arg(0)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := status.Run(ctx, opts, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "%s %s: %v\n", name, command, err)
		return 1
	}
	return 0
}
