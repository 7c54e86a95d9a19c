// Command kubelet builds the upstream Kubernetes kubelet from the Go module
// proxy for the worker nodes of the cluster that Berth's end-to-end tests
// bring up (e2e/cluster). It is a build wrapper only: nothing here changes
// its behaviour.
package main

import (
	"context"
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	os.Exit(cli.Run(app.NewKubeletCommand(context.Background())))
}
