//go:build !linux

package bgp

import (
	"errors"
	"net/netip"
)

// shutdownTCP is only implemented on Linux; elsewhere Stop falls back to
// GoBGP's Cease, which defeats graceful restart.
func shutdownTCP(netip.Addr, netip.AddrPort) (int, error) {
	return 0, errors.New("not supported on this platform")
}
