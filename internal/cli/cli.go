package cli

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/berthlb/berth/client/clientset/versioned"
)

// Main parses os.Args into fs (plus klog's flags), runs run with a context
// that ends on SIGINT or SIGTERM, and exits 1 if run fails.
func Main(fs *pflag.FlagSet, run func(context.Context) error) {
	klogFlags := flag.NewFlagSet("klog", flag.ExitOnError)
	klog.InitFlags(klogFlags)
	fs.AddGoFlagSet(klogFlags)
	_ = fs.Parse(os.Args[1:])

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx = klog.NewContext(ctx, klog.Background())
	err := run(ctx)
	stop()
	klog.Flush()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", fs.Name(), err)
		os.Exit(1)
	}
}

// EnvOr returns the environment variable key, or def when it is unset or
// empty; for flag defaults that a Pod's environment provides.
func EnvOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// RESTConfig loads the client configuration from a kubeconfig file, or the
// in-cluster one when the path is empty, with the given request budget and
// user agent.
func RESTConfig(kubeconfig string, qps float32, burst int, userAgent string) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("load client configuration: %w", err)
	}
	cfg.QPS, cfg.Burst = qps, burst
	cfg.UserAgent = userAgent
	return cfg, nil
}

// Clients builds the Kubernetes and Berth clients of a process from
// RESTConfig's arguments.
func Clients(kubeconfig string, qps float32, burst int, userAgent string) (*rest.Config, kubernetes.Interface, versioned.Interface, error) {
	cfg, err := RESTConfig(kubeconfig, qps, burst, userAgent)
	if err != nil {
		return nil, nil, nil, err
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("kubernetes client: %w", err)
	}
	berth, err := versioned.NewForConfig(cfg)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("berth client: %w", err)
	}
	return cfg, kube, berth, nil
}

// StripManagedFields is an informer transform that drops managedFields
// from cached objects: neither the controller nor the speaker reads them,
// and at 10,000 Services they are a large share of a cache's memory.
func StripManagedFields(obj any) (any, error) {
	if m, err := meta.Accessor(obj); err == nil && m.GetManagedFields() != nil {
		m.SetManagedFields(nil)
	}
	return obj, nil
}
