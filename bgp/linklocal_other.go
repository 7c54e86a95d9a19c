//go:build !linux

package bgp

import (
	"errors"
	"net/netip"
)

// LinkLocalNeighbor is only implemented on Linux.
func LinkLocalNeighbor(ifname string) (netip.Addr, error) {
	return netip.Addr{}, errors.New("interface peers are not supported on this platform")
}

// AnnounceLinkLocal is only implemented on Linux.
func AnnounceLinkLocal(ifname string) error {
	return errors.New("interface peers are not supported on this platform")
}
