package config

import "strconv"

// ExcludeLabel keeps a node out of load-balancer traffic.
const ExcludeLabel = "node.kubernetes.io/exclude-from-external-load-balancers"

// Excluded reports whether a node's labels keep it out of load-balancer
// traffic, as the upstream service controller reads the label: present
// with a value that is not a boolean, or with a true one ("", "yes" and
// "true" exclude; "false" does not).
func Excluded(nodeLabels map[string]string) bool {
	v, ok := nodeLabels[ExcludeLabel]
	if !ok {
		return false
	}
	b, err := strconv.ParseBool(v)
	return err != nil || b
}
