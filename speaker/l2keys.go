package speaker

import (
	"context"
	"fmt"
	"time"

	"github.com/go-logr/logr"

	"github.com/berthlb/berth/l2"
)

// MemberlistKey is the key of the memberlist Secret that holds the shared
// key (16, 24 or 32 bytes).
const MemberlistKey = "secretkey"

// MemberlistAcceptKey is the optional key of the memberlist Secret with a
// second key that is accepted but not sent with, for rotations.
const MemberlistAcceptKey = "secretkey-accept"

// Reasons of the Warning Events startL2 records on the Node.
const (
	// ReasonL2Disabled: layer 2 could not start.
	ReasonL2Disabled = "L2Disabled"
	// ReasonL2KeysNotApplied: a changed memberlist Secret was not applied.
	ReasonL2KeysNotApplied = "L2KeysNotApplied"
)

// keyCheckInterval is how often a running speaker looks at the memberlist
// Secret again (reads are cached for secretTTL on top).
const keyCheckInterval = 10 * time.Second

// membershipKeys are the keys read from the memberlist Secret.
type membershipKeys struct {
	primary, accept []byte
}

func (k membershipKeys) others() [][]byte {
	if len(k.accept) == 0 {
		return nil
	}
	return [][]byte{k.accept}
}

func (k membershipKeys) equal(o membershipKeys) bool {
	return string(k.primary) == string(o.primary) && string(k.accept) == string(o.accept)
}

// memberlistKeys reads the keys from the Secret by name, or says what is
// wrong with them.
func (s *Speaker) memberlistKeys(ctx context.Context, secret string) (membershipKeys, string) {
	var keys membershipKeys
	for _, k := range []struct {
		name     string
		dst      *[]byte
		required bool
	}{{MemberlistKey, &keys.primary, true}, {MemberlistAcceptKey, &keys.accept, false}} {
		v, ok, err := s.secrets.get(ctx, secret, k.name)
		switch {
		case err != nil:
			return keys, fmt.Sprintf("cannot read the memberlist Secret %q: %v", secret, err)
		case !ok && k.required:
			return keys, fmt.Sprintf("Secret %q (key %q) with the memberlist key does not exist; create it (see docs/layer2.md)", secret, k.name)
		case !ok:
		case len(v) != 16 && len(v) != 24 && len(v) != 32:
			return keys, fmt.Sprintf("the memberlist key %q in Secret %q is %d bytes; it must be 16, 24 or 32", k.name, secret, len(v))
		default:
			*k.dst = []byte(v)
		}
	}
	return keys, ""
}

// rotateKeys applies a change of the memberlist Secret to the running
// membership and returns the keys now in use, and what is wrong with the
// Secret if anything. A Secret that went missing or bad changes nothing:
// the speakers keep the keys they share.
func (s *Speaker) rotateKeys(ctx context.Context, secret string, members *l2.Members, cur membershipKeys) (membershipKeys, string) {
	log := logr.FromContextOrDiscard(ctx)
	keys, problem := s.memberlistKeys(ctx, secret)
	if problem == "" && !keys.equal(cur) {
		if err := members.SetKeys(keys.primary, keys.others()); err != nil {
			problem = err.Error()
		}
	}
	if problem != "" {
		problem = "keeping the layer-2 membership keys in use: " + problem
		log.Error(nil, "Membership Secret not applied", "problem", problem)
		return cur, problem
	}
	if !keys.equal(cur) {
		log.Info("Membership keys changed", "acceptsSecondKey", len(keys.accept) > 0)
	}
	return keys, ""
}
