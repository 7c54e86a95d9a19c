// Command etcd builds the upstream etcd server from the Go module proxy so that
// Berth's end-to-end tests can run a real kube-apiserver against it. It is a
// build wrapper only: nothing here changes the server's behaviour.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
