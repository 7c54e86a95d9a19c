package cloud

import (
	"bytes"
	"fmt"
	"io"

	"sigs.k8s.io/yaml"

	"github.com/berthlb/berth/cloud/aws"
)

// Backend names accepted in the cloud config.
const (
	// BackendPools serves addresses from BerthIPPools.
	BackendPools = "pools"
	// BackendAWS serves NLBs or Elastic IPs from AWS.
	BackendAWS = "aws"
)

// Config is the content of the --cloud-config file.
type Config struct {
	// Backend is "pools" or "aws".
	Backend string `json:"backend"`
	// Kubeconfig, when set, is used by the pools backend to read BerthIPPools,
	// Services and Namespaces instead of the controller manager's own
	// client configuration.
	Kubeconfig string `json:"kubeconfig,omitempty"`
	// AWS configures the aws backend; it is required with it and refused
	// without it.
	AWS *aws.Config `json:"aws,omitempty"`
}

// ParseConfig reads a cloud config. A nil reader (no --cloud-config) means
// the defaults: the pools backend. Unknown fields are rejected, so that a
// typo does not silently select defaults.
func ParseConfig(r io.Reader) (Config, error) {
	cfg := Config{Backend: BackendPools}
	if r == nil {
		return cfg, nil
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return cfg, fmt.Errorf("read cloud config: %w", err)
	}
	if len(bytes.TrimSpace(data)) > 0 {
		if err := yaml.UnmarshalStrict(data, &cfg); err != nil {
			return cfg, fmt.Errorf("parse cloud config: %w", err)
		}
	}
	switch cfg.Backend {
	case "":
		cfg.Backend = BackendPools
	case BackendPools:
		if cfg.AWS != nil {
			return cfg, fmt.Errorf("cloud config: an aws section is set but the backend is %q", cfg.Backend)
		}
	case BackendAWS:
		if cfg.AWS == nil {
			return cfg, fmt.Errorf("cloud config: backend %q needs an aws section (at least aws.clusterName)", BackendAWS)
		}
		withDefaults, err := cfg.AWS.Defaults()
		if err != nil {
			return cfg, fmt.Errorf("cloud config: %w", err)
		}
		cfg.AWS = &withDefaults
	default:
		return cfg, fmt.Errorf("cloud config: unknown backend %q; want %q or %q", cfg.Backend, BackendPools, BackendAWS)
	}
	return cfg, nil
}
