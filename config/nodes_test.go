package config_test

import (
	"testing"

	"github.com/berthlb/berth/config"
)

func TestExcluded(t *testing.T) {
	for _, tc := range []struct {
		labels map[string]string
		want   bool
	}{
		{nil, false},
		{map[string]string{"other": "true"}, false},
		{map[string]string{config.ExcludeLabel: ""}, true},
		{map[string]string{config.ExcludeLabel: "true"}, true},
		{map[string]string{config.ExcludeLabel: "yes"}, true},
		{map[string]string{config.ExcludeLabel: "false"}, false},
		{map[string]string{config.ExcludeLabel: "0"}, false},
	} {
		if got := config.Excluded(tc.labels); got != tc.want {
			t.Errorf("Excluded(%v) = %v, want %v", tc.labels, got, tc.want)
		}
	}
}
