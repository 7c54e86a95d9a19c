package cloud

import (
	"fmt"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	cloudprovider "k8s.io/cloud-provider"
	"k8s.io/klog/v2"

	"github.com/berthlb/berth/client/clientset/versioned"
)

// ProviderName is the name the plugin answers to (--cloud-provider=berth).
const ProviderName = "berth"

// clientName is the user agent of the plugin's own API requests.
const clientName = "berth-ccm"

// Cloud is Berth's cloudprovider.Interface. Create it with New; the
// controller manager calls Initialize once before any controller starts.
type Cloud struct {
	cfg   Config
	log   logr.Logger
	pools *Pools
	lb    *loadBalancers
}

var _ cloudprovider.Interface = (*Cloud)(nil)

// New returns the plugin for a parsed cloud config.
func New(cfg Config, log logr.Logger) (*Cloud, error) {
	if cfg.Backend != BackendPools {
		return nil, fmt.Errorf("backend %q is not implemented", cfg.Backend)
	}
	log = log.WithName("berth-cloud")
	p := NewPools(log.WithName("pools"))
	return &Cloud{cfg: cfg, log: log, pools: p, lb: &loadBalancers{backend: p}}, nil
}

// Initialize builds the clients the pools backend reads IPPools, Services
// and Namespaces with, and starts loading them; EnsureLoadBalancer waits
// until the allocations found in Services' status have been replayed. It
// runs once the controller manager holds leadership.
func (c *Cloud) Initialize(cb cloudprovider.ControllerClientBuilder, stop <-chan struct{}) {
	cfg, err := c.restConfig(cb)
	if err != nil {
		c.pools.fail(fmt.Errorf("initialize: %w", err))
		return
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		c.pools.fail(fmt.Errorf("initialize: kubernetes client: %w", err))
		return
	}
	berth, err := versioned.NewForConfig(cfg)
	if err != nil {
		c.pools.fail(fmt.Errorf("initialize: berth client: %w", err))
		return
	}
	ctx := klog.NewContext(wait.ContextForChannel(stop), c.log)
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

// HasClusterID is true: the pools backend needs no cluster tag, so the
// controller manager need not insist on one.
func (c *Cloud) HasClusterID() bool { return true }
