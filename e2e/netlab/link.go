package netlab

import (
	"fmt"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"
)

// SetLink takes h's port on the lab bridge down or up: a cable pulled and
// plugged back, with no packet passing either way while it is down. It is
// one ioctl rather than a command, so that the moment it takes effect is
// the moment it returns.
func (l *Lab) SetLink(h *Host, up bool) error {
	l.mu.Lock()
	k := slices.Index(l.hosts, h)
	l.mu.Unlock()
	if k < 0 {
		return fmt.Errorf("netlab: host %s is not on lab %s's bridge", h.Name, l.ID)
	}
	port := l.Bridge + "v" + strconv.Itoa(k)
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("netlab: set link %s: %w", port, err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(port)
	if err != nil {
		return fmt.Errorf("netlab: set link %s: %w", port, err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("netlab: set link %s: get flags: %w", port, err)
	}
	flags := ifr.Uint16()
	if up {
		flags |= unix.IFF_UP
	} else {
		flags &^= unix.IFF_UP
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("netlab: set link %s: set flags: %w", port, err)
	}
	return nil
}
