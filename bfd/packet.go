package bfd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// State is a BFD session state (RFC 5880 §4.1, the Sta field).
type State uint8

// The session states, with their values on the wire.
const (
	StateAdminDown State = 0
	StateDown      State = 1
	StateInit      State = 2
	StateUp        State = 3
)

func (s State) String() string {
	switch s {
	case StateAdminDown:
		return "AdminDown"
	case StateDown:
		return "Down"
	case StateInit:
		return "Init"
	case StateUp:
		return "Up"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// Diag is a diagnostic code (RFC 5880 §4.1): why the session last left Up.
type Diag uint8

// The diagnostic codes this package sets or reports.
const (
	DiagNone                 Diag = 0
	DiagControlDetectExpired Diag = 1
	DiagEchoFailed           Diag = 2
	DiagNeighborDown         Diag = 3
	DiagForwardingReset      Diag = 4
	DiagPathDown             Diag = 5
	DiagConcatenatedPathDown Diag = 6
	DiagAdminDown            Diag = 7
	DiagReverseConcatenated  Diag = 8
)

func (d Diag) String() string {
	names := [...]string{"None", "Control Detection Time Expired", "Echo Function Failed",
		"Neighbor Signaled Session Down", "Forwarding Plane Reset", "Path Down",
		"Concatenated Path Down", "Administratively Down", "Reverse Concatenated Path Down"}
	if int(d) < len(names) {
		return names[d]
	}
	return fmt.Sprintf("Diag(%d)", uint8(d))
}

// Packet is a BFD Control packet (RFC 5880 §4.1). Intervals are carried
// in microseconds on the wire.
type Packet struct {
	Diag  Diag
	State State
	// Poll, Final, ControlPlaneIndependent, Demand: the P, F, C and D bits.
	Poll, Final, ControlPlaneIndependent, Demand bool
	DetectMult                                   uint8
	MyDiscr, YourDiscr                           uint32
	DesiredMinTx, RequiredMinRx, RequiredEchoRx  time.Duration
	// Auth is the authentication section (its type, length and data as
	// sent), present when the A bit is set. This package sends none and
	// drops packets that carry one; it is decoded only to be checked.
	Auth []byte
}

const (
	version       = 1
	headerLen     = 24
	maxPacketLen  = 255 // the length field is one byte
	authHeaderLen = 2

	bitPoll   = 0x20
	bitFinal  = 0x10
	bitCPI    = 0x08
	bitAuth   = 0x04
	bitDemand = 0x02
	bitMulti  = 0x01
)

// ErrMalformed is wrapped by every error of Unmarshal: the packet must be
// discarded (RFC 5880 §6.8.6).
var ErrMalformed = errors.New("malformed BFD control packet")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// Unmarshal decodes a BFD Control packet and applies the checks of RFC 5880
// §6.8.6 that need no session: version, lengths, a non-zero detection
// multiplier and My Discriminator, no Multipoint bit, and a zero Your
// Discriminator only in the Down and AdminDown states. Bytes after the
// packet's Length are ignored, as the RFC allows.
func Unmarshal(b []byte) (Packet, error) {
	var p Packet
	if len(b) < headerLen {
		return p, malformed("%d bytes, fewer than %d", len(b), headerLen)
	}
	if v := b[0] >> 5; v != version {
		return p, malformed("version %d", v)
	}
	flags := b[1]
	length := int(b[3])
	auth := flags&bitAuth != 0
	switch {
	case length < headerLen || (auth && length < headerLen+authHeaderLen):
		return p, malformed("length %d too short", length)
	case length > len(b):
		return p, malformed("length %d exceeds the %d bytes received", length, len(b))
	case flags&bitMulti != 0:
		return p, malformed("multipoint bit set")
	}
	p = Packet{
		Diag:                    Diag(b[0] & 0x1f),
		State:                   State(flags >> 6),
		Poll:                    flags&bitPoll != 0,
		Final:                   flags&bitFinal != 0,
		ControlPlaneIndependent: flags&bitCPI != 0,
		Demand:                  flags&bitDemand != 0,
		DetectMult:              b[2],
		MyDiscr:                 binary.BigEndian.Uint32(b[4:]),
		YourDiscr:               binary.BigEndian.Uint32(b[8:]),
		DesiredMinTx:            micros(b[12:]),
		RequiredMinRx:           micros(b[16:]),
		RequiredEchoRx:          micros(b[20:]),
	}
	switch {
	case p.DetectMult == 0:
		return p, malformed("detect multiplier 0")
	case p.MyDiscr == 0:
		return p, malformed("my discriminator 0")
	case p.YourDiscr == 0 && p.State != StateDown && p.State != StateAdminDown:
		return p, malformed("your discriminator 0 in state %v", p.State)
	case p.Poll && p.Final:
		return p, malformed("both poll and final set")
	}
	if auth {
		a := b[headerLen:length]
		if n := int(a[1]); n < authHeaderLen || n > len(a) {
			return p, malformed("authentication length %d in a section of %d bytes", n, len(a))
		}
		p.Auth = append([]byte(nil), a[:a[1]]...)
	}
	return p, nil
}

// Marshal encodes p; it fails when p cannot be sent as it is (a field out
// of range, or an authentication section that does not fit).
func (p Packet) Marshal() ([]byte, error) {
	if p.Diag > 31 || p.State > StateUp {
		return nil, fmt.Errorf("bfd: marshal: diag %d or state %d out of range", p.Diag, p.State)
	}
	n := headerLen + len(p.Auth)
	if n > maxPacketLen || (len(p.Auth) > 0 && (len(p.Auth) < authHeaderLen || int(p.Auth[1]) != len(p.Auth))) {
		return nil, fmt.Errorf("bfd: marshal: authentication section of %d bytes", len(p.Auth))
	}
	b := make([]byte, n)
	b[0] = version<<5 | uint8(p.Diag)
	b[1] = uint8(p.State) << 6
	for _, f := range []struct {
		on  bool
		bit byte
	}{{p.Poll, bitPoll}, {p.Final, bitFinal}, {p.ControlPlaneIndependent, bitCPI}, {len(p.Auth) > 0, bitAuth}, {p.Demand, bitDemand}} {
		if f.on {
			b[1] |= f.bit
		}
	}
	b[2] = p.DetectMult
	b[3] = uint8(n)
	binary.BigEndian.PutUint32(b[4:], p.MyDiscr)
	binary.BigEndian.PutUint32(b[8:], p.YourDiscr)
	for i, d := range []time.Duration{p.DesiredMinTx, p.RequiredMinRx, p.RequiredEchoRx} {
		binary.BigEndian.PutUint32(b[12+4*i:], toMicros(d))
	}
	copy(b[headerLen:], p.Auth)
	return b, nil
}

func micros(b []byte) time.Duration {
	return time.Duration(binary.BigEndian.Uint32(b)) * time.Microsecond
}

// toMicros is d in whole microseconds, saturated to the field's range.
func toMicros(d time.Duration) uint32 {
	us := d / time.Microsecond
	switch {
	case us < 0:
		return 0
	case us > 1<<32-1:
		return 1<<32 - 1
	}
	return uint32(us)
}
