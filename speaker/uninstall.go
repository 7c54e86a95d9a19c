package speaker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/cache"

	"github.com/berthlb/berth/internal/cli"
	"github.com/berthlb/berth/internal/lifecycle"
	"github.com/berthlb/berth/internal/serve"
	"github.com/berthlb/berth/nodeport"
)

// Cleanup removes what a speaker leaves on its node when it stops: the
// nftables table (family inet) and the host routes of drains
// (RouteProtocol). It is what an uninstall does on each node, and what
// `berth-speaker cleanup` does by hand.
func Cleanup(ctx context.Context, table string) error {
	nft, err := nodeport.NewNFT(nodeport.NFTOptions{Table: table})
	if err != nil {
		return err
	}
	return errors.Join(nodeport.New(nft).Cleanup(ctx), (&netlinkRoutes{}).Set(nil))
}

// runUntilUninstall runs the speaker (Run, without the mark) while the
// ConfigMap Options.LifecycleConfigMap does not mark an uninstall. Once it
// does, or if it already does at the start, the speaker stops announcing
// (BGP sessions close, the layer-2 membership is left), removes its
// node's table and routes (Cleanup), reports the node in the ConfigMap,
// and idles until ctx ends, serving /healthz (and a /readyz that says why
// it is not ready) so that it is not restarted into forwarding again.
// Without the mark a stop keeps the table: a restart does not interrupt
// traffic.
func runUntilUninstall(ctx context.Context, opts Options) error {
	log := logr.FromContextOrDiscard(ctx).WithName("speaker").WithValues("node", opts.NodeName)
	_, kube, _, err := cli.Clients(opts.Kubeconfig, 5, 10, "berth-speaker")
	if err != nil {
		return err
	}
	mark := lifecycle.NewWatcher(kube, opts.Namespace, opts.LifecycleConfigMap)
	marked := make(chan struct{})
	var once sync.Once
	if err := mark.OnChange(func() {
		if mark.Uninstalling() {
			once.Do(func() { close(marked) })
		}
	}); err != nil {
		return err
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	mark.Start(watchCtx)
	defer mark.Shutdown()
	defer stopWatch()
	if !cache.WaitForCacheSync(ctx.Done(), mark.HasSynced) {
		return fmt.Errorf("watch ConfigMap %s: %w", opts.LifecycleConfigMap, ctx.Err())
	}
	if !mark.Uninstalling() {
		runCtx, stopRun := context.WithCancel(ctx)
		go func() {
			select {
			case <-marked:
				log.Info("Berth is being uninstalled; stopping announcements")
				stopRun()
			case <-runCtx.Done():
			}
		}()
		inner := opts
		inner.LifecycleConfigMap = ""
		err := Run(runCtx, inner)
		stopRun()
		select {
		case <-marked:
			if err != nil {
				log.Error(err, "Speaker stopped with an error; cleaning up anyway")
			}
		default:
			return err // stopped without an uninstall: the table stays
		}
	}
	if opts.Forwarding {
		if err := Cleanup(ctx, opts.Table); err != nil {
			return fmt.Errorf("uninstall: %w", err)
		}
		log.Info("Removed the forwarding table and drain routes", "table", opts.Table)
	}
	cms := kube.CoreV1().ConfigMaps(opts.Namespace)
	err = wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		if err := lifecycle.ReportCleaned(ctx, cms, opts.LifecycleConfigMap, opts.NodeName); err != nil {
			log.Error(err, "Report the node cleaned")
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return nil // stopped before the report went through
	}
	log.Info("Node holds none of Berth's state; idle until stopped")
	if opts.MetricsAddr != "" {
		stop, err := serve.Metrics(ctx, opts.MetricsAddr, serve.NewRegistry(), func(context.Context) error {
			return errors.New("being uninstalled: this speaker removed its node's state and does nothing more")
		})
		if err != nil {
			return err
		}
		defer stop()
	}
	<-ctx.Done()
	return nil
}
