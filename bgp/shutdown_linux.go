package bgp

import (
	"net/netip"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// shutdownTCP shuts down, in both directions, every TCP socket of this
// process connected from local to remote, and returns how many it found.
// GoBGP does not expose its connections; shutdown(2) on a duplicate of the
// descriptor ends the connection with a FIN, and GoBGP's own attempt to
// send a NOTIFICATION afterwards fails.
func shutdownTCP(local netip.Addr, remote netip.AddrPort) (int, error) {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if link, err := os.Readlink("/proc/self/fd/" + e.Name()); err != nil || !strings.HasPrefix(link, "socket:") {
			continue
		}
		// Work on a duplicate, so that the number cannot be reused under
		// us by an unrelated file.
		dup, err := unix.Dup(fd)
		if err != nil {
			continue
		}
		if connectedTo(dup, local, remote) {
			if err := unix.Shutdown(dup, unix.SHUT_RDWR); err == nil {
				n++
			}
		}
		unix.Close(dup)
	}
	return n, nil
}

// connectedTo reports whether socket fd is a TCP connection local -> remote.
func connectedTo(fd int, local netip.Addr, remote netip.AddrPort) bool {
	if typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || typ != unix.SOCK_STREAM {
		return false
	}
	peer, err := unix.Getpeername(fd)
	if err != nil {
		return false
	}
	self, err := unix.Getsockname(fd)
	if err != nil {
		return false
	}
	p, pport := sockaddr(peer)
	l, _ := sockaddr(self)
	// Socket addresses carry a scope ID, not a zone: a link-local
	// neighbor's zone is not compared.
	return p == remote.Addr().WithZone("") && pport == remote.Port() && l == local.WithZone("")
}

func sockaddr(sa unix.Sockaddr) (netip.Addr, uint16) {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrFrom4(sa.Addr), uint16(sa.Port)
	case *unix.SockaddrInet6:
		return netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port)
	}
	return netip.Addr{}, 0
}
