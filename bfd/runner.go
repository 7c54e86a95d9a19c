package bfd

import (
	"container/heap"
	"sync"
	"time"

	"github.com/go-logr/logr"
)

// adminDownPackets is how many AdminDown packets a removed session sends,
// one per transmission interval, before it ends: enough for a neighbor to
// see one though a packet or two is lost (§6.8.16 asks for a detection
// time's worth).
const adminDownPackets = 3

// runner is one session: its Machine, and how to send and report. Received
// packets are processed by the transport's reading goroutine, timers by
// the scheduler's; both hold mu.
type runner struct {
	cfg  Session
	send Sender
	log  logr.Logger
	note *notifier

	mu      sync.Mutex
	m       *Machine
	removed bool

	// index and due belong to the scheduler (under its lock).
	index int
	due   time.Time
}

func (r *runner) status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m.Status()
}

// step runs f on the machine at the current time, sends what it returns
// and reports its transition, and returns when the machine wants to be
// advanced next (zero: never).
func (r *runner) step(f func(*Machine, time.Time) Output) time.Time {
	r.mu.Lock()
	if r.removed {
		r.mu.Unlock()
		return time.Time{}
	}
	out := f(r.m, time.Now())
	next := r.m.NextEvent()
	r.mu.Unlock()
	r.apply(out)
	return next
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

// shutdown takes the session AdminDown and tells the neighbor for a few
// transmission intervals, then closes its socket.
func (r *runner) shutdown() {
	defer r.send.Close()
	r.mu.Lock()
	out := r.m.AdminDown()
	r.removed = true
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

// grid is the scheduler's resolution: a session's timer fires up to this
// much late. Next to the 10 ms shortest interval it is small, and next to
// 300 ms negligible; it lets one wake-up serve many sessions.
const grid = 2 * time.Millisecond

// scheduler advances every session's machine when it is due, from one
// goroutine and one timer: with many sessions a wake-up serves all those
// due, which costs far less than a goroutine and a timer per session.
type scheduler struct {
	mu    sync.Mutex
	queue runQueue
	wake  chan struct{}
	stop  chan struct{}
	done  chan struct{}
}

func newScheduler() *scheduler {
	s := &scheduler{wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go s.loop()
	return s
}

// schedule queues r to be advanced at next, or earlier if it already is
// (a timer that fires early finds nothing due and is set again, so that
// the goroutines that step a runner never need to agree on its due time).
// A zero next queues nothing: a removed session, or one with no timer
// running, which the next packet received schedules again.
func (s *scheduler) schedule(r *runner, next time.Time) {
	if next.IsZero() {
		return
	}
	s.mu.Lock()
	switch {
	case r.index < 0:
		r.due = next
		heap.Push(&s.queue, r)
	case next.Before(r.due):
		r.due = next
		heap.Fix(&s.queue, r.index)
	}
	earliest := s.queue[0] == r
	s.mu.Unlock()
	if earliest {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

func (s *scheduler) loop() {
	defer close(s.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var due []*runner
	for {
		select {
		case <-s.stop:
			return
		case <-s.wake:
		case <-timer.C:
		}
		now := time.Now()
		due = due[:0]
		s.mu.Lock()
		for len(s.queue) > 0 && !s.queue[0].due.After(now) {
			due = append(due, heap.Pop(&s.queue).(*runner))
		}
		s.mu.Unlock()
		for _, r := range due {
			s.schedule(r, r.step((*Machine).Advance))
		}
		s.mu.Lock()
		wait := time.Hour
		if len(s.queue) > 0 {
			// Round up to the grid, so that one wake-up serves every
			// session due within it.
			wait = time.Until(s.queue[0].due.Add(grid - 1).Truncate(grid))
		}
		s.mu.Unlock()
		timer.Reset(wait)
	}
}

func (s *scheduler) close() {
	close(s.stop)
	<-s.done
}

// runQueue is a min-heap of runners by due time.
type runQueue []*runner

func (q runQueue) Len() int           { return len(q) }
func (q runQueue) Less(i, j int) bool { return q[i].due.Before(q[j].due) }
func (q runQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index, q[j].index = i, j
}
func (q *runQueue) Push(x any) {
	r := x.(*runner)
	r.index = len(*q)
	*q = append(*q, r)
}
func (q *runQueue) Pop() any {
	old := *q
	r := old[len(old)-1]
	old[len(old)-1] = nil
	r.index = -1
	*q = old[:len(old)-1]
	return r
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
