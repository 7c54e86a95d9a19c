package bfd

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berthlb/berth/internal/testwait"
)

// wire joins two memory transports: what one end sends, the other
// receives, unless cut.
type wire struct {
	cut  atomic.Bool
	ends [2]*memTransport
}

type memTransport struct {
	w    *wire
	self int
	addr netip.Addr
	// in is delivered from a goroutine of its own, asynchronously as a
	// socket would.
	in chan Received
}

func newWire(a, b netip.Addr) *wire {
	w := &wire{}
	w.ends[0] = &memTransport{w: w, self: 0, addr: a}
	w.ends[1] = &memTransport{w: w, self: 1, addr: b}
	return w
}

func (m *memTransport) Receive(f func(Received)) {
	m.in = make(chan Received, 64)
	go func() {
		for r := range m.in {
			f(r)
		}
	}()
}
func (m *memTransport) Close() error { return nil }
func (m *memTransport) Open(_, peer netip.Addr, multihop bool) (Sender, netip.Addr, error) {
	other := m.w.ends[1-m.self]
	if other.addr != peer {
		return nil, netip.Addr{}, errors.New("no route")
	}
	return memSender{m, other, multihop}, m.addr, nil
}

type memSender struct {
	from, to *memTransport
	multihop bool
}

func (s memSender) Send(b []byte) error {
	if s.from.w.cut.Load() || s.to.in == nil {
		return nil
	}
	select {
	case s.to.in <- Received{Data: append([]byte(nil), b...), From: s.from.addr, To: s.to.addr, Multihop: s.multihop}:
	default: // a full socket buffer drops
	}
	return nil
}
func (memSender) Close() error { return nil }

// changes records the Changes a server reports.
type changes struct {
	mu  sync.Mutex
	got []Change
}

func (c *changes) add(ch Change) { c.mu.Lock(); c.got = append(c.got, ch); c.mu.Unlock() }

func (c *changes) wait(t testing.TB, d time.Duration, to State) Change {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		for i, ch := range c.got {
			if ch.To == to {
				c.got = c.got[i+1:]
				c.mu.Unlock()
				return ch
			}
		}
		c.mu.Unlock()
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("no change to %v within %v", to, d)
	return Change{}
}

func newTestServer(t *testing.T, tr Transport) (*Server, *changes) {
	t.Helper()
	c := &changes{}
	s, err := New(context.Background(), Options{Transport: tr, OnChange: c.add})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s, c
}

// TestServerPair runs two servers against each other: the sessions come
// Up, go Down within the detection time when the wire is cut, come back
// when it is mended, and a removed session is seen as AdminDown, not as a
// failure.
func TestServerPair(t *testing.T) {
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	w := newWire(a, b)
	sa, ca := newTestServer(t, w.ends[0])
	sb, cb := newTestServer(t, w.ends[1])
	tm := Timers{MinTx: 20 * time.Millisecond, MinRx: 20 * time.Millisecond, Multiplier: 3}
	ctx := context.Background()
	if err := sa.Set(ctx, []Session{{Name: "b", Peer: b, Timers: tm}}); err != nil {
		t.Fatal(err)
	}
	if err := sb.Set(ctx, []Session{{Name: "a", Peer: a, Timers: tm}}); err != nil {
		t.Fatal(err)
	}
	// Slow start: a packet a second at most until Up.
	ca.wait(t, 5*time.Second, StateUp)
	cb.wait(t, 5*time.Second, StateUp)
	testwait.Eventually(t, time.Second, func() error {
		if st := sa.Status()[0]; st.Polling || st.TxInterval != 20*time.Millisecond || st.DetectTime != 60*time.Millisecond {
			return fmt.Errorf("%+v", st)
		}
		return nil
	})

	cut := time.Now()
	w.cut.Store(true)
	ch := ca.wait(t, time.Second, StateDown)
	if took := time.Since(cut); took > 200*time.Millisecond || ch.Diag != DiagControlDetectExpired {
		t.Errorf("down after %v with %v, want within about 60ms, detection time expired", took, ch.Diag)
	}
	cb.wait(t, time.Second, StateDown)
	w.cut.Store(false)
	ca.wait(t, 5*time.Second, StateUp)
	cb.wait(t, 5*time.Second, StateUp)

	// Timers renegotiated while Up, without going down.
	slower := Timers{MinTx: 50 * time.Millisecond, MinRx: 50 * time.Millisecond, Multiplier: 3}
	if err := sa.Set(ctx, []Session{{Name: "b", Peer: b, Timers: slower}}); err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, time.Second, func() error {
		if st := sb.Status()[0]; st.DetectTime != 150*time.Millisecond || st.State != StateUp {
			return fmt.Errorf("b's view: %+v", st)
		}
		return nil
	})

	if err := sa.Set(ctx, nil); err != nil {
		t.Fatal(err)
	}
	ch = cb.wait(t, time.Second, StateDown)
	if ch.Diag != DiagNeighborDown || ch.RemoteDiag != DiagAdminDown {
		t.Errorf("b saw %+v, want neighbor down with remote diag AdminDown", ch)
	}
}

// TestSetRejects: invalid sessions fail alone.
func TestSetRejects(t *testing.T) {
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	s, _ := newTestServer(t, newWire(a, b).ends[0])
	err := s.Set(context.Background(), []Session{
		{Name: "ok", Peer: b},
		{Name: "fast", Peer: b, Timers: Timers{MinTx: time.Millisecond}},
		{Name: "nopeer"},
		{Name: "same", Peer: b},
		{Name: "other", Peer: a},
	})
	if err == nil {
		t.Fatal("no error")
	}
	if st := s.Status(); len(st) != 1 || st[0].Name != "ok" {
		t.Errorf("sessions %+v, want only ok", st)
	}
	t.Log(err)
}
