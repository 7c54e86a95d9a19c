package l2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// heartbeat is one message of the speakers' liveness protocol (see
// liveness.go). It travels inside memberlist's authenticated, encrypted
// user messages; the encoding below only has to be compact and safe to
// decode.
type heartbeat struct {
	// From is the sender's node name.
	From string
	// Epoch is random per start of the sender: a restarted node is a new
	// epoch, and stamps of different epochs are not comparable.
	Epoch uint64
	// Stamp is the sender's clock when it sent the message, nanoseconds
	// since it started. Only the sender interprets it, when it comes back
	// in someone's Heard.
	Stamp uint64
	// Bye says the sender is leaving on purpose: it answers for nothing
	// from now on, and must be considered dead at once.
	Bye bool
	// Quorate says the sender held its lease when it sent the message (it
	// may still be in its hold-down). A node that says it is not quorate
	// answers for nothing, so the others do not wait for it.
	Quorate bool
	// Heard lists, for every node the sender received a heartbeat from
	// recently, the newest one: first-hand evidence only, never relayed.
	Heard []heard
}

// heard is one entry of heartbeat.Heard.
type heard struct {
	Node  string
	Epoch uint64
	Stamp uint64
	// Age is how long before sending the sender received that heartbeat.
	Age time.Duration
	// Quorate is that heartbeat's Quorate.
	Quorate bool
}

// heartbeatMagic starts every heartbeat; messages without it are not ours.
const heartbeatMagic = "bhb1"

// Limits of the encoding, so that decoding a hostile or corrupt message
// allocates little.
const (
	maxNameLen    = 253 // a DNS subdomain, like a Kubernetes Node name
	maxHeard      = 1024
	maxMessageLen = 1200 // fits memberlist's UDP packets with its overhead
	flagBye       = 1
	flagQuorate   = 2
)

var errTruncated = errors.New("truncated heartbeat")

// encodeHeartbeats encodes hb in as few messages as fit maxMessageLen each:
// every message repeats the header and carries a part of Heard. Receivers
// merge the parts, so they need not arrive together.
func encodeHeartbeats(hb heartbeat) [][]byte {
	header := func() []byte {
		b := make([]byte, 0, maxMessageLen)
		b = append(b, heartbeatMagic...)
		var flags byte
		if hb.Bye {
			flags |= flagBye
		}
		if hb.Quorate {
			flags |= flagQuorate
		}
		b = append(b, flags)
		b = appendString(b, hb.From)
		b = binary.BigEndian.AppendUint64(b, hb.Epoch)
		return binary.AppendUvarint(b, hb.Stamp)
	}
	var out [][]byte
	rest := hb.Heard
	for first := true; first || len(rest) > 0; first = false {
		b := header()
		var entries []byte
		n := 0
		for _, h := range rest {
			var flags byte
			if h.Quorate {
				flags |= flagQuorate
			}
			e := append(appendString(nil, h.Node), flags)
			e = binary.BigEndian.AppendUint64(e, h.Epoch)
			e = binary.AppendUvarint(e, h.Stamp)
			e = binary.AppendUvarint(e, uint64(max(h.Age, 0)/time.Microsecond))
			// One entry always goes in, however long: names are
			// bounded, so the message stays well under 64 KiB.
			if n > 0 && len(b)+binary.MaxVarintLen64+len(entries)+len(e) > maxMessageLen {
				break
			}
			entries = append(entries, e...)
			n++
		}
		b = binary.AppendUvarint(b, uint64(n))
		out = append(out, append(b, entries...))
		rest = rest[n:]
	}
	return out
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// isHeartbeat reports whether b starts like a heartbeat.
func isHeartbeat(b []byte) bool {
	return len(b) >= len(heartbeatMagic) && string(b[:len(heartbeatMagic)]) == heartbeatMagic
}

// decodeHeartbeat parses one message of encodeHeartbeats.
func decodeHeartbeat(b []byte) (heartbeat, error) {
	var hb heartbeat
	if !isHeartbeat(b) {
		return hb, errors.New("not a heartbeat")
	}
	d := decoder{b: b[len(heartbeatMagic):]}
	flags := d.byte()
	hb.Bye, hb.Quorate = flags&flagBye != 0, flags&flagQuorate != 0
	hb.From = d.string()
	hb.Epoch = d.uint64()
	hb.Stamp = d.uvarint()
	n := d.uvarint()
	if d.err == nil && n > maxHeard {
		return hb, fmt.Errorf("heartbeat lists %d nodes, at most %d", n, maxHeard)
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		h := heard{Node: d.string()}
		h.Quorate = d.byte()&flagQuorate != 0
		h.Epoch, h.Stamp = d.uint64(), d.uvarint()
		age := d.uvarint()
		if age > uint64(time.Hour/time.Microsecond) {
			age = uint64(time.Hour / time.Microsecond)
		}
		h.Age = time.Duration(age) * time.Microsecond
		hb.Heard = append(hb.Heard, h)
	}
	switch {
	case d.err != nil:
		return heartbeat{}, d.err
	case len(d.b) != 0:
		return heartbeat{}, fmt.Errorf("%d bytes after the heartbeat", len(d.b))
	case hb.From == "":
		return heartbeat{}, errors.New("heartbeat without a sender")
	}
	return hb, nil
}

// decoder reads fields until the first error, which it keeps.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 1 {
		d.err = errTruncated
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errTruncated
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uint64() uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 8 {
		d.err = errTruncated
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > maxNameLen {
		d.err = fmt.Errorf("name of %d bytes, at most %d", n, maxNameLen)
		return ""
	}
	if uint64(len(d.b)) < n {
		d.err = errTruncated
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
