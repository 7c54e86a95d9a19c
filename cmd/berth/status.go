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

// runStatus is `berth status [svc/NAME]`; it returns the exit code.
func runStatus(name string, args []string) int {
	var opts status.Options
	fs := pflag.NewFlagSet(name+" status", pflag.ExitOnError)
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: %s status [svc/NAME] [flags]\n\nWithout a Service, one line per LoadBalancer Service; with one, who announces its addresses, forwarding per node, conditions, Events and a verdict.\n\n", name)
		fs.PrintDefaults()
	}
	fs.StringVarP(&opts.Namespace, "namespace", "n", "", "the Services' namespace; empty is the kubeconfig context's")
	fs.BoolVarP(&opts.AllNamespaces, "all-namespaces", "A", false, "list the Services of every namespace")
	fs.IntVar(&opts.Events, "events", 10, "how many of the Service's last Events to show")
	fs.StringVar(&opts.Kubeconfig, "kubeconfig", "", "kubeconfig; empty follows kubectl ($KUBECONFIG, ~/.kube/config)")
	fs.StringVar(&opts.Context, "context", "", "kubeconfig context")
	_ = fs.Parse(args)
	if fs.NArg() > 1 {
		fs.Usage()
		return 2
	}
	opts.Target = fs.Arg(0)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := status.Run(ctx, opts, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "%s status: %v\n", name, err)
		return 1
	}
	return 0
}
