package netlab

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// Listen opens a listening socket (TCP) or a bound packet socket (UDP) in
// h's namespace, from this process: a socket stays in the namespace it was
// created in, so the caller can serve it from any goroutine. network and
// address are as for net.Listen and net.ListenPacket; exactly one result is
// non-nil on success.
func (h *Host) Listen(network, address string) (l net.Listener, pc net.PacketConn, err error) {
	err = h.InNetns(func() error {
		var e error
		switch network {
		case "udp", "udp4", "udp6":
			pc, e = net.ListenPacket(network, address)
		default:
			l, e = net.Listen(network, address)
		}
		return e
	})
	return l, pc, err
}

// DialContext connects from h's namespace, as net.Dialer.DialContext does.
// Both the socket and the connection are made in the namespace.
func (h *Host) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	var c net.Conn
	err := h.InNetns(func() error {
		var e error
		c, e = (&net.Dialer{}).DialContext(ctx, network, address)
		return e
	})
	return c, err
}

// InNetns runs f on an OS thread switched to h's namespace, then switches
// the thread back. Only sockets f creates belong to h; f must not start
// goroutines that create sockets.
//
// The thread must not end: a child process started from it with
// Pdeathsig (as Host.Command does) would be killed with it. So if it
// cannot switch back, the goroutine blocks forever on the locked thread.
func (h *Host) InNetns(f func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("open own netns: %w", err)
			return
		}
		defer self.Close()
		target, err := os.Open(filepath.Join("/var/run/netns", h.Netns))
		if err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("open netns %s: %w", h.Netns, err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("enter netns %s: %w", h.Netns, err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("leave netns %s: %w", h.Netns, err)
			select {} // keep the thread, out of use
		}
		runtime.UnlockOSThread()
		done <- ferr
	}()
	return <-done
}
