package cloud

import (
	"bytes"
	"fmt"
	"io"

	"sigs.k8s.io/yaml"
)

// Backend names accepted in the cloud config.
const (
	// BackendPools serves addresses from IPPools.
	BackendPools = "pools"
	// BackendAWS serves NLBs or Elastic IPs from AWS; not implemented yet.
	BackendAWS = "aws"
)

// Config is the content of the --cloud-config file.
type Config struct {
	// Backend is "pools" or "aws".
	Backend string `json:"backend"`
	// Kubeconfig, when set, is used by the pools backend to read IPPools,
	// Services and Namespaces instead of the controller manager's own
	// client configuration.
	Kubeconfig string `json:"kubeconfig,omitempty"`
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
	case BackendAWS:
		return cfg, fmt.Errorf("cloud config: backend %q is not implemented yet; use %q", BackendAWS, BackendPools)
	default:
		return cfg, fmt.Errorf("cloud config: unknown backend %q; want %q or %q", cfg.Backend, BackendPools, BackendAWS)
	}
	return cfg, nil
}
