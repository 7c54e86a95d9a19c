package doctor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/berthlb/berth/client/clientset/versioned"
)

// Options configure Run; cmd/berth fills them from flags.
type Options struct {
	// Kubeconfig and Context pick the cluster as kubectl does: empty
	// follows $KUBECONFIG and ~/.kube/config.
	Kubeconfig string
	Context    string
	// Names say where Berth is installed.
	Names Names
}

// ErrProblems is returned by Run when a check failed, after the report
// is written: the command exits non-zero, for scripts.
var ErrProblems = errors.New("problems found")

// Run gathers a snapshot of the cluster, checks it and writes the report
// to out.
func Run(ctx context.Context, opts Options, out io.Writer) error {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = opts.Kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules,
		&clientcmd.ConfigOverrides{CurrentContext: opts.Context}).ClientConfig()
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	cfg.UserAgent = "kubectl-berth-doctor"
	var c Clients
	if c.Kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	if c.Berth, err = versioned.NewForConfig(cfg); err != nil {
		return err
	}
	if c.CRDs, err = apiextensionsclient.NewForConfig(cfg); err != nil {
		return err
	}
	snap, err := Gather(ctx, c, opts.Names, time.Now())
	if err != nil {
		return err
	}
	failed, err := Write(out, Check(snap))
	if err != nil {
		return err
	}
	if failed > 0 {
		return ErrProblems
	}
	return nil
}
