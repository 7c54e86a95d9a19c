package bgp

import (
	"fmt"
)

// PeerError is a failure of one peer, or of one address family of one
// peer: SetPeers and Advertise return them (joined), so that a caller can
// tell each peer's problem to its owner while the others are applied.
type PeerError struct {
	// Peer is the peer's name.
	Peer string
	// Family is set when only that address family failed (Advertise).
	Family Family
	// Err is what went wrong.
	Err error
}

func (e *PeerError) Error() string {
	if e.Family != "" {
		return fmt.Sprintf("bgp: peer %q, %s: %v", e.Peer, e.Family, e.Err)
	}
	return fmt.Sprintf("bgp: peer %q: %v", e.Peer, e.Err)
}

func (e *PeerError) Unwrap() error { return e.Err }

// PeerErrors returns every PeerError in err's tree (joined errors
// included), in order.
func PeerErrors(err error) []*PeerError {
	var out []*PeerError
	var walk func(error)
	walk = func(err error) {
		if err == nil {
			return
		}
		// The walk unwraps itself, to find every PeerError, not the first.
		if pe, ok := err.(*PeerError); ok { //nolint:errorlint // see above
			out = append(out, pe)
			return
		}
		switch u := err.(type) { //nolint:errorlint // see above
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	return out
}
