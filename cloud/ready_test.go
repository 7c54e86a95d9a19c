package cloud

import (
	"errors"
	"strings"
	"testing"

	"github.com/go-logr/logr"
)

// TestReady checks berth-ccm's /readyz answer through a replica's life: a
// standby is ready, a new leader is not until its pools backend has
// replayed the Services' addresses, and a backend that cannot start is
// never ready.
func TestReady(t *testing.T) {
	tests := []struct {
		name    string
		leading bool
		started bool
		pools   func(*Pools) // what the backend has done
		want    string       // "" ready, else a part of the error
	}{
		{name: "standby", want: ""},
		{name: "leading, Initialize running", leading: true, want: "starting the backend"},
		{name: "leading, caches loading", leading: true, started: true, want: "still loading BerthIPPools"},
		{name: "leading, addresses replayed", leading: true, started: true, pools: func(p *Pools) { p.Restore(nil, nil) }, want: ""},
		{name: "leading, backend failed", leading: true, started: true, pools: func(p *Pools) { p.fail(errors.New("no BerthIPPool CRD")) }, want: "no BerthIPPool CRD"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(Config{Backend: BackendPools}, "", logr.Discard())
			if err != nil {
				t.Fatal(err)
			}
			if tc.leading {
				c.ready.startLeading()
			}
			if tc.started {
				c.ready.started(c.pools.Ready)
			}
			if tc.pools != nil {
				tc.pools(c.pools)
			}
			err = c.Ready(t.Context())
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("not ready: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Ready() = %v, want an error with %q", err, tc.want)
			}
		})
	}
}
