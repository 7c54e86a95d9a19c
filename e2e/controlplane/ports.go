package controlplane

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
)

// FreePort returns a TCP port that was free on addr a moment ago, for a
// process that binds it itself (etcd, kube-apiserver, Berth's binaries
// take a port, not a listener). Port 0 would give a port of the ephemeral
// range, where the kernel also picks the source ports of every outgoing
// connection on the machine, so that one can take it before the process
// binds it; FreePort picks at random below that range, where only an
// explicit bind can, and callers retry when the process then reports the
// address in use (see AddrInUse).
func FreePort(addr netip.Addr) (int, error) {
	low := ephemeralLow()
	var last error
	for range 50 {
		port := 10000 + rand.IntN(low-10000)
		l, err := net.Listen("tcp", net.JoinHostPort(addr.String(), fmt.Sprint(port)))
		if err != nil {
			last = err
			continue
		}
		_ = l.Close()
		return port, nil
	}
	return 0, fmt.Errorf("find free port on %s: %w", addr, last)
}

// ephemeralLow returns the start of the kernel's ephemeral port range
// (32768 when unknown).
func ephemeralLow() int {
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var lo, hi int
		if _, err := fmt.Sscan(string(b), &lo, &hi); err == nil && lo > 10100 {
			low = lo
		}
	}
	return low
}

// AddrInUse reports whether err, or the log tail it carries, says a bind
// failed because the address was in use.
func AddrInUse(err error) bool {
	return err != nil && strings.Contains(strings.ToLower(err.Error()), "address already in use")
}

// retryOnAddrInUse calls start up to three times while it fails because a
// port it picked was taken in the meantime.
func retryOnAddrInUse(start func() error) error {
	var err error
	for range 3 {
		if err = start(); !AddrInUse(err) {
			return err
		}
	}
	return err
}
