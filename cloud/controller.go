package cloud

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	cloudprovider "k8s.io/cloud-provider"
	"k8s.io/cloud-provider/app"
	ccmconfig "k8s.io/cloud-provider/app/config"
	servicecontroller "k8s.io/cloud-provider/controllers/service"
	genericapp "k8s.io/controller-manager/app"
	"k8s.io/controller-manager/controller"

	"github.com/berthlb/berth/cloud/lbclass"
)

// ServiceController is the init function of the service controller for
// the class berth-ccm serves. For the empty class it is upstream's own,
// which serves the unclassed Services. For any other it is the same
// upstream controller on an lbclass.View of the Services, started with the
// same settings, so it sees only the Services of the class (presented
// without it) and never learns of the others; its client puts Berth's
// finalizer (lbclass.Finalizer) where it would put upstream's.
func ServiceController(class lbclass.Class) app.InitFuncConstructor {
	if class == "" {
		return app.StartServiceControllerWrapper
	}
	return func(ic app.ControllerInitContext, cc *ccmconfig.CompletedConfig, cp cloudprovider.Interface) app.InitFunc {
		return func(ctx context.Context, cctx genericapp.ControllerContext) (controller.Interface, bool, error) {
			cfg, err := cc.ClientBuilder.Config(ic.ClientName)
			if err != nil {
				return nil, false, fmt.Errorf("service controller client: %w", err)
			}
			cfg = rest.CopyConfig(cfg)
			cfg.Wrap(lbclass.FinalizerTransport)
			kube, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				return nil, false, fmt.Errorf("service controller client: %w", err)
			}
			inf := cache.NewSharedIndexInformer(lbclass.NewView(class).ListWatch(kube), &v1.Service{},
				cc.ComponentConfig.Generic.MinResyncPeriod.Duration,
				cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
			sc, err := servicecontroller.New(cp, kube, serviceInformer{inf}, cc.SharedInformers.Core().V1().Nodes(),
				cc.ComponentConfig.KubeCloudShared.ClusterName, utilfeature.DefaultFeatureGate)
			if err != nil {
				return nil, false, fmt.Errorf("service controller for class %s: %w", class, err)
			}
			go inf.RunWithContext(ctx)
			go sc.Run(ctx, int(cc.ComponentConfig.ServiceController.ConcurrentServiceSyncs), cctx.ControllerManagerMetrics)
			return nil, true, nil
		}
	}
}

// serviceInformer hands the view's informer to the service controller,
// which takes a ServiceInformer.
type serviceInformer struct{ inf cache.SharedIndexInformer }

var _ coreinformers.ServiceInformer = serviceInformer{}

func (s serviceInformer) Informer() cache.SharedIndexInformer { return s.inf }

func (s serviceInformer) Lister() corelisters.ServiceLister {
	return corelisters.NewServiceLister(s.inf.GetIndexer())
}
