package bgp

import (
	"errors"
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
		if pe, ok := err.(*PeerError); ok {
			out = append(out, pe)
			return
		}
		switch u := err.(type) {
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

// peerErr wraps err as peer's error, unless it is nil.
func peerErr(peer string, fam Family, err error) error {
	if err == nil {
		return nil
	}
	var pe *PeerError
	if errors.As(err, &pe) && pe.Peer == peer {
		return err
	}
	return &PeerError{Peer: peer, Family: fam, Err: err}
}
