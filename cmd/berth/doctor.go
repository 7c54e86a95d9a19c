package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/berthlb/berth/doctor"
)

// doctorMain runs `berth doctor` and returns the exit code: 0 when no
// check failed, 1 when one did, 2 when the checks could not run.
func doctorMain(name string, args []string) int {
	opts := doctor.Options{Names: doctor.DefaultNames()}
	fs := pflag.NewFlagSet(name+" doctor", pflag.ExitOnError)
	fs.StringVar(&opts.Kubeconfig, "kubeconfig", "", "kubeconfig; empty follows kubectl ($KUBECONFIG, ~/.kube/config)")
	fs.StringVar(&opts.Context, "context", "", "kubeconfig context")
	fs.StringVarP(&opts.Names.Namespace, "namespace", "n", opts.Names.Namespace, "Berth's namespace")
	fs.StringVar(&opts.Names.Lease, "leader-election-id", opts.Names.Lease, "the controller's leader Lease")
	fs.StringVar(&opts.Names.Controller, "controller", opts.Names.Controller, "the controller's Deployment")
	fs.StringVar(&opts.Names.Speaker, "speaker", opts.Names.Speaker, "the speakers' DaemonSet")
	fs.StringVar(&opts.Names.LoadBalancerClass, "load-balancer-class", opts.Names.LoadBalancerClass, "spec.loadBalancerClass the controller handles")
	_ = fs.Parse(args)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch err := doctor.Run(ctx, opts, os.Stdout); {
	case errors.Is(err, doctor.ErrProblems):
		return 1
	case err != nil:
		fmt.Fprintf(os.Stderr, "%s doctor: %v\n", name, err)
		return 2
	}
	return 0
}
