package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	logsapi "k8s.io/component-base/logs/api/v1"
	_ "k8s.io/component-base/logs/json/register" // --logging-format=json
	"k8s.io/klog/v2"

	"github.com/berthlb/berth/client/clientset/versioned"
	"github.com/berthlb/berth/internal/version"
)

// Main parses os.Args into fs (plus the logging flags of Kubernetes'
// components and --version), runs run with a context that ends on SIGINT
// or SIGTERM, and exits 1 if run fails. With --version it prints the
// version line and exits 0 without running.
func Main(fs *pflag.FlagSet, run func(context.Context) error) {
	logging := AddLoggingFlags(fs)
	fs.Bool(versionFlag, false, "print the version and commit, then exit")
	_ = fs.Parse(os.Args[1:])
	if VersionRequested(fs) {
		PrintVersion(os.Stdout, fs.Name())
		return
	}
	if err := logsapi.ValidateAndApply(logging, nil); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", fs.Name(), err)
		os.Exit(2)
	}

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

// AddLoggingFlags adds the logging flags Kubernetes' components have
// (--logging-format text or json, -v, --vmodule, --log-flush-frequency)
// to fs; apply the returned configuration with logsapi.ValidateAndApply
// once fs is parsed. Every log line goes through klog's logr back end,
// so --logging-format=json makes all of them JSON.
func AddLoggingFlags(fs *pflag.FlagSet) *logsapi.LoggingConfiguration {
	c := logsapi.NewLoggingConfiguration()
	logsapi.AddFlags(c, fs)
	return c
}

// versionFlag is the flag every Berth command answers with its version.
const versionFlag = "version"

// VersionRequested reports whether fs holds a set --version: Main's boolean
// flag, or component-base's (berth-ccm), whose value is "true" or "raw"
// when asked to print and a version string when asked to override the
// reported Kubernetes version.
func VersionRequested(fs *pflag.FlagSet) bool {
	f := fs.Lookup(versionFlag)
	if f == nil || !f.Changed {
		return false
	}
	v := f.Value.String()
	return v == "true" || v == "raw"
}

// PrintVersion writes the version line of the command name to w.
func PrintVersion(w io.Writer, name string) {
	fmt.Fprintln(w, version.Get().String(name))
}

// command is what AnswerVersion needs of a *cobra.Command, so that this
// package need not import cobra.
type command interface {
	Flags() *pflag.FlagSet
	OutOrStdout() io.Writer
}

// AnswerVersion wraps a cobra RunE so that --version prints Berth's version
// line for name instead of running. berth-ccm needs it: k8s.io/cloud-provider
// registers component-base's --version, which would print the version of
// the Kubernetes libraries.
func AnswerVersion[C command](name string, run func(C, []string) error) func(C, []string) error {
	return func(c C, args []string) error {
		if VersionRequested(c.Flags()) {
			PrintVersion(c.OutOrStdout(), name)
			return nil
		}
		return run(c, args)
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
