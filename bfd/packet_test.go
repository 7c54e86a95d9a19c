package bfd

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// TestPacketRoundTrip encodes and decodes packets, and checks one encoding
// byte by byte against RFC 5880 §4.1.
func TestPacketRoundTrip(t *testing.T) {
	p := Packet{Diag: DiagNeighborDown, State: StateUp, Poll: true, DetectMult: 3,
		MyDiscr: 0x01020304, YourDiscr: 0x0a0b0c0d, DesiredMinTx: 300 * time.Millisecond,
		RequiredMinRx: time.Second, RequiredEchoRx: 50 * time.Microsecond}
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{0x23, 0xe0, 3, 24, 1, 2, 3, 4, 0xa, 0xb, 0xc, 0xd,
		0, 4, 0x93, 0xe0, 0, 0x0f, 0x42, 0x40, 0, 0, 0, 50}
	if diff := cmp.Diff(want, b); diff != "" {
		t.Errorf("encoding (-want +got):\n%s", diff)
	}
	for _, p := range []Packet{p,
		{State: StateDown, DetectMult: 1, MyDiscr: 1},
		{State: StateInit, Final: true, Demand: true, ControlPlaneIndependent: true, DetectMult: 255, MyDiscr: 7, YourDiscr: 9},
		{State: StateAdminDown, Diag: DiagAdminDown, DetectMult: 3, MyDiscr: 7, Auth: []byte{1, 5, 1, 'a', 'b'}},
	} {
		b, err := p.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		got, err := Unmarshal(b)
		if err != nil {
			t.Fatalf("%+v: %v", p, err)
		}
		if diff := cmp.Diff(p, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	}
}

// TestUnmarshalRejects: the receive checks of §6.8.6 that need no session.
func TestUnmarshalRejects(t *testing.T) {
	good := func() []byte {
		b, _ := Packet{State: StateUp, DetectMult: 3, MyDiscr: 1, YourDiscr: 2}.Marshal()
		return b
	}
	for name, mutate := range map[string]func([]byte) []byte{
		"short":               func(b []byte) []byte { return b[:23] },
		"version 0":           func(b []byte) []byte { b[0] &^= 0xe0; return b },
		"version 2":           func(b []byte) []byte { b[0] = 2<<5 | b[0]&0x1f; return b },
		"length below 24":     func(b []byte) []byte { b[3] = 23; return b },
		"length beyond data":  func(b []byte) []byte { b[3] = 25; return b },
		"auth bit, length 24": func(b []byte) []byte { b[1] |= bitAuth; return b },
		"auth len too long":   func(b []byte) []byte { b[1] |= bitAuth; b[3] = 26; return append(b, 1, 9) },
		"auth len below 2":    func(b []byte) []byte { b[1] |= bitAuth; b[3] = 26; return append(b, 1, 1) },
		"multiplier 0":        func(b []byte) []byte { b[2] = 0; return b },
		"multipoint":          func(b []byte) []byte { b[1] |= bitMulti; return b },
		"my discr 0":          func(b []byte) []byte { copy(b[4:8], []byte{0, 0, 0, 0}); return b },
		"your discr 0 in up":  func(b []byte) []byte { copy(b[8:12], []byte{0, 0, 0, 0}); return b },
		"poll and final":      func(b []byte) []byte { b[1] |= bitPoll | bitFinal; return b },
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Unmarshal(mutate(good())); !errors.Is(err, ErrMalformed) {
				t.Errorf("err %v, want ErrMalformed", err)
			}
		})
	}
	t.Run("trailing bytes ignored", func(t *testing.T) {
		if _, err := Unmarshal(append(good(), 0xff, 0xff)); err != nil {
			t.Error(err)
		}
	})
}

// FuzzUnmarshal: decoding never panics, and whatever decodes re-encodes to
// the same packet.
func FuzzUnmarshal(f *testing.F) {
	for _, p := range []Packet{
		{State: StateDown, DetectMult: 3, MyDiscr: 1, DesiredMinTx: time.Second, RequiredMinRx: 300 * time.Millisecond},
		{State: StateUp, Poll: true, DetectMult: 3, MyDiscr: 1, YourDiscr: 2},
		{State: StateAdminDown, Diag: DiagAdminDown, DetectMult: 3, MyDiscr: 1, Auth: []byte{2, 24, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
	} {
		b, err := p.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Unmarshal(b)
		if err != nil {
			return
		}
		out, err := p.Marshal()
		if err != nil {
			t.Fatalf("decoded %+v does not encode: %v", p, err)
		}
		q, err := Unmarshal(out)
		if err != nil {
			t.Fatalf("re-encoded %x does not decode: %v", out, err)
		}
		if diff := cmp.Diff(p, q, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}
