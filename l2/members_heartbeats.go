package l2

import (
	"fmt"
	"time"

	"github.com/hashicorp/memberlist"
)

// heartbeats sends a heartbeat to every other known node each
// HeartbeatInterval until stop is closed. They go over memberlist's
// transport, so they are authenticated and encrypted with the shared key.
func (m *Members) heartbeats(stop <-chan struct{}) {
	t := time.NewTicker(HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		case <-m.kick:
		}
		m.mu.Lock()
		silent := m.live.silent()
		m.mu.Unlock()
		if !silent {
			m.send(func(l *liveness) heartbeat { return l.heartbeat(time.Now()) })
		}
	}
}

// send encodes the heartbeat build returns and sends it to the other nodes
// with a known address that it must go to: every one of them, unless the
// record names voters (see liveness.outgoing).
func (m *Members) send(build func(*liveness) heartbeat) {
	m.mu.Lock()
	names := make([]string, 0, len(m.addrs))
	for n := range m.addrs {
		names = append(names, n)
	}
	msgs := m.live.outgoing(time.Now(), build(m.live), names)
	to := make([]*memberlist.Node, len(msgs))
	for i, msg := range msgs {
		to[i] = m.addrs[msg.to]
	}
	m.mu.Unlock()
	for i, msg := range msgs {
		_ = m.ml.SendBestEffort(to[i], msg.b)
	}
}

// WatchInterval is how often Members looks for changes that only the
// passing of time makes: a node's silence reaching DeadAfter, the lease
// running out, the hold-down ending.
const WatchInterval = 20 * time.Millisecond

// watch signals Changes when Members or Lease change by themselves.
func (m *Members) watch(stop <-chan struct{}) {
	t := time.NewTicker(WatchInterval)
	defer t.Stop()
	var last string
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		now := time.Now()
		m.mu.Lock()
		gen, ok := m.live.lease(now)
		state := fmt.Sprint(gen, ok, m.live.alive(now))
		m.mu.Unlock()
		if state != last {
			last = state
			m.notify()
		}
	}
}

// kickIfRegained, called with mu held, which it releases, makes the
// heartbeat loop send at once if the lease was just regained: the others
// must know that this node is back well before its hold-down ends.
func (m *Members) kickIfRegained() bool {
	regained := m.live.takeRegained()
	m.mu.Unlock()
	if regained {
		select {
		case m.kick <- struct{}{}:
		default:
		}
	}
	return regained
}
