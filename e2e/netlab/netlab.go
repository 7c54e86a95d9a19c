package netlab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berthlb/berth/internal/hostdeps"
)

// RequireRoot skips tb unless it runs as root, which creating namespaces,
// bridges and veths needs.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		hostdeps.Skip(tb, "netlab: test needs root (network namespaces, bridges and veths); run go test as root or in CI")
	}
}

// Lab is one bridge with the hosts attached to it.
type Lab struct {
	// ID is the random hex id in every name the lab creates.
	ID string
	// Bridge is the bridge's link name in the root namespace.
	Bridge string
	// Prefix4 and Prefix6 are the lab's subnets.
	Prefix4, Prefix6 netip.Prefix
	// Gateway4 and Gateway6 are the bridge's addresses: the root namespace's
	// address in the lab.
	Gateway4, Gateway6 netip.Addr

	// tb is set by New, for AddHost.
	tb    testing.TB
	mu    sync.Mutex
	hosts []*Host
}

// Host is a network namespace attached to the lab's bridge.
type Host struct {
	// Name is the name given to AddHost.
	Name string
	// Netns is the namespace's name, as ip netns knows it.
	Netns string
	// IPv4 and IPv6 are eth0's addresses.
	IPv4, IPv6 netip.Addr
}

// New creates a lab for tb and registers its removal with tb.Cleanup. It
// skips tb if not root and fails it if the lab cannot be made.
func New(tb testing.TB) *Lab {
	tb.Helper()
	RequireRoot(tb)
	hostdeps.Require(tb, "ip")
	l, err := Create()
	if err != nil {
		tb.Fatal(err)
	}
	l.tb = tb
	tb.Cleanup(func() {
		if err := l.Close(); err != nil {
			tb.Error(err)
		}
	})
	return l
}

// Create creates a lab; Close removes it. It needs root and ip(8). On error
// it leaves nothing behind.
func Create() (*Lab, error) {
	l := &Lab{}
	if err := l.create(); err != nil {
		return nil, errors.Join(fmt.Errorf("netlab: %w", err), l.Close())
	}
	return l, nil
}

// create picks an id and a subnet that no interface uses yet and makes the
// bridge. A lock file serialises this across test processes, so two labs
// never pick the same subnet.
func (l *Lab) create() error {
	if err := os.MkdirAll(stateDir(), 0o700); err != nil {
		return err
	}
	lock, err := os.OpenFile(filepath.Join(stateDir(), ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("open lock: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	if err := sweepStale(); err != nil {
		return err
	}
	addrs, err := ip("-o", "addr", "show")
	if err != nil {
		return err
	}
	for range 100 {
		b := make([]byte, 3)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		n := int(b[0])%127 + 1
		if strings.Contains(addrs, fmt.Sprintf(" 198.18.%d.", n)) {
			continue
		}
		l.ID = hex.EncodeToString(b)
		l.Bridge = "bth" + l.ID
		l.Prefix4 = netip.MustParsePrefix(fmt.Sprintf("198.18.%d.0/24", n))
		l.Prefix6 = netip.MustParsePrefix(fmt.Sprintf("2001:db8:%x::/64", n))
		l.Gateway4 = l.Prefix4.Addr().Next()
		l.Gateway6 = l.Prefix6.Addr().Next()
		if err := os.WriteFile(filepath.Join(stateDir(), l.ID), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
			return fmt.Errorf("record owner: %w", err)
		}
		return run(
			[]string{"link", "add", l.Bridge, "type", "bridge"},
			[]string{"addr", "add", prefixOf(l.Gateway4, l.Prefix4), "dev", l.Bridge},
			[]string{"addr", "add", prefixOf(l.Gateway6, l.Prefix6), "dev", l.Bridge, "nodad"},
			[]string{"link", "set", l.Bridge, "up"},
		)
	}
	return errors.New("no free 198.18.<n>.0/24 subnet")
}

// ForTest makes AddHost fail tb on error, for a lab made by Create whose
// owner closes it (cluster.Start hands its lab to the test this way).
func (l *Lab) ForTest(tb testing.TB) { l.tb = tb }

// AddHost is CreateHost for a lab made by New (or given ForTest): it fails
// the lab's test on error.
func (l *Lab) AddHost(name string) *Host {
	if l.tb == nil {
		panic("netlab: AddHost on a lab made by Create without ForTest; use CreateHost")
	}
	l.tb.Helper()
	h, err := l.CreateHost(name)
	if err != nil {
		l.tb.Fatal(err)
	}
	return h
}

// CreateHost creates a namespace bth-<id>-<name> with lo up and an eth0 on
// the bridge holding the next free IPv4 and IPv6 addresses. The host gets
// no default route: it reaches the lab's subnets and nothing else, unless
// the caller adds routes (say, to a load-balancer pool) with Exec. The
// lab's Close removes it.
func (l *Lab) CreateHost(name string) (*Host, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := len(l.hosts)
	if k >= 250 {
		return nil, fmt.Errorf("netlab: lab %s is full", l.ID)
	}
	h := &Host{
		Name:  name,
		Netns: "bth-" + l.ID + "-" + name,
		IPv4:  nth(l.Gateway4, k+1),
		IPv6:  nth(l.Gateway6, k+1),
	}
	veth := l.Bridge + "v" + strconv.Itoa(k)
	l.hosts = append(l.hosts, h)
	err := run(
		[]string{"netns", "add", h.Netns},
		[]string{"-n", h.Netns, "link", "set", "lo", "up"},
		// Without DAD the addresses are usable at once instead of after
		// a second or two of tentative state.
		[]string{"netns", "exec", h.Netns, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"},
		[]string{"link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", h.Netns},
		[]string{"link", "set", veth, "master", l.Bridge, "up"},
		[]string{"-n", h.Netns, "addr", "add", prefixOf(h.IPv4, l.Prefix4), "dev", "eth0"},
		[]string{"-n", h.Netns, "addr", "add", prefixOf(h.IPv6, l.Prefix6), "dev", "eth0", "nodad"},
		[]string{"-n", h.Netns, "link", "set", "eth0", "up"},
	)
	if err != nil {
		return nil, fmt.Errorf("netlab: add host %s: %w", name, err)
	}
	return h, nil
}

// Command returns a command that runs argv inside h's namespace. It is killed
// if the test binary dies (Pdeathsig, which follows the starting OS thread:
// do not Start it from a goroutine that locked its thread and then exits),
// and the lab's cleanup kills it if still running.
func (h *Host) Command(ctx context.Context, argv ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.Netns}, argv...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// Exec runs argv inside h's namespace and returns its combined output. The
// error, if any, includes the output.
func (h *Host) Exec(ctx context.Context, argv ...string) (string, error) {
	out, err := h.Command(ctx, argv...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %s: %w\n%s", h.Netns, strings.Join(argv, " "), err, out)
	}
	return string(out), nil
}

// Close removes everything the lab made: its hosts' processes and
// namespaces, the bridge, and the record of its owner.
func (l *Lab) Close() error {
	if l.ID == "" {
		return nil
	}
	if err := remove(l.ID); err != nil {
		return fmt.Errorf("netlab: clean up lab %s: %w", l.ID, err)
	}
	return nil
}

// remove kills the processes in lab id's namespaces, then deletes the
// namespaces (which takes their veths along), the bridge, anything else still
// carrying the id, and the record of the lab's owner.
func remove(id string) error {
	var errs []error
	namespaces, links, err := Leftovers(id)
	if err != nil {
		errs = append(errs, err)
	}
	for _, ns := range namespaces {
		if err := killAll(ns); err != nil {
			errs = append(errs, err)
		}
		if _, err := ip("netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	for _, link := range links {
		// A veth disappears with its peer's namespace; it may already be
		// gone by now.
		if _, err := ip("link", "del", link); err != nil && !strings.Contains(err.Error(), "Cannot find device") && !strings.Contains(err.Error(), "No such device") {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(stateDir(), id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// stateDir holds one file per live lab, named after its id and holding the
// pid of the test process that owns it.
func stateDir() string { return filepath.Join(os.TempDir(), "berth-netlab") }

// sweepStale removes the labs of test processes that died without running
// their cleanup (killed, or panicked on -timeout), so that their bridges and
// subnets do not pile up. Called with the lock held.
func sweepStale() error {
	entries, err := os.ReadDir(stateDir())
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(stateDir(), e.Name()))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err == nil && syscall.Kill(pid, 0) != syscall.ESRCH {
			continue // owner alive
		}
		if err := remove(e.Name()); err != nil {
			errs = append(errs, fmt.Errorf("remove stale lab %s: %w", e.Name(), err))
		}
	}
	return errors.Join(errs...)
}

// Leftovers lists the namespaces and links in the root namespace that carry
// lab id id. Tests use it to check that cleanup removed everything.
func Leftovers(id string) (namespaces, links []string, err error) {
	out, err := ip("netns", "list")
	if err != nil {
		return nil, nil, err
	}
	for line := range strings.Lines(out) {
		if name, _, _ := strings.Cut(strings.TrimSpace(line), " "); strings.HasPrefix(name, "bth-"+id+"-") {
			namespaces = append(namespaces, name)
		}
	}
	out, err = ip("-o", "link", "show")
	if err != nil {
		return nil, nil, err
	}
	for line := range strings.Lines(out) {
		// "7: bthab12cdv0@if2: <...". The bridge goes last so that its
		// ports are gone first.
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(fields[1], ":"), "@")
		if strings.HasPrefix(name, "bth"+id) {
			links = append(links, name)
		}
	}
	// Ports before the bridge.
	for i, name := range links {
		if name == "bth"+id {
			links = append(append(links[:i:i], links[i+1:]...), name)
			break
		}
	}
	return namespaces, links, nil
}

// killAll SIGKILLs every process in namespace ns and waits for them to go,
// so that deleting the namespace really frees it.
func killAll(ns string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err := ip("netns", "pids", ns)
		if err != nil {
			return err
		}
		pids := strings.Fields(out)
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v in %s survive SIGKILL", pids, ns)
		}
		for _, p := range pids {
			if pid, err := strconv.Atoi(p); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ip runs ip(8) with args and returns its output.
func ip(args ...string) (string, error) {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// run runs ip(8) once per argument list, stopping at the first error.
func run(cmds ...[]string) error {
	for _, args := range cmds {
		if _, err := ip(args...); err != nil {
			return err
		}
	}
	return nil
}

// nth returns the address k after a.
func nth(a netip.Addr, k int) netip.Addr {
	for range k {
		a = a.Next()
	}
	return a
}

func prefixOf(a netip.Addr, p netip.Prefix) string {
	return netip.PrefixFrom(a, p.Bits()).String()
}

// Behind are the subnets of a host that AddHostBehind puts behind a router:
// documentation ranges that no lab bridge uses.
var (
	BehindNet4 = netip.MustParsePrefix("192.0.2.0/24")
	BehindNet6 = netip.MustParsePrefix("2001:db8:c1::/64")
)

// AddHostBehind makes namespace bth-<id>-<name>, linked only to router by a
// veth of its own (so the lab's cleanup removes both), addressed from
// BehindNet4 and BehindNet6 with the router as its default gateway. The
// router forwards; the other hosts of the lab still need a route to the
// subnets via the router (RouteBehind).
func (l *Lab) AddHostBehind(ctx context.Context, router *Host, name string) (*Host, error) {
	c := &Host{Name: name, Netns: "bth-" + l.ID + "-" + name,
		IPv4: BehindNet4.Addr().Next().Next(), IPv6: BehindNet6.Addr().Next().Next()}
	gw4, gw6 := BehindNet4.Addr().Next(), BehindNet6.Addr().Next()
	for _, args := range [][]string{
		{"netns", "add", c.Netns},
		{"-n", c.Netns, "link", "set", "lo", "up"},
		{"-n", router.Netns, "link", "add", "cl0", "type", "veth", "peer", "name", "eth0", "netns", c.Netns},
		{"-n", router.Netns, "addr", "add", netip.PrefixFrom(gw4, 24).String(), "dev", "cl0"},
		{"-n", router.Netns, "addr", "add", netip.PrefixFrom(gw6, 64).String(), "dev", "cl0", "nodad"},
		{"-n", router.Netns, "link", "set", "cl0", "up"},
		{"-n", c.Netns, "addr", "add", netip.PrefixFrom(c.IPv4, 24).String(), "dev", "eth0"},
		{"-n", c.Netns, "addr", "add", netip.PrefixFrom(c.IPv6, 64).String(), "dev", "eth0", "nodad"},
		{"-n", c.Netns, "link", "set", "eth0", "up"},
		{"-n", c.Netns, "route", "add", "default", "via", gw4.String()},
		{"-n", c.Netns, "-6", "route", "add", "default", "via", gw6.String()},
		{"netns", "exec", router.Netns, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"},
	} {
		if out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("host %s behind %s: ip %s: %w: %s", name, router.Name, strings.Join(args, " "), err, out)
		}
	}
	return c, nil
}

// RouteBehind routes h's traffic for the subnets behind router through it.
func RouteBehind(ctx context.Context, h, router *Host) error {
	for _, args := range [][]string{
		{"-n", h.Netns, "route", "add", BehindNet4.String(), "via", router.IPv4.String()},
		{"-n", h.Netns, "-6", "route", "add", BehindNet6.String(), "via", router.IPv6.String()},
	} {
		if out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("route behind %s: ip %s: %w: %s", router.Name, strings.Join(args, " "), err, out)
		}
	}
	return nil
}
