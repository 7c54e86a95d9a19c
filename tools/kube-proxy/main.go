// Command kube-proxy builds the upstream Kubernetes kube-proxy from the Go
// module proxy so that Berth's end-to-end tests can check the speaker's
// forwarding against the real thing. It is a build wrapper only: nothing here
// changes kube-proxy's behaviour.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-proxy/app"
)

func main() {
	os.Exit(cli.Run(app.NewProxyCommand()))
}
