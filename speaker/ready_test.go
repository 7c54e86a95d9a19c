package speaker

import (
	"strings"
	"testing"
	"time"

	"github.com/berthlb/berth/bgp"
)

func TestReady(t *testing.T) {
	up := []bgp.PeerStatus{{Name: "r1", State: bgp.StateEstablished}, {Name: "r2", State: bgp.StateActive}}
	for _, tc := range []struct {
		name string
		in   readyInput
		want string // "" for ready, else a substring of the error
	}{
		{name: "before the first sync", in: readyInput{}, want: "no sync has completed"},
		{name: "the last sync failed", in: readyInput{Synced: true, SyncErr: "sync forwarding: boom"}, want: "boom"},
		{name: "synced, nothing else configured", in: readyInput{Synced: true}},
		{name: "layer 2 on, membership not up", in: readyInput{Synced: true, WantL2: true}, want: "layer-2 membership"},
		{name: "layer 2 up", in: readyInput{Synced: true, WantL2: true, L2Up: true, L2Quorate: true}},
		{name: "layer 2 up without quorum, also after the grace", in: readyInput{Synced: true, WantL2: true, L2Up: true, Elapsed: time.Hour}, want: "no quorum"},
		{name: "a missing membership Secret does not stall a rollout for ever", in: readyInput{Synced: true, WantL2: true, Elapsed: sessionGrace}},
		{name: "a configured session is not established", in: readyInput{Synced: true, Peers: []string{"r1", "r2"}, Sessions: up}, want: "r2 (Active)"},
		{name: "a configured session never started", in: readyInput{Synced: true, Peers: []string{"r3"}}, want: "r3 (not started)"},
		{name: "all configured sessions established", in: readyInput{Synced: true, Peers: []string{"r1"}, Sessions: up}},
		{name: "a dead router does not stall a rollout for ever", in: readyInput{Synced: true, Peers: []string{"r2"}, Sessions: up, Elapsed: sessionGrace}},
		{name: "but a failing sync does", in: readyInput{Synced: true, SyncErr: "x", Elapsed: time.Hour}, want: "last sync failed"},
		{name: "and failing forwarding", in: readyInput{Synced: true, SyncErr: "forwarding: nft: operation not permitted", Elapsed: time.Hour}, want: "forwarding"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ready(tc.in)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("not ready: %v; want ready", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("ready(%+v) = %v; want an error saying %q", tc.in, err, tc.want)
			}
		})
	}
}
