package bfd

import (
	"errors"
	"fmt"
	"time"
)

// Timers are a session's configured intervals and multiplier.
type Timers struct {
	// MinTx is the Desired Min TX Interval once the session is Up.
	MinTx time.Duration
	// MinRx is the Required Min RX Interval: how fast the neighbor may
	// send.
	MinRx time.Duration
	// Multiplier is the Detect Mult: the session goes down after this many
	// intervals without a packet.
	Multiplier uint8
}

// Default timers, as FRR's: 300 ms both ways, multiplier 3.
const (
	DefaultMinTx      = 300 * time.Millisecond
	DefaultMinRx      = 300 * time.Millisecond
	DefaultMultiplier = 3
)

// Bounds of the configured timers. The RFC allows microseconds; a
// userspace implementation on a shared node cannot keep intervals much
// under 10 ms, and FRR's range is the same.
const (
	MinInterval = 10 * time.Millisecond
	MaxInterval = 60 * time.Second
)

// slowTx is the Desired Min TX Interval while the session is not Up
// (RFC 5880 §6.8.3: not less than one second).
const slowTx = time.Second

// Validate checks t; zero fields are not allowed (see WithDefaults).
func (t Timers) Validate() error {
	for _, d := range []time.Duration{t.MinTx, t.MinRx} {
		if d < MinInterval || d > MaxInterval {
			return fmt.Errorf("timers: interval %v out of range [%v, %v]", d, MinInterval, MaxInterval)
		}
	}
	if t.Multiplier == 0 {
		return errors.New("timers: multiplier 0")
	}
	return nil
}

// WithDefaults returns t with zero fields set to the defaults.
func (t Timers) WithDefaults() Timers {
	if t.MinTx == 0 {
		t.MinTx = DefaultMinTx
	}
	if t.MinRx == 0 {
		t.MinRx = DefaultMinRx
	}
	if t.Multiplier == 0 {
		t.Multiplier = DefaultMultiplier
	}
	return t
}

// Transition is a change of a session's state.
type Transition struct {
	From, To State
	// Diag is the local diagnostic after the change: why the session went
	// down, for a change from Up.
	Diag Diag
	// RemoteDiag is the diagnostic of the last packet received (what the
	// neighbor says).
	RemoteDiag Diag
}

// Output is what a Machine asks its caller to do after a step.
type Output struct {
	// Send holds the packets to send now, in order.
	Send []Packet
	// Transition is set when the session's state changed.
	Transition *Transition
}

// Machine is the state of one BFD session (RFC 5880 §6.8.1) and its
// timers. It is pure: the caller gives it the time and the packets that
// arrive, calls Advance at NextEvent, and sends what it returns. It is not
// safe for concurrent use.
type Machine struct {
	timers Timers
	// jitter returns a number in [0, 1); see txJitter.
	jitter func() float64

	state, remoteState State
	localDiscr         uint32
	remoteDiscr        uint32
	localDiag          Diag
	remoteDiag         Diag
	remoteDemand       bool
	remoteMult         uint8
	remoteMinRx        time.Duration // bfd.RemoteMinRxInterval
	remoteTx           time.Duration // the neighbor's last Desired Min TX

	// advTx and advRx are the intervals sent in packets; useTx and useRx
	// are those in force for this side's transmissions and detection time.
	// They differ only during a Poll Sequence (§6.8.3).
	advTx, advRx, useTx, useRx time.Duration
	polling                    bool

	nextTx   time.Time // zero: no periodic transmission scheduled
	detectAt time.Time // zero: no detection timer running
}

// NewMachine returns a session in the Down state with discriminator discr
// (non-zero, unique on this system) and timers t (validated, defaults
// applied). jitter returns numbers in [0, 1); nil means none (always 0,
// the shortest interval). The first packet is due at now.
func NewMachine(now time.Time, discr uint32, t Timers, jitter func() float64) *Machine {
	if jitter == nil {
		jitter = func() float64 { return 0 }
	}
	m := &Machine{
		timers:      t,
		jitter:      jitter,
		state:       StateDown,
		remoteState: StateDown,
		localDiscr:  discr,
		remoteMinRx: time.Microsecond, // §6.8.1: initialised to 1
		advTx:       max(slowTx, t.MinTx),
		advRx:       t.MinRx,
		nextTx:      now,
	}
	m.useTx, m.useRx = m.advTx, m.advRx
	return m
}

// State returns the session state.
func (m *Machine) State() State { return m.state }

// LocalDiscr returns the session's discriminator.
func (m *Machine) LocalDiscr() uint32 { return m.localDiscr }

// Status is a snapshot of a session for reports and tests.
type Status struct {
	State, RemoteState State
	LocalDiag          Diag
	RemoteDiag         Diag
	LocalDiscr         uint32
	RemoteDiscr        uint32
	// TxInterval is the interval between periodic packets (before
	// jitter); zero when none are sent.
	TxInterval time.Duration
	// DetectTime is the detection time in force; zero before the first
	// packet.
	DetectTime time.Duration
	Polling    bool
}

// Status returns a snapshot of the session.
func (m *Machine) Status() Status {
	st := Status{State: m.state, RemoteState: m.remoteState, LocalDiag: m.localDiag, RemoteDiag: m.remoteDiag,
		LocalDiscr: m.localDiscr, RemoteDiscr: m.remoteDiscr, DetectTime: m.detectTime(), Polling: m.polling}
	if m.transmits() {
		st.TxInterval = m.txInterval()
	}
	return st
}

// NextEvent returns when Advance must next be called: the next periodic
// transmission or the expiry of the detection time, whichever is first;
// zero when neither is pending.
func (m *Machine) NextEvent() time.Time {
	next := m.detectAt
	if !m.nextTx.IsZero() && (next.IsZero() || m.nextTx.Before(next)) {
		next = m.nextTx
	}
	return next
}

// txInterval is the periodic transmission interval before jitter (§6.8.7).
func (m *Machine) txInterval() time.Duration { return max(m.useTx, m.remoteMinRx) }

// transmits reports whether periodic packets are to be sent (§6.8.7): not
// to a neighbor that asked for none (Required Min RX zero), nor in Demand
// mode.
func (m *Machine) transmits() bool {
	if m.remoteMinRx == 0 {
		return false
	}
	return !m.remoteDemand || m.state != StateUp || m.remoteState != StateUp
}

// txJitter is the jittered interval: 75 to 100 % of the interval, or 75
// to 90 % with a multiplier of 1 (§6.8.7).
func (m *Machine) txJitter() time.Duration {
	span := 0.25
	if m.timers.Multiplier == 1 {
		span = 0.15
	}
	return time.Duration(float64(m.txInterval()) * (0.75 + span*m.jitter()))
}

// detectTime is the detection time in asynchronous mode (§6.8.4): the
// neighbor's multiplier times the larger of our Required Min RX and its
// Desired Min TX; zero before the neighbor's first packet.
func (m *Machine) detectTime() time.Duration {
	if m.remoteMult == 0 {
		return 0
	}
	return time.Duration(m.remoteMult) * max(m.useRx, m.remoteTx)
}

// packet is the next packet to send (§6.8.7).
func (m *Machine) packet(final bool) Packet {
	return Packet{
		Diag:          m.localDiag,
		State:         m.state,
		Poll:          m.polling && !final,
		Final:         final,
		DetectMult:    m.timers.Multiplier,
		MyDiscr:       m.localDiscr,
		YourDiscr:     m.remoteDiscr,
		DesiredMinTx:  m.advTx,
		RequiredMinRx: m.advRx,
	}
}

// Advance fires the timers due at now: the detection time's expiry
// (§6.8.4) and the periodic transmission (§6.8.7).
func (m *Machine) Advance(now time.Time) Output {
	var out Output
	if !m.detectAt.IsZero() && !now.Before(m.detectAt) {
		m.detectAt = time.Time{}
		switch m.state {
		case StateInit, StateUp:
			out.Transition = m.setState(StateDown, DiagControlDetectExpired)
		case StateDown:
			// §6.8.1: the neighbor is gone; forget it.
			m.remoteDiscr = 0
			m.remoteState = StateDown
		}
	}
	if !m.transmits() {
		m.nextTx = time.Time{}
		return out
	}
	if m.nextTx.IsZero() {
		m.nextTx = now.Add(m.txJitter())
	}
	if !now.Before(m.nextTx) {
		out.Send = append(out.Send, m.packet(false))
		m.nextTx = now.Add(m.txJitter())
	}
	return out
}

// Receive processes a packet addressed to this session (the caller has
// matched it by Your Discriminator or, when that is zero, by addresses),
// following §6.8.6. Packets with an authentication section are discarded:
// the session has no authentication.
func (m *Machine) Receive(now time.Time, p Packet) Output {
	if len(p.Auth) > 0 || (p.YourDiscr != 0 && p.YourDiscr != m.localDiscr) {
		return Output{}
	}
	m.remoteDiscr = p.MyDiscr
	m.remoteState = p.State
	m.remoteDemand = p.Demand
	m.remoteDiag = p.Diag
	m.remoteMult = p.DetectMult
	m.remoteTx = p.DesiredMinTx
	oldInterval := m.txInterval()
	m.remoteMinRx = p.RequiredMinRx
	if p.Final && m.polling {
		m.polling = false
		m.useTx, m.useRx = m.advTx, m.advRx
		m.startPoll() // a change made during the sequence
	}
	if m.state == StateAdminDown {
		return Output{}
	}
	m.detectAt = now.Add(m.detectTime())
	var out Output
	switch {
	case p.State == StateAdminDown:
		if m.state != StateDown {
			out.Transition = m.setState(StateDown, DiagNeighborDown)
		}
	case m.state == StateDown && p.State == StateDown:
		out.Transition = m.setState(StateInit, DiagNone)
	case m.state == StateDown && p.State == StateInit, m.state == StateInit && p.State != StateDown:
		out.Transition = m.setState(StateUp, DiagNone)
	case m.state == StateUp && p.State == StateDown:
		out.Transition = m.setState(StateDown, DiagNeighborDown)
	}
	if p.Poll {
		// §6.8.6: answer with Final at once, outside the periodic schedule.
		out.Send = append(out.Send, m.packet(true))
	}
	m.reschedule(now, oldInterval)
	return out
}

// reschedule moves the next periodic packet earlier when the interval
// shrank, so that a faster rate takes effect at once, and starts or stops
// periodic transmission as transmits says.
func (m *Machine) reschedule(now time.Time, oldInterval time.Duration) {
	if !m.transmits() {
		m.nextTx = time.Time{}
		return
	}
	if m.nextTx.IsZero() || m.txInterval() < oldInterval && m.nextTx.After(now.Add(m.txInterval())) {
		m.nextTx = now.Add(m.txJitter())
	}
}

// setState changes the session's state and the timers that depend on it:
// the slow start of §6.8.3 while not Up, the configured interval (by a
// Poll Sequence) once Up.
func (m *Machine) setState(s State, diag Diag) *Transition {
	tr := &Transition{From: m.state, To: s, Diag: diag, RemoteDiag: m.remoteDiag}
	m.state = s
	if diag != DiagNone || s == StateUp {
		m.localDiag = diag
	}
	if s == StateUp {
		m.startPoll()
	} else {
		// Not Up: the new values apply at once, without a poll.
		m.polling = false
		m.advTx, m.advRx = max(slowTx, m.timers.MinTx), m.timers.MinRx
		m.useTx, m.useRx = m.advTx, m.advRx
	}
	tr.Diag = m.localDiag
	return tr
}

// startPoll begins a Poll Sequence if the advertised intervals differ from
// the configured ones and none is under way (§6.5, §6.8.3). A faster
// transmission and a slower reception take effect at once; a slower
// transmission and a faster reception only once the neighbor has
// answered with Final.
func (m *Machine) startPoll() {
	if m.polling || m.state != StateUp {
		return
	}
	if m.advTx == m.timers.MinTx && m.advRx == m.timers.MinRx {
		return
	}
	m.advTx, m.advRx = m.timers.MinTx, m.timers.MinRx
	m.useTx = min(m.useTx, m.advTx)
	m.useRx = max(m.useRx, m.advRx)
	m.polling = true
}

// SetTimers changes the session's timers (validated, defaults applied): a
// session that is Up negotiates them with a Poll Sequence; otherwise they
// apply at once.
func (m *Machine) SetTimers(now time.Time, t Timers) Output {
	old := m.txInterval()
	m.timers = t
	if m.state == StateUp {
		m.startPoll()
	} else if m.state != StateAdminDown {
		m.advTx, m.advRx = max(slowTx, t.MinTx), t.MinRx
		m.useTx, m.useRx = m.advTx, m.advRx
	}
	m.reschedule(now, old)
	if m.polling {
		// Start the sequence now rather than at the next interval.
		return Output{Send: []Packet{m.packet(false)}}
	}
	return Output{}
}

// AdminDown puts the session in AdminDown (§6.8.16), as when it is
// deconfigured, and returns the packet that tells the neighbor, which
// must not take it for a failure. The session stays in AdminDown.
func (m *Machine) AdminDown() Output {
	tr := &Transition{From: m.state, To: StateAdminDown, Diag: DiagAdminDown, RemoteDiag: m.remoteDiag}
	m.state, m.localDiag = StateAdminDown, DiagAdminDown
	m.polling = false
	m.detectAt = time.Time{}
	return Output{Send: []Packet{m.packet(false)}, Transition: tr}
}
