package bgp

import (
	"context"
	"time"

	"github.com/go-logr/logr"
	api "github.com/osrg/gobgp/v3/api"
)

// DefaultPrefixLimitRetry is the default Config.PrefixLimitRetry.
const DefaultPrefixLimitRetry = time.Minute

// maxRetryFactor caps the back-off: a neighbor that keeps exceeding the
// limit is tried again every 16 retry periods at most.
const maxRetryFactor = 16

// watchPrefixLimit re-opens ss's session after GoBGP closed it for the
// prefix limit, which GoBGP v3 never does by itself: after retry, then
// twice as long each time the neighbor exceeds the limit again (up to
// maxRetryFactor times retry). A session that stays up for that longest
// wait earns the short wait back. It polls GoBGP until ctx ends, and
// touches nothing of ss but its GoBGP instance, so it needs no lock.
func (ss *session) watchPrefixLimit(ctx context.Context, log logr.Logger, retry time.Duration) {
	tick := time.NewTicker(min(max(retry/4, 100*time.Millisecond), 5*time.Second))
	defer tick.Stop()
	wait := retry
	var downSince, upSince time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		// The instance has one neighbor, whose address a reset may
		// change: list them all rather than read ss.peer (not ours).
		var admin api.PeerState_AdminState
		var state api.PeerState_SessionState
		var addr string
		found := false
		err := ss.bgp.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
			admin, state, found = p.GetState().GetAdminState(), p.GetState().GetSessionState(), true
			addr = p.GetConf().GetNeighborAddress()
		})
		now := time.Now()
		switch {
		case err != nil || !found:
			// Not configured yet, or being reset.
		case admin == api.PeerState_PFX_CT:
			upSince = time.Time{}
			if downSince.IsZero() {
				downSince = now
				log.Info("Session closed: the neighbor sent more prefixes than the limit; trying again later", "retryAfter", wait)
				continue
			}
			if now.Sub(downSince) < wait {
				continue
			}
			if err := ss.bgp.EnablePeer(ctx, &api.EnablePeerRequest{Address: addr}); err != nil {
				log.Error(err, "Re-opening the session closed for the prefix limit")
				continue
			}
			downSince = time.Time{}
			wait = min(2*wait, maxRetryFactor*retry)
		case state == api.PeerState_ESTABLISHED:
			if upSince.IsZero() {
				upSince = now
			} else if now.Sub(upSince) >= maxRetryFactor*retry {
				wait = retry
			}
		default:
			upSince = time.Time{}
		}
	}
}
