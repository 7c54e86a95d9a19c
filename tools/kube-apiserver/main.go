// Command kube-apiserver builds the upstream Kubernetes API server from the
// Go module proxy so that Berth's end-to-end tests run against the real thing.
// It is a build wrapper only: nothing here changes the server's behaviour.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
