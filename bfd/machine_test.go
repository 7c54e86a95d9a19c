package bfd

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const (
	ms        = time.Millisecond
	localID   = 0x1111
	remoteID  = 0x2222
	remoteMul = 3
)

var fast = Timers{MinTx: 300 * ms, MinRx: 300 * ms, Multiplier: 3}

// from is a packet from the neighbor in state s, with its intervals at
// 300 ms, addressed to us once it knows our discriminator.
func from(s State) Packet {
	p := Packet{State: s, DetectMult: remoteMul, MyDiscr: remoteID, YourDiscr: localID,
		DesiredMinTx: 300 * ms, RequiredMinRx: 300 * ms}
	if s == StateDown {
		p.YourDiscr = 0
	}
	return p
}

// machineIn returns a machine driven into state s at t0 by the neighbor's
// packets (Up through Down, then Init) or by AdminDown.
func machineIn(t *testing.T, s State) *Machine {
	t.Helper()
	m := NewMachine(t0, localID, fast, nil)
	switch s {
	case StateInit:
		m.Receive(t0, from(StateDown))
	case StateUp:
		m.Receive(t0, from(StateInit))
	case StateAdminDown:
		m.AdminDown()
	}
	if m.State() != s {
		t.Fatalf("could not drive the machine to %v: it is %v", s, m.State())
	}
	return m
}

// TestTransitions covers every row of RFC 5880 §6.8.6's state machine:
// each local state against each state a neighbor's packet may carry.
func TestTransitions(t *testing.T) {
	for _, tc := range []struct {
		local, remote State
		want          State
		diag          Diag // local diag after the packet
		changed       bool
	}{
		{StateDown, StateDown, StateInit, DiagNone, true},
		{StateDown, StateInit, StateUp, DiagNone, true},
		{StateDown, StateUp, StateDown, DiagNone, false},
		{StateDown, StateAdminDown, StateDown, DiagNone, false},
		{StateInit, StateDown, StateInit, DiagNone, false},
		{StateInit, StateInit, StateUp, DiagNone, true},
		{StateInit, StateUp, StateUp, DiagNone, true},
		{StateInit, StateAdminDown, StateDown, DiagNeighborDown, true},
		{StateUp, StateDown, StateDown, DiagNeighborDown, true},
		{StateUp, StateInit, StateUp, DiagNone, false},
		{StateUp, StateUp, StateUp, DiagNone, false},
		{StateUp, StateAdminDown, StateDown, DiagNeighborDown, true},
		// A session we took down administratively ignores the neighbor.
		{StateAdminDown, StateDown, StateAdminDown, DiagAdminDown, false},
		{StateAdminDown, StateInit, StateAdminDown, DiagAdminDown, false},
		{StateAdminDown, StateUp, StateAdminDown, DiagAdminDown, false},
		{StateAdminDown, StateAdminDown, StateAdminDown, DiagAdminDown, false},
	} {
		t.Run(tc.local.String()+"+"+tc.remote.String(), func(t *testing.T) {
			m := machineIn(t, tc.local)
			out := m.Receive(t0.Add(ms), from(tc.remote))
			if m.State() != tc.want || m.Status().LocalDiag != tc.diag {
				t.Errorf("state %v diag %v, want %v diag %v", m.State(), m.Status().LocalDiag, tc.want, tc.diag)
			}
			if got := out.Transition != nil; got != tc.changed {
				t.Fatalf("transition %+v, want one: %v", out.Transition, tc.changed)
			}
			if tc.changed && (out.Transition.From != tc.local || out.Transition.To != tc.want) {
				t.Errorf("transition %+v, want %v -> %v", out.Transition, tc.local, tc.want)
			}
		})
	}
}

// TestDiscarded: packets the session must ignore change nothing.
func TestDiscarded(t *testing.T) {
	for name, p := range map[string]Packet{
		"authenticated":     func() Packet { p := from(StateInit); p.Auth = []byte{1, 3, 0}; return p }(),
		"other session":     func() Packet { p := from(StateInit); p.YourDiscr = 99; return p }(),
		"down, wrong discr": func() Packet { p := from(StateDown); p.YourDiscr = 99; return p }(),
	} {
		t.Run(name, func(t *testing.T) {
			m := machineIn(t, StateDown)
			before := m.Status()
			if out := m.Receive(t0.Add(ms), p); out.Transition != nil || len(out.Send) > 0 {
				t.Errorf("output %+v for a discarded packet", out)
			}
			if diff := cmp.Diff(before, m.Status()); diff != "" {
				t.Errorf("state changed (-before +after):\n%s", diff)
			}
		})
	}
}

// TestDetection: a session in Init or Up goes Down with diag 1 once the
// detection time (the neighbor's multiplier times the larger of our
// Required Min RX and its Desired Min TX) passes without a packet; a Down
// session forgets the neighbor's discriminator instead.
func TestDetection(t *testing.T) {
	for _, tc := range []struct {
		name      string
		state     State
		remoteTx  time.Duration
		mult      uint8
		want      time.Duration
		wentDown  bool
		wantState State
	}{
		{"up, our rx larger", StateUp, 100 * ms, 3, 900 * ms, true, StateDown},
		{"up, their tx larger", StateUp, 500 * ms, 3, 1500 * ms, true, StateDown},
		{"up, their multiplier", StateUp, 300 * ms, 5, 1500 * ms, true, StateDown},
		{"init", StateInit, 1000 * ms, 3, 3000 * ms, true, StateDown},
		{"down", StateDown, 1000 * ms, 3, 3000 * ms, false, StateDown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := machineIn(t, StateDown)
			p := from(StateDown)
			if tc.state == StateUp {
				p = from(StateInit)
			}
			if tc.state == StateDown {
				p = from(StateUp) // ignored in Down, but starts the timer
			}
			p.DesiredMinTx, p.DetectMult = tc.remoteTx, tc.mult
			m.Receive(t0, p)
			if m.State() != tc.state {
				t.Fatalf("state %v, want %v", m.State(), tc.state)
			}
			if got := m.Status().DetectTime; got != tc.want {
				t.Errorf("detection time %v, want %v", got, tc.want)
			}
			if out := m.Advance(t0.Add(tc.want - time.Nanosecond)); out.Transition != nil {
				t.Fatalf("down before the detection time: %+v", out.Transition)
			}
			out := m.Advance(t0.Add(tc.want))
			if got := out.Transition != nil; got != tc.wentDown {
				t.Fatalf("transition %+v, want one: %v", out.Transition, tc.wentDown)
			}
			if tc.wentDown && (out.Transition.To != StateDown || out.Transition.Diag != DiagControlDetectExpired) {
				t.Errorf("transition %+v, want Down with %v", out.Transition, DiagControlDetectExpired)
			}
			if m.State() != tc.wantState {
				t.Errorf("state %v, want %v", m.State(), tc.wantState)
			}
			if !tc.wentDown && m.Status().RemoteDiscr != 0 {
				t.Errorf("remote discriminator %x kept after the detection time", m.Status().RemoteDiscr)
			}
		})
	}
}

// TestSlowStartAndPoll: not Up, packets go at most every second (§6.8.3);
// on reaching Up the configured 300 ms is negotiated with a Poll Sequence:
// packets carry P until the neighbor's Final, and the faster rate applies
// at once.
func TestSlowStartAndPoll(t *testing.T) {
	m := NewMachine(t0, localID, fast, nil)
	out := m.Advance(t0)
	if len(out.Send) != 1 || out.Send[0].DesiredMinTx != time.Second || out.Send[0].RequiredMinRx != 300*ms || out.Send[0].Poll {
		t.Fatalf("first packet %+v, want Desired Min TX 1s, Required Min RX 300ms, no poll", out.Send)
	}
	if got := m.NextEvent(); got != t0.Add(750*ms) { // 75% of 1s, jitter 0
		t.Errorf("next packet at %v, want +750ms", got.Sub(t0))
	}
	m.Receive(t0.Add(100*ms), from(StateInit))
	st := m.Status()
	if st.State != StateUp || !st.Polling || st.TxInterval != 300*ms {
		t.Fatalf("after Up: %+v, want Up, polling, 300ms", st)
	}
	out = m.Advance(m.NextEvent())
	if len(out.Send) != 1 || !out.Send[0].Poll || out.Send[0].DesiredMinTx != 300*ms {
		t.Fatalf("packet during the poll %+v, want P and 300ms", out.Send)
	}
	final := from(StateUp)
	final.Final = true
	m.Receive(t0.Add(400*ms), final)
	if m.Status().Polling {
		t.Fatal("still polling after Final")
	}
	out = m.Advance(m.NextEvent())
	if len(out.Send) != 1 || out.Send[0].Poll {
		t.Errorf("packet after the poll %+v, want no P", out.Send)
	}
}

// TestPollAnswered: a packet with P is answered at once with F, whatever
// the periodic schedule.
func TestPollAnswered(t *testing.T) {
	m := machineIn(t, StateUp)
	p := from(StateUp)
	p.Poll = true
	out := m.Receive(t0.Add(10*ms), p)
	if len(out.Send) != 1 || !out.Send[0].Final || out.Send[0].Poll {
		t.Fatalf("answer %+v, want one packet with F", out.Send)
	}
}

// TestTimerChanges: while Up, a slower transmission and a faster reception
// wait for the neighbor's Final; the opposite changes apply at once.
func TestTimerChanges(t *testing.T) {
	final := from(StateUp)
	final.Final = true
	for _, tc := range []struct {
		name                 string
		to                   Timers
		txDuring, txAfter    time.Duration
		detDuring, detAfter  time.Duration
		remoteTx, remoteMinR time.Duration
	}{
		{"slower tx waits", Timers{MinTx: time.Second, MinRx: 300 * ms, Multiplier: 3}, 300 * ms, time.Second, 900 * ms, 900 * ms, 0, 0},
		{"faster tx at once", Timers{MinTx: 100 * ms, MinRx: 300 * ms, Multiplier: 3}, 100 * ms, 100 * ms, 900 * ms, 900 * ms, 0, 100 * ms},
		{"faster rx waits", Timers{MinTx: 300 * ms, MinRx: 100 * ms, Multiplier: 3}, 300 * ms, 300 * ms, 900 * ms, 300 * ms, 100 * ms, 0},
		{"slower rx at once", Timers{MinTx: 300 * ms, MinRx: time.Second, Multiplier: 3}, 300 * ms, 300 * ms, 3 * time.Second, 3 * time.Second, 0, 0},
		// The neighbor's Required Min RX bounds our rate.
		{"neighbor's rx bounds tx", Timers{MinTx: 100 * ms, MinRx: 300 * ms, Multiplier: 3}, 500 * ms, 500 * ms, 900 * ms, 900 * ms, 0, 500 * ms},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := machineIn(t, StateUp)
			m.Receive(t0, final) // end the poll of reaching Up
			if tc.remoteMinR != 0 {
				p := from(StateUp)
				p.RequiredMinRx = tc.remoteMinR
				m.Receive(t0, p)
			}
			out := m.SetTimers(t0.Add(ms), tc.to)
			if len(out.Send) != 1 || !out.Send[0].Poll || out.Send[0].DesiredMinTx != tc.to.MinTx || out.Send[0].RequiredMinRx != tc.to.MinRx {
				t.Fatalf("packet %+v, want P and the new intervals at once", out.Send)
			}
			if st := m.Status(); st.TxInterval != tc.txDuring || st.DetectTime != tc.detDuring {
				t.Errorf("during the poll: tx %v detect %v, want %v %v", st.TxInterval, st.DetectTime, tc.txDuring, tc.detDuring)
			}
			f := final
			if tc.remoteTx != 0 {
				f.DesiredMinTx = tc.remoteTx
			}
			if tc.remoteMinR != 0 {
				f.RequiredMinRx = tc.remoteMinR
			}
			m.Receive(t0.Add(2*ms), f)
			if st := m.Status(); st.Polling || st.TxInterval != tc.txAfter || st.DetectTime != tc.detAfter {
				t.Errorf("after Final: polling %v tx %v detect %v, want false %v %v", st.Polling, st.TxInterval, st.DetectTime, tc.txAfter, tc.detAfter)
			}
		})
	}
}

// TestNoTransmission: a neighbor with Required Min RX 0, or in Demand mode
// with both ends Up, gets no periodic packets; it still gets Final.
func TestNoTransmission(t *testing.T) {
	for name, p := range map[string]Packet{
		"required min rx 0": func() Packet { p := from(StateUp); p.RequiredMinRx = 0; return p }(),
		"demand":            func() Packet { p := from(StateUp); p.Demand = true; return p }(),
	} {
		t.Run(name, func(t *testing.T) {
			m := machineIn(t, StateUp)
			m.Receive(t0.Add(ms), p)
			if out := m.Advance(t0.Add(500 * ms)); len(out.Send) != 0 {
				t.Errorf("sent %+v", out.Send)
			}
			if st := m.Status(); st.TxInterval != 0 {
				t.Errorf("tx interval %v, want none", st.TxInterval)
			}
			p.Poll = true
			if out := m.Receive(t0.Add(600*ms), p); len(out.Send) != 1 || !out.Send[0].Final {
				t.Errorf("poll answered with %+v, want Final", out.Send)
			}
		})
	}
}

// TestJitter: intervals are 75-100% of the negotiated one, 75-90% with a
// multiplier of 1 (§6.8.7).
func TestJitter(t *testing.T) {
	for _, tc := range []struct {
		mult     uint8
		r        float64
		interval time.Duration
	}{
		{3, 0, 750 * ms}, {3, 0.999999, 999999 * time.Microsecond}, {1, 0, 750 * ms}, {1, 0.999999, 899999 * time.Microsecond},
	} {
		tm := fast
		tm.Multiplier = tc.mult
		m := NewMachine(t0, localID, tm, func() float64 { return tc.r })
		m.Advance(t0)
		if got := m.NextEvent().Sub(t0); got < tc.interval-time.Microsecond || got > tc.interval+time.Microsecond {
			t.Errorf("multiplier %d, jitter %v: interval %v, want %v", tc.mult, tc.r, got, tc.interval)
		}
	}
}

// TestAdminDown: deconfiguring a session tells the neighbor with state
// AdminDown and diag 7, and keeps sending so, periodically.
func TestAdminDown(t *testing.T) {
	m := machineIn(t, StateUp)
	out := m.AdminDown()
	if len(out.Send) != 1 || out.Send[0].State != StateAdminDown || out.Send[0].Diag != DiagAdminDown {
		t.Fatalf("packet %+v, want AdminDown with diag 7", out.Send)
	}
	if out.Transition == nil || out.Transition.From != StateUp || out.Transition.To != StateAdminDown {
		t.Errorf("transition %+v", out.Transition)
	}
	if out := m.Advance(t0.Add(time.Hour)); out.Transition != nil || len(out.Send) != 1 || out.Send[0].State != StateAdminDown {
		t.Errorf("later %+v, want AdminDown packets and no detection", out)
	}
}

// TestDownAgain: after going down, the session is back to the slow start
// and comes up again through Init.
func TestDownAgain(t *testing.T) {
	m := machineIn(t, StateUp)
	m.Advance(t0.Add(time.Second)) // detection time 900 ms
	if st := m.Status(); st.State != StateDown || st.TxInterval != time.Second {
		t.Fatalf("%+v, want Down at 1s intervals", st)
	}
	m.Receive(t0.Add(2*time.Second), from(StateDown))
	m.Receive(t0.Add(3*time.Second), from(StateUp))
	if st := m.Status(); st.State != StateUp || st.LocalDiag != DiagNone {
		t.Errorf("%+v, want Up with no diag", st)
	}
}
