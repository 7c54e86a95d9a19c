package cloud

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	cloudprovider "k8s.io/cloud-provider"
	"k8s.io/klog/v2"

	"github.com/berthlb/berth/client/clientset/versioned"
	"github.com/berthlb/berth/cloud/aws"
	"github.com/berthlb/berth/cloud/lbclass"
	"github.com/berthlb/berth/internal/serve"
)

// ProviderName is the name the plugin answers to (--cloud-provider=berth).
const ProviderName = "berth"

// clientName is the user agent of the plugin's own API requests.
const clientName = "berth-ccm"

// Cloud is Berth's cloudprovider.Interface. Create it with New; the
// controller manager calls Initialize once before any controller starts.
type Cloud struct {
	cfg   Config
	class lbclass.Class
	log   logr.Logger
	pools *Pools       // the pools backend, or nil
	aws   *aws.Backend // the aws backend, or nil
	lb    *loadBalancers
	ready readiness
}

var _ cloudprovider.Interface = (*Cloud)(nil)

// New returns the plugin for a parsed cloud config, serving the Services
// of class (see ServiceController). Only the aws backend serves a class:
// the pools backend shares BerthIPPools with berth-controller, which serves
// classed Services itself.
func New(cfg Config, class lbclass.Class, log logr.Logger) (*Cloud, error) {
	log = log.WithName("berth-cloud")
	switch cfg.Backend {
	case BackendPools:
		if class != "" {
			return nil, fmt.Errorf("--load-balancer-class=%s needs backend %q; the pools backend serves only unclassed Services (berth-controller serves classed ones from the same BerthIPPools)", class, BackendAWS)
		}
		p := NewPools(log.WithName("pools"))
		return &Cloud{cfg: cfg, log: log, pools: p, lb: &loadBalancers{backend: p, stall: serve.NewStall("load balancer", lbStallLimit)}}, nil
	case BackendAWS:
		if cfg.AWS == nil {
			return nil, fmt.Errorf("backend %q needs an aws section", cfg.Backend)
		}
		ec2c, elbc, err := aws.Clients(context.Background(), *cfg.AWS)
		if err != nil {
			return nil, err
		}
		b, err := aws.New(*cfg.AWS, ec2c, elbc, log.WithName("aws"))
		if err != nil {
			return nil, err
		}
		return &Cloud{cfg: cfg, class: class, log: log, aws: b, lb: &loadBalancers{backend: b, stall: serve.NewStall("load balancer", lbStallLimit)}}, nil
	}
	return nil, fmt.Errorf("unknown backend %q", cfg.Backend)
}

// Initialize builds the Kubernetes clients the backends need and starts
// them: the pools backend loads BerthIPPools, Services and Namespaces
// (EnsureLoadBalancer waits until the allocations found in Services'
// status have been replayed); the aws backend watches Nodes for eip mode.
// It runs once the controller manager holds leadership.
func (c *Cloud) Initialize(cb cloudprovider.ControllerClientBuilder, stop <-chan struct{}) {
	ctx := klog.NewContext(wait.ContextForChannel(stop), c.log)
	c.ready.startLeading()
	cfg, err := c.restConfig(cb)
	var kube kubernetes.Interface
	if err == nil {
		kube, err = kubernetes.NewForConfig(cfg)
	}
	if c.aws != nil {
		if err == nil {
			err = c.aws.Start(ctx, kube, c.class)
		}
		if err != nil {
			// Without Node watches eip mode still follows the service
			// controller's node lists; nlb mode needs nothing more.
			c.log.Error(err, "Cannot watch Nodes; Elastic IPs move only when the service controller reports a node change")
			c.ready.started(func() error { return nil })
			return
		}
		c.ready.started(func() error {
			if !c.aws.HasSynced() {
				return errors.New("leading, still loading Nodes, Services and EndpointSlices")
			}
			return nil
		})
		return
	}
	c.ready.started(c.pools.Ready)
	if err != nil {
		c.pools.fail(fmt.Errorf("initialize: %w", err))
		return
	}
	berth, err := versioned.NewForConfig(cfg)
	if err != nil {
		c.pools.fail(fmt.Errorf("initialize: berth client: %w", err))
		return
	}
	c.pools.Start(ctx, kube, berth)
}

func (c *Cloud) restConfig(cb cloudprovider.ControllerClientBuilder) (*rest.Config, error) {
	if c.cfg.Kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", c.cfg.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("load kubeconfig %s: %w", c.cfg.Kubeconfig, err)
		}
		cfg.UserAgent = clientName
		return cfg, nil
	}
	cfg, err := cb.Config(clientName)
	if err != nil {
		return nil, fmt.Errorf("client configuration: %w", err)
	}
	return cfg, nil
}

// LoadBalancer is the plugin's one real capability.
func (c *Cloud) LoadBalancer() (cloudprovider.LoadBalancer, bool) { return c.lb, true }

// Instances is not supported: Berth does not manage nodes.
func (c *Cloud) Instances() (cloudprovider.Instances, bool) { return nil, false }

// InstancesV2 is not supported: Berth does not manage nodes.
func (c *Cloud) InstancesV2() (cloudprovider.InstancesV2, bool) { return nil, false }

// Zones is not supported.
func (c *Cloud) Zones() (cloudprovider.Zones, bool) { return nil, false }

// Clusters is not supported.
func (c *Cloud) Clusters() (cloudprovider.Clusters, bool) { return nil, false }

// Routes is not supported: pod routing is the CNI's job.
func (c *Cloud) Routes() (cloudprovider.Routes, bool) { return nil, false }

// ProviderName returns "berth".
func (c *Cloud) ProviderName() string { return ProviderName }

// HasClusterID is true: the pools backend needs no cluster tag, and the
// aws backend requires aws.clusterName in its config instead.
func (c *Cloud) HasClusterID() bool { return true }
