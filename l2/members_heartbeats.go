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

// send encodes the heartbeat build returns and sends it to every other node
// with a known address.
func (m *Members) send(build func(*liveness) heartbeat) {
	m.mu.Lock()
	msgs := m.live.encode(build(m.live))
	to := make([]*memberlist.Node, 0, len(m.addrs))
	for _, n := range m.addrs {
		to = append(to, n)
	}
	m.mu.Unlock()
	for _, n := range to {
		for _, b := range msgs {
			_ = m.ml.SendBestEffort(n, b)
		}
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
