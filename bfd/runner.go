package bfd

import (
	"sync"
	"time"

	"github.com/go-logr/logr"
)

// adminDownPackets is how many AdminDown packets a removed session sends,
// one per transmission interval, before it ends: enough for a neighbor to
// see one though a packet or two is lost (§6.8.16 asks for a detection
// time's worth).
const adminDownPackets = 3

// runner runs one session's Machine: it owns it, and feeds it the packets
// and timer changes that arrive and the time.
type runner struct {
	cfg  Session
	send Sender
	rx   chan Packet
	ctl  chan Timers
	stop chan struct{}
	done chan struct{}
	log  logr.Logger
	note *notifier

	mu sync.Mutex // guards m, for status
	m  *Machine
}

func (r *runner) setTimers(t Timers) {
	// Keep only the latest change.
	select {
	case <-r.ctl:
	default:
	}
	r.ctl <- t
}

func (r *runner) status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m.Status()
}

func (r *runner) run() {
	defer close(r.done)
	defer r.send.Close()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		var out Output
		select {
		case p := <-r.rx:
			out = r.step(func(now time.Time) Output { return r.m.Receive(now, p) })
		case t := <-r.ctl:
			out = r.step(func(now time.Time) Output { return r.m.SetTimers(now, t) })
		case <-timer.C:
			out = r.step(r.m.Advance)
		case <-r.stop:
			r.adminDown()
			return
		}
		r.apply(out)
		r.mu.Lock()
		next := r.m.NextEvent()
		r.mu.Unlock()
		timer.Stop()
		if !next.IsZero() {
			timer.Reset(time.Until(next))
		}
	}
}

// step runs f on the machine at the current time.
func (r *runner) step(f func(time.Time) Output) Output {
	r.mu.Lock()
	defer r.mu.Unlock()
	return f(time.Now())
}

// apply sends out's packets and reports its transition.
func (r *runner) apply(out Output) {
	for _, p := range out.Send {
		b, err := p.Marshal()
		if err == nil {
			err = r.send.Send(b)
		}
		if err != nil {
			// The path may be down; the detection time tells.
			r.log.V(2).Info("Sending a BFD packet failed", "error", err.Error())
		}
	}
	if tr := out.Transition; tr != nil {
		r.log.Info("BFD session state changed", "from", tr.From.String(), "to", tr.To.String(), "diag", tr.Diag.String(), "remoteDiag", tr.RemoteDiag.String())
		r.note.add(Change{Name: r.cfg.Name, Peer: r.cfg.Peer, At: time.Now(), Transition: *tr})
	}
}

// adminDown tells the neighbor that the session is deconfigured, for a few
// transmission intervals.
func (r *runner) adminDown() {
	r.mu.Lock()
	out := r.m.AdminDown()
	interval := max(r.m.Status().TxInterval, MinInterval)
	r.mu.Unlock()
	r.apply(out)
	for range adminDownPackets - 1 {
		time.Sleep(interval)
		r.mu.Lock()
		p := r.m.packet(false)
		r.mu.Unlock()
		r.apply(Output{Send: []Packet{p}})
	}
}

// notifier calls a function with each Change, in order, from its own
// goroutine, so that a slow consumer never delays a session's packets.
type notifier struct {
	f      func(Change)
	mu     sync.Mutex
	queue  []Change
	wake   chan struct{}
	closed chan struct{}
}

func newNotifier(f func(Change)) *notifier {
	n := &notifier{f: f, wake: make(chan struct{}, 1), closed: make(chan struct{})}
	if f != nil {
		go n.loop()
	}
	return n
}

func (n *notifier) add(c Change) {
	if n.f == nil {
		return
	}
	n.mu.Lock()
	n.queue = append(n.queue, c)
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

func (n *notifier) loop() {
	for {
		select {
		case <-n.wake:
		case <-n.closed:
			return
		}
		n.mu.Lock()
		q := n.queue
		n.queue = nil
		n.mu.Unlock()
		for _, c := range q {
			n.f(c)
		}
	}
}

func (n *notifier) close() { close(n.closed) }
