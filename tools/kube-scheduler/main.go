// Command kube-scheduler builds the upstream Kubernetes kube-scheduler from
// the Go module proxy for the cluster that Berth's end-to-end tests bring up
// (e2e/cluster). It is a build wrapper only: nothing here changes its
// behaviour.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"
)

func main() {
	os.Exit(cli.Run(app.NewSchedulerCommand()))
}
