// Command berth-ccm is a cloud-controller-manager built on
// k8s.io/cloud-provider/app with Berth as its cloud provider. By default it
// runs only the service controller, which calls Berth for LoadBalancer
// Services without spec.loadBalancerClass, or with --load-balancer-class
// for those of that class and no other.
package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/util/wait"
	cloudprovider "k8s.io/cloud-provider"
	"k8s.io/cloud-provider/app"
	ccmconfig "k8s.io/cloud-provider/app/config"
	"k8s.io/cloud-provider/names"
	"k8s.io/cloud-provider/options"
	"k8s.io/component-base/cli"
	cliflag "k8s.io/component-base/cli/flag"
	_ "k8s.io/component-base/logs/json/register" // --logging-format=json
	"k8s.io/klog/v2"

	"github.com/berthlb/berth/cloud"
	"github.com/berthlb/berth/cloud/lbclass"
	berthcli "github.com/berthlb/berth/internal/cli"
	"github.com/berthlb/berth/internal/serve"
)

func main() {
	opts, err := options.NewCloudControllerManagerOptions()
	if err != nil {
		fmt.Fprintf(os.Stderr, "berth-ccm: %v\n", err)
		os.Exit(1)
	}
	opts.KubeCloudShared.CloudProvider.Name = cloud.ProviderName
	var berthFlags cliflag.NamedFlagSets
	readyzAddr := berthFlags.FlagSet("berth").String("readyz-address", ":9632",
		"address serving Berth's readiness on /readyz (a standby replica is ready; the leader once its backend has loaded), /healthz and the Go runtime's /metrics, over plain HTTP; empty disables")
	class := berthFlags.FlagSet("berth").String("load-balancer-class", "",
		"serve only the LoadBalancer Services of this spec.loadBalancerClass (e.g. berth.dev/aws; aws backend only) and never any other, so that berth-ccm runs beside a managed service controller that serves the unclassed ones; empty serves the unclassed Services")
	// Only the service controller: Berth manages no nodes and no routes.
	// Its constructor runs after the flags are parsed.
	service := app.DefaultInitFuncConstructors[names.ServiceLBController]
	controllers := map[string]app.ControllerInitFuncConstructor{
		names.ServiceLBController: {InitContext: service.InitContext, Constructor: func(ic app.ControllerInitContext, c *ccmconfig.CompletedConfig, p cloudprovider.Interface) app.InitFunc {
			return cloud.ServiceController(lbclass.Class(*class))(ic, c, p)
		}},
	}
	initWithReadyz := func(c *ccmconfig.CompletedConfig) cloudprovider.Interface { return initCloud(c, *class, *readyzAddr) }
	cmd := app.NewCloudControllerManagerCommand(opts, initWithReadyz, controllers, names.CCMControllerAliases(), berthFlags, wait.NeverStop)
	cmd.RunE = berthcli.AnswerVersion("berth-ccm", cmd.RunE)
	os.Exit(cli.Run(cmd))
}

// initCloud builds the plugin from --cloud-provider, --cloud-config and
// --load-balancer-class and serves its readiness on readyzAddr. The controller manager offers no way
// to return an error from here, so a bad configuration ends the process
// with a message.
func initCloud(c *ccmconfig.CompletedConfig, class, readyzAddr string) cloudprovider.Interface {
	shared := c.ComponentConfig.KubeCloudShared.CloudProvider
	if shared.Name != cloud.ProviderName {
		klog.ErrorS(nil, "Unsupported --cloud-provider; this binary serves only Berth", "cloudProvider", shared.Name, "want", cloud.ProviderName)
		klog.FlushAndExit(klog.ExitFlushTimeout, 1)
	}
	var r io.Reader
	if shared.CloudConfigFile != "" {
		f, err := os.Open(shared.CloudConfigFile)
		if err != nil {
			klog.ErrorS(err, "Cannot open --cloud-config")
			klog.FlushAndExit(klog.ExitFlushTimeout, 1)
		}
		defer f.Close()
		r = f
	}
	cfg, err := cloud.ParseConfig(r)
	var lbc lbclass.Class
	if err == nil {
		lbc, err = lbclass.Parse(class)
	}
	if err == nil {
		var p *cloud.Cloud
		if p, err = cloud.New(cfg, lbc, klog.Background()); err == nil {
			if err = serveReadyz(p, readyzAddr); err == nil {
				return p
			}
		}
	}
	klog.ErrorS(err, "Cannot initialize the Berth cloud provider")
	klog.FlushAndExit(klog.ExitFlushTimeout, 1)
	return nil
}

// serveReadyz serves p's readiness on addr ("" serves nothing) until the
// process exits: the controller manager gives no stop signal here.
func serveReadyz(p *cloud.Cloud, addr string) error {
	if addr == "" {
		return nil
	}
	ctx := klog.NewContext(context.Background(), klog.Background())
	_, err := serve.Serve(ctx, serve.Config{Addr: addr, Registry: serve.NewRegistry(), Ready: p.Ready, Healthy: p.Healthy})
	return err
}
