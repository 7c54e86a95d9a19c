package l2

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	"k8s.io/klog/v2/ktesting"
)

// fakeConn records what the Responder asks a socket to do. Requests are fed
// through in; Read returns an error once closed.
type fakeConn struct {
	in     chan request
	closed chan struct{}

	mu      sync.Mutex
	replies []netip.Addr
	sent    []netip.Addr // announcements
	groups  map[netip.Addr]bool
}

func newFakeConn() *fakeConn {
	return &fakeConn{in: make(chan request), closed: make(chan struct{}), groups: map[netip.Addr]bool{}}
}

func (f *fakeConn) Read() (request, error) {
	select {
	case r := <-f.in:
		return r, nil
	case <-f.closed:
		return request{}, net.ErrClosed
	}
}

func (f *fakeConn) Reply(req request) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.replies = append(f.replies, req.Target)
	return nil
}

func (f *fakeConn) Announce(a netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, a)
	return nil
}

func (f *fakeConn) JoinGroup(g netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.groups[g] {
		return fmt.Errorf("%v joined twice", g)
	}
	f.groups[g] = true
	return nil
}

func (f *fakeConn) LeaveGroup(g netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.groups[g] {
		return fmt.Errorf("%v left but not joined", g)
	}
	delete(f.groups, g)
	return nil
}

func (f *fakeConn) Close() error { close(f.closed); return nil }

func (f *fakeConn) snapshot() (replies, sent, groups []netip.Addr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for g := range f.groups {
		groups = append(groups, g)
	}
	slices.SortFunc(groups, netip.Addr.Compare)
	return slices.Clone(f.replies), slices.Clone(f.sent), groups
}

var (
	ourMAC   = net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	theirMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 2}
)

// fakeNet is one interface "eth0" whose ARP and NDP sockets are fakes.
type fakeNet struct {
	mu    sync.Mutex
	conns map[bool]*fakeConn // by v6
	ifs   []net.Interface
	// failV6 is how many NDP dials fail before one succeeds.
	failV6 int
}

func newFakeNet() *fakeNet {
	return &fakeNet{
		conns: map[bool]*fakeConn{},
		ifs: []net.Interface{
			{Index: 1, Name: "lo", Flags: net.FlagUp | net.FlagLoopback},
			{Index: 2, Name: "eth0", Flags: net.FlagUp, HardwareAddr: ourMAC},
			{Index: 3, Name: "eth1", Flags: 0, HardwareAddr: theirMAC}, // down
		},
	}
}

func (n *fakeNet) dial(ifi net.Interface, v6 bool) (linkConn, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ifi.Name != "eth0" {
		return nil, fmt.Errorf("unexpected dial on %s", ifi.Name)
	}
	if v6 && n.failV6 > 0 {
		n.failV6--
		return nil, errors.New("no IPv6 link-local address")
	}
	c := newFakeConn()
	n.conns[v6] = c
	return c, nil
}

func (n *fakeNet) interfaces() ([]net.Interface, error) { return n.ifs, nil }

func (n *fakeNet) conn(t *testing.T, v6 bool) *fakeConn {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		n.mu.Lock()
		c := n.conns[v6]
		n.mu.Unlock()
		if c != nil {
			return c
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("no socket opened (v6=%v)", v6)
	return nil
}

// startResponder runs a Responder on a fakeNet with a fast announce
// schedule.
func startResponder(t *testing.T, announce []time.Duration) (*Responder, *fakeNet) {
	t.Helper()
	return startResponderWith(t, ResponderConfig{Announce: announce})
}

// startResponderWith is startResponder with a configuration; Rescan is
// always an hour.
func startResponderWith(t *testing.T, cfg ResponderConfig) (*Responder, *fakeNet) {
	t.Helper()
	_, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithCancel(ctx)
	n := newFakeNet()
	cfg.Rescan = time.Hour
	r := newResponder(cfg, n.dial, n.interfaces)
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	n.conn(t, false)
	n.conn(t, true)
	return r, n
}

// ask feeds a request through c and waits until the Responder handled it:
// the fake's Read is unbuffered, so the next send only completes after the
// previous request was handled.
func ask(c *fakeConn, req request) {
	c.in <- req
	c.in <- request{} // barrier: an invalid request is never answered
}

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, 0, len(s))
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

func TestResponderAnswers(t *testing.T) {
	owned := addrs("198.51.100.1", "2001:db8::1")
	tests := []struct {
		name string
		v6   bool
		req  request
		want []netip.Addr // replies
	}{
		{name: "owned v4", req: request{Target: owned[0], SenderMAC: theirMAC}, want: owned[:1]},
		{name: "owned v6", v6: true, req: request{Target: owned[1], SenderMAC: theirMAC}, want: owned[1:]},
		{name: "v6 without source link-layer option", v6: true, req: request{Target: owned[1]}, want: owned[1:]},
		{name: "v4-mapped target on ARP", req: request{Target: netip.AddrFrom16(owned[0].As16()), SenderMAC: theirMAC}, want: owned[:1]},
		{name: "not owned v4", req: request{Target: netip.MustParseAddr("198.51.100.2"), SenderMAC: theirMAC}},
		{name: "not owned v6", v6: true, req: request{Target: netip.MustParseAddr("2001:db8::2"), SenderMAC: theirMAC}},
		{name: "v6 target on ARP socket", req: request{Target: owned[1], SenderMAC: theirMAC}},
		{name: "v4 target on NDP socket", v6: true, req: request{Target: owned[0], SenderMAC: theirMAC}},
		{name: "our own gratuitous ARP echoed", req: request{Target: owned[0], SenderMAC: ourMAC}},
		{name: "invalid target", req: request{SenderMAC: theirMAC}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, n := startResponder(t, []time.Duration{0})
			r.SetOwned(owned)
			c := n.conn(t, tc.v6)
			ask(c, tc.req)
			replies, _, _ := c.snapshot()
			if diff := cmp.Diff(tc.want, replies, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("replies (-want +got):\n%s", diff)
			}
		})
	}
}

func TestResponderStopsAnsweringAtOnce(t *testing.T) {
	r, n := startResponder(t, []time.Duration{0})
	a := addrs("198.51.100.1")
	c := n.conn(t, false)
	r.SetOwned(a)
	ask(c, request{Target: a[0], SenderMAC: theirMAC})
	r.SetOwned(nil)
	ask(c, request{Target: a[0], SenderMAC: theirMAC})
	if replies, _, _ := c.snapshot(); len(replies) != 1 {
		t.Errorf("got %d replies, want 1 (the one before SetOwned(nil))", len(replies))
	}
	if got := r.Owned(); len(got) != 0 {
		t.Errorf("Owned() = %v, want none", got)
	}
}

// TestResponderGate checks that a closed gate silences replies and every
// announcement of a burst, each asked right before it would go, without
// forgetting what is owned.
func TestResponderGate(t *testing.T) {
	var open atomic.Bool
	var refused atomic.Int32 // the gate's answers "closed"
	schedule := []time.Duration{0, 30 * time.Millisecond, 60 * time.Millisecond}
	r, n := startResponderWith(t, ResponderConfig{
		Announce: schedule,
		Gate: func() bool {
			if open.Load() {
				return true
			}
			refused.Add(1)
			return false
		},
	})
	a := addrs("198.51.100.1")
	c := n.conn(t, false)
	r.SetOwned(a)
	ask(c, request{Target: a[0], SenderMAC: theirMAC})
	// Every announcement of the burst and the reply were refused: the
	// Responder has handled them all when the gate has said no that often.
	waitFor(t, "the gate asked for the whole burst and the reply", func() bool { return int(refused.Load()) >= len(schedule)+1 })
	replies, sent, _ := c.snapshot()
	if len(replies) != 0 || len(sent) != 0 {
		t.Errorf("gate closed: %d replies, %d announcements; want none", len(replies), len(sent))
	}
	open.Store(true)
	ask(c, request{Target: a[0], SenderMAC: theirMAC})
	if replies, _, _ := c.snapshot(); len(replies) != 1 {
		t.Errorf("gate open again: %d replies, want 1", len(replies))
	}
}

// TestResponderQuiet checks that a quiet address is answered but not
// announced, that going quiet stops a burst under way, and that leaving
// quiet announces again.
func TestResponderQuiet(t *testing.T) {
	r, n := startResponder(t, []time.Duration{0, 40 * time.Millisecond, 80 * time.Millisecond})
	a := addrs("198.51.100.1")[0]
	c := n.conn(t, false)
	r.Set(map[netip.Addr]Ownership{a: {}})
	waitFor(t, "first announcement", func() bool { _, sent, _ := c.snapshot(); return len(sent) >= 1 })
	r.Set(map[netip.Addr]Ownership{a: {Quiet: true}})
	_, before, _ := c.snapshot()
	// Twice the rest of the schedule: any announcement still due would be
	// seen.
	holds(t, "no announcement once quiet", 160*time.Millisecond, func() error {
		if _, sent, _ := c.snapshot(); len(sent) != len(before) {
			return fmt.Errorf("%d announcements, had %d before going quiet", len(sent), len(before))
		}
		return nil
	})
	ask(c, request{Target: a, SenderMAC: theirMAC})
	if replies, _, _ := c.snapshot(); len(replies) != 1 {
		t.Errorf("quiet: %d replies, want 1", len(replies))
	}
	r.Set(map[netip.Addr]Ownership{a: {}})
	waitFor(t, "announcements after leaving quiet", func() bool { _, s, _ := c.snapshot(); return len(s) >= len(before)+3 })
	// A quiet gain is never announced.
	b := addrs("198.51.100.2")[0]
	r.Set(map[netip.Addr]Ownership{a: {}, b: {Quiet: true}})
	holds(t, "a quiet gain not announced", 160*time.Millisecond, func() error {
		if _, sent, _ := c.snapshot(); slices.Contains(sent, b) {
			return fmt.Errorf("quiet gain announced: %v", sent)
		}
		return nil
	})
}

// TestResponderYields checks that a quiet address stops being answered
// once another node announces it, and that an owned one does not.
func TestResponderYields(t *testing.T) {
	v4, v6 := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("2001:db8::1")
	tests := []struct {
		name  string
		quiet bool
		from  net.HardwareAddr
		want  int // replies to the request after the announcement
	}{
		{name: "quiet, another node announces", quiet: true, from: theirMAC, want: 0},
		{name: "quiet, its own announcement echoed", quiet: true, from: ourMAC, want: 1},
		{name: "owned, another node announces", from: theirMAC, want: 1},
	}
	for _, tc := range tests {
		for _, a := range []netip.Addr{v4, v6} {
			t.Run(tc.name+"/"+a.String(), func(t *testing.T) {
				r, n := startResponder(t, []time.Duration{0})
				c := n.conn(t, a.Is6())
				r.Set(map[netip.Addr]Ownership{a: {Quiet: tc.quiet}})
				ask(c, request{Target: a, SenderMAC: tc.from, Announce: true})
				ask(c, request{Target: a, SenderMAC: theirMAC})
				if replies, _, _ := c.snapshot(); len(replies) != tc.want {
					t.Errorf("%d replies, want %d", len(replies), tc.want)
				}
				// Owned again (the handover was cancelled): answered.
				r.Set(map[netip.Addr]Ownership{a: {}})
				ask(c, request{Target: a, SenderMAC: theirMAC})
				if replies, _, _ := c.snapshot(); len(replies) != tc.want+1 {
					t.Errorf("owned again: %d replies, want %d", len(replies), tc.want+1)
				}
			})
		}
	}
}

// holds checks cond every millisecond for the whole window and fails at
// the first error: a negative check that sees misbehaviour starting at any
// point of the window, not just at its end.
func holds(t *testing.T, what string, window time.Duration, cond func() error) {
	t.Helper()
	for start := time.Now(); time.Since(start) < window; time.Sleep(time.Millisecond) {
		if err := cond(); err != nil {
			t.Fatalf("%s: after %v: %v", what, time.Since(start).Round(time.Millisecond), err)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestResponderAnnounces(t *testing.T) {
	schedule := []time.Duration{0, 5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond}
	tests := []struct {
		name  string
		owned []netip.Addr
		v4    int // announcements expected on the ARP socket
		v6    int
	}{
		{name: "one v4", owned: addrs("198.51.100.1"), v4: 4},
		{name: "one v6", owned: addrs("2001:db8::1"), v6: 4},
		{name: "dual stack", owned: addrs("198.51.100.1", "198.51.100.2", "2001:db8::1"), v4: 8, v6: 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, n := startResponder(t, schedule)
			start := time.Now()
			r.SetOwned(tc.owned)
			c4, c6 := n.conn(t, false), n.conn(t, true)
			waitFor(t, "announcements", func() bool {
				_, s4, _ := c4.snapshot()
				_, s6, _ := c6.snapshot()
				return len(s4) >= tc.v4 && len(s6) >= tc.v6
			})
			if el := time.Since(start); el < schedule[len(schedule)-1] {
				t.Errorf("burst took %v, shorter than the schedule", el)
			}
			// Setting the same set again must not start another burst.
			r.SetOwned(tc.owned)
			holds(t, "no second burst", 5*schedule[len(schedule)-1], func() error {
				_, s4, _ := c4.snapshot()
				_, s6, _ := c6.snapshot()
				if len(s4) != tc.v4 || len(s6) != tc.v6 {
					return fmt.Errorf("announcements: v4 %d v6 %d, want %d %d", len(s4), len(s6), tc.v4, tc.v6)
				}
				return nil
			})
		})
	}
}

func TestResponderLossCancelsAnnouncements(t *testing.T) {
	schedule := []time.Duration{0, 100 * time.Millisecond, 200 * time.Millisecond}
	r, n := startResponder(t, schedule)
	c := n.conn(t, false)
	r.SetOwned(addrs("198.51.100.1"))
	waitFor(t, "first announcement", func() bool { _, s, _ := c.snapshot(); return len(s) >= 1 })
	// SetOwned cancels under the lock the burst sends under: what was
	// sent when it returns is final.
	r.SetOwned(nil)
	_, sent, _ := c.snapshot()
	if len(sent) == len(schedule) {
		t.Fatalf("the whole burst went before the loss (the machine stalled for %v); nothing left to cancel", schedule[1])
	}
	holds(t, "the burst stops when the address is lost", 2*schedule[len(schedule)-1], func() error {
		if _, s, _ := c.snapshot(); len(s) != len(sent) {
			return fmt.Errorf("%d announcements, %d when the address was lost", len(s), len(sent))
		}
		return nil
	})
}

func TestResponderSolicitedNodeGroups(t *testing.T) {
	// 2001:db8::1:1 and 2001:db8:1::1:1 share ff02::1:ff01:1.
	shared := netip.MustParseAddr("ff02::1:ff01:1")
	other := netip.MustParseAddr("ff02::1:ff00:2")
	steps := []struct {
		owned []netip.Addr
		want  []netip.Addr
	}{
		{owned: addrs("2001:db8::1:1"), want: []netip.Addr{shared}},
		{owned: addrs("2001:db8::1:1", "2001:db8:1::1:1", "2001:db8::2", "198.51.100.1"), want: []netip.Addr{other, shared}},
		{owned: addrs("2001:db8:1::1:1"), want: []netip.Addr{shared}},
		{owned: nil, want: nil},
	}
	r, n := startResponder(t, []time.Duration{0})
	c := n.conn(t, true)
	for i, s := range steps {
		r.SetOwned(s.owned)
		if _, _, got := c.snapshot(); !slices.Equal(got, s.want) {
			t.Errorf("step %d: groups %v, want %v", i, got, s.want)
		}
	}
}

func TestResponderOwnedBeforeRun(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n := newFakeNet()
	r := newResponder(ResponderConfig{Announce: []time.Duration{0}, Rescan: time.Hour}, n.dial, n.interfaces)
	r.SetOwned(addrs("198.51.100.1", "2001:db8::1"))
	go func() { _ = r.Run(ctx) }()
	c4, c6 := n.conn(t, false), n.conn(t, true)
	waitFor(t, "announcements on the new links", func() bool {
		_, s4, _ := c4.snapshot()
		_, s6, g6 := c6.snapshot()
		return len(s4) == 1 && len(s6) == 1 && len(g6) == 1
	})
	if got, want := r.Links(), []string{"eth0/arp", "eth0/ndp"}; !slices.Equal(got, want) {
		t.Errorf("Links() = %v, want %v", got, want)
	}
	if err := r.Run(ctx); err == nil {
		t.Error("second Run succeeded, want an error")
	}
}

func TestResponderInterfaceFilter(t *testing.T) {
	up := net.FlagUp
	ifs := []net.Interface{
		{Name: "lo", Flags: up | net.FlagLoopback, HardwareAddr: ourMAC},
		{Name: "eth0", Flags: up, HardwareAddr: ourMAC},
		{Name: "eth1", Flags: 0, HardwareAddr: ourMAC},
		{Name: "bond0", Flags: up, HardwareAddr: ourMAC},
		{Name: "wg0", Flags: up}, // no MAC
		{Name: "eth2", Flags: up, HardwareAddr: ourMAC},
	}
	tests := []struct {
		filter []string
		want   []string
	}{
		{filter: nil, want: []string{"eth0", "bond0", "eth2"}},
		{filter: []string{"eth*"}, want: []string{"eth0", "eth2"}},
		{filter: []string{"bond0", "lo", "wg0"}, want: []string{"bond0"}},
		{filter: []string{"eth[2-9]"}, want: []string{"eth2"}},
		{filter: []string{"["}, want: nil}, // bad pattern matches nothing
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.filter), func(t *testing.T) {
			r := NewResponder(ResponderConfig{Interfaces: tc.filter})
			var got []string
			for _, ifi := range ifs {
				if r.matches(ifi) {
					got = append(got, ifi.Name)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestResponderRetriesFailedDial checks that a socket that failed to open
// (a link-local address still tentative) is retried within seconds, not at
// the next rescan (an hour here).
func TestResponderRetriesFailedDial(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n := newFakeNet()
	n.failV6 = 1
	r := newResponder(ResponderConfig{Rescan: time.Hour}, n.dial, n.interfaces)
	go func() { _ = r.Run(ctx) }()
	start := time.Now()
	n.conn(t, true)
	if d := time.Since(start); d < retryDial/2 {
		t.Errorf("NDP socket opened after %v although the first dial failed", d)
	}
}

func TestResponderLinkGoesAway(t *testing.T) {
	r, n := startResponder(t, []time.Duration{0})
	n.mu.Lock()
	n.ifs = n.ifs[:1]
	n.mu.Unlock()
	if _, err := r.syncLinks(); err != nil {
		t.Fatal(err)
	}
	if got := r.Links(); len(got) != 0 {
		t.Errorf("Links() = %v after the interface went away", got)
	}
	if _, err := n.conn(t, false).Read(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("socket not closed: %v", err)
	}
}

func TestResponderPerAddressInterfaces(t *testing.T) {
	v4 := netip.MustParseAddr("198.51.100.1")
	v6 := netip.MustParseAddr("2001:db8::1")
	tests := []struct {
		name   string
		ifaces []string
		want   bool // answered on eth0, the fake's only interface
	}{
		{name: "every interface", want: true},
		{name: "by name", ifaces: []string{"eth0"}, want: true},
		{name: "by pattern", ifaces: []string{"eth*"}, want: true},
		{name: "another interface", ifaces: []string{"bond0"}},
		{name: "another pattern", ifaces: []string{"enp*"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, n := startResponder(t, []time.Duration{0})
			r.SetOwnedOn(map[netip.Addr][]string{v4: tc.ifaces, v6: tc.ifaces})
			for _, a := range []netip.Addr{v4, v6} {
				c := n.conn(t, a.Is6())
				ask(c, request{Target: a, SenderMAC: theirMAC})
				replies, _, _ := c.snapshot()
				if got := len(replies) > 0; got != tc.want {
					t.Errorf("%s answered on eth0 = %v, want %v", a, got, tc.want)
				}
			}
			// Widening the interfaces of an owned address takes effect.
			r.SetOwnedOn(map[netip.Addr][]string{v4: nil})
			c := n.conn(t, false)
			ask(c, request{Target: v4, SenderMAC: theirMAC})
			if replies, _, _ := c.snapshot(); len(replies) == 0 {
				t.Errorf("%s not answered after its interfaces were widened", v4)
			}
		})
	}
}

// TestResponderDialErrorsLoggedOnce checks that a socket that keeps failing
// to open (a pod's veth without an address, on every retry) is logged as
// an error once, again only when its error changes, and forgotten once it
// opens.
func TestResponderDialErrorsLoggedOnce(t *testing.T) {
	var errs []string
	r := newResponder(ResponderConfig{}, nil, nil)
	r.log = logr.New(&errorSink{errs: &errs})
	k := linkKey{name: "veth1", index: 7}
	steps := []struct {
		err  error
		want int // error lines so far
	}{
		{errors.New("no IPv4 address available"), 1},
		{errors.New("no IPv4 address available"), 1},
		{errors.New("no IPv4 address available"), 1},
		{errors.New("interface is down"), 2},
		{nil, 2},
		{errors.New("interface is down"), 3},
	}
	for i, s := range steps {
		r.noteDial(k, s.err)
		if len(errs) != s.want {
			t.Fatalf("step %d (%v): %d error lines %q, want %d", i, s.err, len(errs), errs, s.want)
		}
	}
}

// errorSink records the messages of Error calls.
type errorSink struct {
	logr.LogSink
	errs *[]string
}

func (s *errorSink) Init(logr.RuntimeInfo)          {}
func (s *errorSink) Enabled(int) bool               { return true }
func (s *errorSink) Info(int, string, ...any)       {}
func (s *errorSink) WithValues(...any) logr.LogSink { return s }
func (s *errorSink) WithName(string) logr.LogSink   { return s }
func (s *errorSink) Error(err error, msg string, _ ...any) {
	*s.errs = append(*s.errs, msg+": "+err.Error())
}
