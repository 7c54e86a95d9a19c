package main

import (
	"context"
	"time"

	"github.com/spf13/pflag"

	"github.com/berthlb/berth/internal/cli"
	"github.com/berthlb/berth/internal/lifecycle"
)

// uninstall is `berth-controller uninstall`, the chart's pre-delete hook:
// it marks the uninstall and waits until the speakers cleaned their nodes
// and the controller released the pools (lifecycle.Uninstall).
func uninstall() {
	var kubeconfig string
	opts := lifecycle.UninstallOptions{
		Namespace: cli.EnvOr("POD_NAMESPACE", "berth-system"),
		ConfigMap: lifecycle.DefaultConfigMap,
		Timeout:   2 * time.Minute,
		Poll:      time.Second,
	}
	fs := pflag.NewFlagSet("berth-controller uninstall", pflag.ExitOnError)
	fs.StringVar(&kubeconfig, "kubeconfig", "", "path to a kubeconfig file; empty uses the in-cluster configuration")
	fs.StringVar(&opts.Namespace, "namespace", opts.Namespace, "Berth's namespace")
	fs.StringVar(&opts.ConfigMap, "lifecycle-configmap", opts.ConfigMap, "the ConfigMap that marks the uninstall")
	fs.StringVar(&opts.SpeakerSelector, "speaker-selector", "", "label selector of the speakers' Pods, whose nodes must be cleaned; empty: no speaker runs")
	fs.BoolVar(&opts.Pools, "pools", false, "wait for berth-controller to remove the BerthIPPools' finalizers")
	fs.DurationVar(&opts.Timeout, "timeout", opts.Timeout, "how long to wait for the speakers and the controller")
	cli.Main(fs, func(ctx context.Context) error {
		_, kube, berth, err := cli.Clients(kubeconfig, 20, 40, "berth-uninstall")
		if err != nil {
			return err
		}
		return lifecycle.Uninstall(ctx, kube, berth, opts)
	})
}
